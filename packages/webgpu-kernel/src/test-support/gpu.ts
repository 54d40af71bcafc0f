import { existsSync } from 'node:fs';
import { findNodeWebGPU } from '@accsgd/conformance';

/**
 * A WebGPU adapter for tests in Node: @accsgd/conformance's findNodeWebGPU (Dawn through the
 * `webgpu` package, SwiftShader when there is no GPU driver), so the whole test process shares one
 * Dawn instance, which findNodeWebGPU keeps alive. `adapter` is null with a reason when there is
 * none; tests then skip visibly, or fail when ACCSGD_REQUIRE_WEBGPU=1.
 */
const found = await findNodeWebGPU();
export const adapter = found.available ? found.adapter : null;
export const noGPU = !found.available;
export const noGPUReason = found.available ? '' : found.reason;
if (!found.available) {
  if (process.env.ACCSGD_REQUIRE_WEBGPU === '1')
    throw new Error(`ACCSGD_REQUIRE_WEBGPU=1 but ${found.reason}`);
  console.warn(`[webgpu-kernel] skipping GPU tests: ${found.reason}`);
}

/** A fresh device with default limits (128 MiB bindings, 256 MiB buffers), as a browser would give. */
export async function testDevice(descriptor: GPUDeviceDescriptor = {}): Promise<GPUDevice> {
  if (!found.available) throw new Error(found.reason);
  // An adapter hands out one device, so each test device comes from a fresh adapter.
  const fresh = await found.gpu.requestAdapter();
  if (!fresh) throw new Error('the WebGPU instance returned no adapter');
  return fresh.requestDevice(descriptor);
}

/**
 * Mesa's lavapipe Vulkan driver. Debian bookworm's Mesa 22.3 is too old for Dawn; Mesa 25 from
 * bookworm-backports works and has `shader-f16`, which SwiftShader lacks (.ci/run installs it).
 */
export const LAVAPIPE_ICD = '/usr/share/vulkan/icd.d/lvp_icd.json';

/** The second Dawn instance, kept referenced: Dawn tears an instance down when it is collected. */
let lavapipeInstance: GPU | undefined;

/**
 * Devices with `shader-f16`, for the float16 storage tests: from the shared test instance when its
 * adapter has the feature (a real GPU usually does), else from lavapipe through a second Dawn
 * instance whose Vulkan loader is pointed at it. `device` is null with a reason when neither is
 * there.
 */
export async function findShaderF16(): Promise<
  { device: () => Promise<GPUDevice>; description: string } | { device: null; reason: string }
> {
  const requestFrom = (gpu: GPU) => async () => {
    // An adapter hands out one device, so each device comes from a fresh adapter.
    const adapter = await gpu.requestAdapter();
    if (!adapter) throw new Error('the WebGPU instance returned no adapter');
    return adapter.requestDevice({ requiredFeatures: ['shader-f16'] });
  };
  if (found.available && found.adapter.features.has('shader-f16'))
    return { device: requestFrom(found.gpu), description: found.description };
  if (!existsSync(LAVAPIPE_ICD)) {
    return {
      device: null,
      reason: `the WebGPU adapter (${found.available ? found.description : found.reason}) has no shader-f16 and there is no lavapipe at ${LAVAPIPE_ICD} (apt-get install -t bookworm-backports mesa-vulkan-drivers)`,
    };
  }
  const { create } = await import('webgpu');
  const previous = process.env.VK_ICD_FILENAMES;
  process.env.VK_ICD_FILENAMES = LAVAPIPE_ICD;
  try {
    lavapipeInstance ??= create([]);
    const lavapipe = await lavapipeInstance.requestAdapter();
    const info = lavapipe?.info;
    const description = info
      ? `${info.vendor || '?'} / ${info.architecture || info.device || '?'} (${info.description})`
      : '';
    if (!lavapipe || !/llvmpipe|lavapipe/i.test(`${info?.device} ${info?.description}`)) {
      return {
        device: null,
        reason: lavapipe
          ? `with VK_ICD_FILENAMES=${LAVAPIPE_ICD} the adapter is ${description}, not lavapipe (the variable reaches the Vulkan loader only from a process's main thread: run the tests in forks, not threads)`
          : `lavapipe (${LAVAPIPE_ICD}) gave no WebGPU adapter (Mesa 22.3 is too old for Dawn; Mesa 25 works)`,
      };
    }
    if (!lavapipe.features.has('shader-f16'))
      return { device: null, reason: `lavapipe's adapter ${description} has no shader-f16 (Mesa 25 has it)` };
    return { device: requestFrom(lavapipeInstance), description };
  } finally {
    if (previous === undefined) delete process.env.VK_ICD_FILENAMES;
    else process.env.VK_ICD_FILENAMES = previous;
  }
}
