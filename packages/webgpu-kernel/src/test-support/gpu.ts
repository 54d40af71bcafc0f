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
