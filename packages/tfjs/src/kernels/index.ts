import { AccSGDConfigError } from '@accsgd/core';
import { getKernel, type Tensor, type TensorInfo } from '@tensorflow/tfjs-core';
import type { NonFiniteLocation } from './composite.js';
import { cpuFirstNonFinite, cpuUpdateKernel } from './cpu.js';
import { ACCSGD_UPDATE, registerOnce } from './registry.js';
import { wasmFirstNonFinite, wasmUpdateKernel } from './wasm.js';
import { webglUpdateKernel } from './webgl.js';
import { ALL_FINITE, READ_BACK_CHECK, webgpuFirstNonFiniteIndices, webgpuUpdateKernel } from './webgpu.js';

export {
  compositeFirstNonFinite,
  compositeFirstNonFiniteAsync,
  compositeUpdate,
  type NonFiniteLocation,
} from './composite.js';
export { ACCSGD_UPDATE, type AccSGDUpdateAttrs, type CoefficientArray } from './registry.js';

/** The backends with a fused AccSGDUpdate kernel in this package. */
export const FUSED_BACKENDS = ['cpu', 'wasm', 'webgl', 'webgpu'] as const;

let registered = false;

/**
 * Registers the fused kernel for every backend this package knows. Registering for a backend that
 * is not loaded only adds a registry entry; the kernels import nothing from the backends. Called by
 * the optimizer's constructor (not at import, so the package stays free of side effects); an
 * application that registered its own 'AccSGDUpdate' kernel for a backend keeps it.
 */
export function registerAccSGDKernels(): void {
  if (registered) return;
  for (const kernel of [cpuUpdateKernel, wasmUpdateKernel, webglUpdateKernel, webgpuUpdateKernel])
    registerOnce(kernel);
  registered = true;
}

/** Whether the backend has a fused update kernel registered. */
export function hasFusedKernel(backendName: string): boolean {
  return getKernel(ACCSGD_UPDATE, backendName) !== undefined;
}

/** Direct scans of backend memory for the non-finite check, where JS can read it without a copy. */
export const memoryScanners: Readonly<Record<string, (backend: object, info: TensorInfo) => number | null>> =
  {
    cpu: cpuFirstNonFinite,
    wasm: wasmFirstNonFinite,
  };

/**
 * GPU scans for the non-finite check: they queue one program per gradient and return an int32
 * [k + 1] tensor holding, for each gradient, the index of its first NaN or infinity (ALL_FINITE
 * when none), then READ_BACK_CHECK, so one read-back of k + 1 integers locates the first bad
 * element and proves the read-back itself. The caller disposes the tensor.
 */
export const gpuScanners: Readonly<
  Record<string, (backend: object, grads: readonly TensorInfo[]) => Tensor>
> = {
  webgpu: webgpuFirstNonFiniteIndices,
};

/**
 * The first bad gradient and element from a GPU scan's read-back, or null when all are finite.
 * Throws AccSGDConfigError when the read-back is not what the GPU wrote (its last slot is not
 * READ_BACK_CHECK): tfjs-backend-webgpu's synchronous read-back returns zeros for GPU results in
 * headless Chromium on SwiftShader, which would otherwise reject every step as non-finite.
 */
export function locateNonFinite(firstBad: ArrayLike<number>): NonFiniteLocation | null {
  const k = firstBad.length - 1;
  if (firstBad[k] !== READ_BACK_CHECK) {
    throw new AccSGDConfigError(
      'nonFinite',
      'error',
      '"allow" here, or applyGradientsAsync()',
      `checking gradients for NaN/infinity needs a read-back from the GPU, and this backend's read-back came back wrong (a check value of ${READ_BACK_CHECK} read as ${firstBad[k]}; tfjs-backend-webgpu's synchronous read-back does this in headless Chromium on SwiftShader): call applyGradientsAsync(), or pass nonFinite: "allow"`,
    );
  }
  for (let tensor = 0; tensor < k; tensor++) {
    const element = firstBad[tensor]!;
    if (element !== ALL_FINITE) return { tensor, element };
  }
  return null;
}
