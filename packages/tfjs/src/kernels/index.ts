import { AccSGDStateError } from '@accsgd/core';
import { getKernel, type Tensor, type TensorInfo } from '@tensorflow/tfjs-core';
import type { NonFiniteLocation } from './composite.js';
import { cpuFirstNonFinite, cpuUpdateKernel } from './cpu.js';
import { ACCSGD_UPDATE, registerOnce } from './registry.js';
import { wasmFirstNonFinite, wasmUpdateKernel } from './wasm.js';
import { webglUpdateKernel } from './webgl.js';
import {
  ALL_FINITE,
  HELD_BACK,
  KIND_NAN,
  KIND_NEGATIVE_INFINITY,
  KIND_POSITIVE_INFINITY,
  READ_BACK_CHECK,
  scanLayout,
  webgpuNonFiniteScan,
  webgpuUpdateKernel,
} from './webgpu.js';

export {
  compositeFirstNonFinite,
  compositeFirstNonFiniteAsync,
  compositeUpdate,
  type DeviceGuard,
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

export { scanLayout } from './webgpu.js';

/**
 * Device scans for the non-finite check: they queue one program per gradient and return an int32
 * tensor laid out as scanLayout(k) says: per gradient the index of its first NaN or infinity
 * (ALL_FINITE when none) and the kinds of non-finite values it holds, then the verdict (the
 * first bad gradient, or ALL_FINITE), then READ_BACK_CHECK, which proves the read-back itself.
 * The update kernel takes the result as its guard; the caller disposes it.
 */
export const gpuScanners: Readonly<
  Record<string, (backend: object, grads: readonly TensorInfo[], previous?: Tensor | null) => Tensor>
> = {
  webgpu: webgpuNonFiniteScan,
};

/** How a gradient's kinds slot reads in a message: "NaN", "-Infinity", "NaN or Infinity". */
function kindsValue(kinds: number): string {
  const names: string[] = [];
  if (kinds & KIND_NAN) names.push('NaN');
  if (kinds & KIND_POSITIVE_INFINITY) names.push('Infinity');
  if (kinds & KIND_NEGATIVE_INFINITY) names.push('-Infinity');
  return names.length === 0 ? 'not finite' : names.join(' or ');
}

/**
 * The first bad gradient, its first bad element and what it holds, from a device scan's
 * read-back; `{ heldBack }` for a step held back after a bad one; null when all are finite. Throws AccSGDStateError when the read-back is not what the
 * device wrote (its check slot is wrong): then nothing can be said of the step.
 */
export function readDeviceScan(
  values: ArrayLike<number>,
): (NonFiniteLocation & { value: string }) | { heldBack: true } | null {
  const k = (values.length - 2) / 2;
  const layout = scanLayout(Number.isInteger(k) && k >= 0 ? k : 0);
  if (!Number.isInteger(k) || k < 0 || values[layout.check] !== READ_BACK_CHECK) {
    throw new AccSGDStateError(
      `the read-back of the device's non-finite check came back wrong (its check slot should read ${READ_BACK_CHECK}, read ${String(values[layout.check])} of ${values.length} values): the backend returned data the GPU did not write, so whether the step's gradients were finite is unknown`,
    );
  }
  const tensor = values[layout.verdict]!;
  if (tensor === ALL_FINITE) return null;
  if (tensor === HELD_BACK) return { heldBack: true };
  return { tensor, element: values[tensor]!, value: kindsValue(values[layout.kinds + tensor]!) };
}
