import { getKernel, type Tensor, type TensorInfo } from '@tensorflow/tfjs-core';
import type { NonFiniteLocation } from './composite.js';
import { cpuFirstNonFinite, cpuUpdateKernel } from './cpu.js';
import { ACCSGD_UPDATE, registerOnce } from './registry.js';
import { wasmFirstNonFinite, wasmUpdateKernel } from './wasm.js';
import { webglUpdateKernel } from './webgl.js';
import { ALL_FINITE, webgpuFirstNonFiniteIndices, webgpuUpdateKernel } from './webgpu.js';

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
 * GPU scans for the non-finite check: they queue one program per gradient and return an int32 [k]
 * tensor holding, for each gradient, the index of its first NaN or infinity (ALL_FINITE when none),
 * so one read-back of k integers locates the first bad element. The caller disposes the tensor.
 */
export const gpuScanners: Readonly<
  Record<string, (backend: object, grads: readonly TensorInfo[]) => Tensor>
> = {
  webgpu: webgpuFirstNonFiniteIndices,
};

/** The first bad gradient and element from a GPU scan's read-back, or null when all are finite. */
export function locateNonFinite(firstBad: ArrayLike<number>): NonFiniteLocation | null {
  for (let tensor = 0; tensor < firstBad.length; tensor++) {
    const element = firstBad[tensor]!;
    if (element !== ALL_FINITE) return { tensor, element };
  }
  return null;
}
