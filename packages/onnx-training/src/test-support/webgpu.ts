/**
 * Why onnxruntime-node's WebGPU EP cannot run here, or undefined when it can. The conformance
 * package's findNodeWebGPU (Dawn) decides whether this machine has a WebGPU adapter; a probe
 * session then confirms that ORT's own EP starts.
 */
export async function webgpuUnavailable(found: {
  available: boolean;
  reason?: string;
}): Promise<string | undefined> {
  if (!found.available) return found.reason ?? 'no WebGPU adapter';
  try {
    const ort = await import('onnxruntime-node');
    const { buildIdentityModel } = await import('../graphs/utility-graphs.js');
    const session = await ort.InferenceSession.create(buildIdentityModel(), {
      executionProviders: ['webgpu'],
    });
    await session.release();
    return undefined;
  } catch (error) {
    return `onnxruntime-node's webgpu EP does not start: ${(error as Error).message}`;
  }
}
