import { existsSync } from 'node:fs';

/**
 * A WebGPU adapter for tests in Node (Dawn through the `webgpu` package, SwiftShader when there is
 * no GPU driver). `adapter` is null with a reason when there is none; tests then skip visibly, or
 * fail when ACCSGD_REQUIRE_WEBGPU=1.
 */
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

async function find(): Promise<{ gpu: GPU | null; adapter: GPUAdapter | null; reason: string }> {
  if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD))
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  try {
    const dawn = (await import('webgpu')) as unknown as {
      create: (o: string[]) => GPU;
      globals: Record<string, unknown>;
    };
    Object.assign(globalThis, dawn.globals);
    const gpu = dawn.create([]);
    const adapter = await gpu.requestAdapter();
    return {
      gpu,
      adapter,
      reason: adapter
        ? ''
        : `no WebGPU adapter (VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES ?? 'unset'})`,
    };
  } catch (error) {
    return {
      gpu: null,
      adapter: null,
      reason: `the "webgpu" package cannot be loaded (${(error as Error).message})`,
    };
  }
}

const found = await find();
export const adapter = found.adapter;
export const noGPU = found.adapter === null;
export const noGPUReason = found.reason;
if (noGPU) {
  if (process.env.ACCSGD_REQUIRE_WEBGPU === '1')
    throw new Error(`ACCSGD_REQUIRE_WEBGPU=1 but ${found.reason}`);
  console.warn(`[webgpu-kernel] skipping GPU tests: ${found.reason}`);
}

/** A fresh device with default limits (128 MiB bindings, 256 MiB buffers), as a browser would give. */
export async function testDevice(descriptor: GPUDeviceDescriptor = {}): Promise<GPUDevice> {
  // An adapter hands out one device, so each test device comes from a fresh adapter.
  const fresh = await found.gpu?.requestAdapter();
  if (!fresh) throw new Error(found.reason);
  return fresh.requestDevice(descriptor);
}
