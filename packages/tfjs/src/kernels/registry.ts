import type { FusedCoefficients } from '@accsgd/core';
import {
  getKernel,
  type KernelConfig,
  type KernelFunc,
  registerKernel,
  type TensorInfo,
} from '@tensorflow/tfjs-core';

/**
 * The fused AccSGD update as a tfjs kernel.
 *
 * Inputs: `param`, `grad` and `buffer`, float32 and of one shape. On a parameter's first step the
 * optimizer passes the parameter itself as `buffer` (the spec's "buffer starts as a copy of p").
 * Attributes: `coefficients`, the six float64 multipliers of `fusedCoefficientArray` from
 * @accsgd/core, in its order [bufFromBuf, bufFromParam, bufFromGrad, paramFromParam, paramFromGrad,
 * paramFromBuf]; `inPlace`, whether the caller lets the kernel overwrite `param` and `buffer` (the
 * optimizer does: it replaces both anyway). Outputs: [param', buffer']. With `inPlace`, a kernel may
 * hand back an input's own storage, updated in place, only where no other tensor shares it and the
 * backend is told (backends cache work per tensor: tfjs-backend-wasm keeps packed matMul weights per
 * tensor id), so no later op reads a stale value.
 *
 * Optional, on backends that check gradients on the device (webgpu): input `guard`, the int32
 * result of the step's non-finite scan, and attribute `guardSlot`, its verdict slot; where the
 * verdict says a gradient of the step was not finite, the kernel writes param and buffer back
 * unchanged.
 *
 *   buffer' = bufFromBuf * buffer + bufFromParam * param + bufFromGrad * grad
 *   param'  = paramFromParam * param + paramFromGrad * grad + paramFromBuf * buffer'
 */
export const ACCSGD_UPDATE = 'AccSGDUpdate';

/** What a device scan leaves in a gradient's first-bad slot and in its verdict slot when all is finite (i32 max). */
export const ALL_FINITE = 2_147_483_647;

export type CoefficientArray = readonly [number, number, number, number, number, number];

/** The kernel's six-number attribute as @accsgd/core's named FusedCoefficients (same order as fusedCoefficientArray). */
export function fusedCoefficientsOf(c: CoefficientArray): FusedCoefficients {
  const [bufFromBuf, bufFromParam, bufFromGrad, paramFromParam, paramFromGrad, paramFromBuf] = c;
  return { bufFromBuf, bufFromParam, bufFromGrad, paramFromParam, paramFromGrad, paramFromBuf };
}

export interface AccSGDUpdateAttrs {
  coefficients: number[];
  inPlace: boolean;
  /** With a `guard` input: the slot of its verdict. */
  guardSlot?: number;
}

export interface AccSGDUpdateInputs {
  param: TensorInfo;
  grad: TensorInfo;
  buffer: TensorInfo;
  /** The step's non-finite scan (webgpu), or absent. */
  guard?: TensorInfo;
}

/** What updateArguments() reads: the guard is null when absent. */
export interface UpdateArguments extends Omit<AccSGDUpdateInputs, 'guard'>, AccSGDUpdateAttrs {
  guard: TensorInfo | null;
  guardSlot: number;
}

/** Reads the kernel's inputs and attributes with the checks every backend needs. */
export function updateArguments(
  params: Parameters<KernelFunc>[0],
  options: { guarded: boolean } = { guarded: false },
): UpdateArguments {
  const { param, grad, buffer, guard } = params.inputs as Partial<AccSGDUpdateInputs>;
  const attrs = (params.attrs ?? {}) as Partial<AccSGDUpdateAttrs>;
  if (!param || !grad || !buffer) throw new Error(`${ACCSGD_UPDATE} needs the inputs param, grad and buffer`);
  for (const [name, t] of [
    ['grad', grad],
    ['buffer', buffer],
  ] as const) {
    if (
      t.dtype !== 'float32' ||
      t.shape.length !== param.shape.length ||
      t.shape.some((d, i) => d !== param.shape[i])
    ) {
      throw new Error(
        `${ACCSGD_UPDATE}: ${name} is ${t.dtype}[${t.shape}]; param is ${param.dtype}[${param.shape}]`,
      );
    }
  }
  if (param.dtype !== 'float32')
    throw new Error(`${ACCSGD_UPDATE} updates float32 tensors; param is ${param.dtype}`);
  const coefficients = attrs.coefficients;
  if (!Array.isArray(coefficients) || coefficients.length !== 6) {
    throw new Error(`${ACCSGD_UPDATE} needs six coefficients (fusedCoefficientArray from @accsgd/core)`);
  }
  // A kernel that cannot honour a guard must not drop it: the step would apply a rejected gradient.
  if (guard && !options.guarded) throw new Error(`${ACCSGD_UPDATE} on this backend takes no guard input`);
  const guardSlot = attrs.guardSlot ?? -1;
  if (
    guard &&
    (guard.dtype !== 'int32' ||
      !Number.isInteger(guardSlot) ||
      guardSlot < 0 ||
      guardSlot >= sizeOf(guard.shape))
  )
    throw new Error(`${ACCSGD_UPDATE}: guard must be an int32 scan result with guardSlot inside it`);
  return {
    param,
    grad,
    buffer,
    coefficients,
    inPlace: attrs.inPlace === true,
    guard: guard ?? null,
    guardSlot,
  };
}

/** Registers a kernel unless one is already registered under that name for that backend. */
export function registerOnce(config: KernelConfig): void {
  if (!getKernel(config.kernelName, config.backendName)) registerKernel(config);
}

/** Number of elements of a shape. */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}
