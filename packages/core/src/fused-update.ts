import type { FusedCoefficients } from './coefficients.js';

export type FloatArray = Float32Array | Float64Array;

/**
 * One pass over a tensor: reads p, g and buf once and writes p and buf once (20 bytes per
 * float32 element), the memory floor of AccSGD. Arithmetic is in float64 (JS numbers) and
 * rounded once on store. When `initialiseBuffer` is true the buffer is taken to be a copy of p,
 * without a separate copy pass.
 */
export function fusedUpdate(
  param: FloatArray,
  grad: FloatArray,
  buffer: FloatArray,
  c: FusedCoefficients,
  initialiseBuffer: boolean,
): void {
  const { bufFromBuf, bufFromParam, bufFromGrad, paramFromParam, paramFromGrad, paramFromBuf } = c;
  const n = param.length;
  if (initialiseBuffer) {
    const bufFromP = bufFromBuf + bufFromParam;
    for (let i = 0; i < n; i++) {
      const p = param[i]!;
      const g = grad[i]!;
      const b = bufFromP * p + bufFromGrad * g;
      buffer[i] = b;
      param[i] = paramFromParam * p + paramFromGrad * g + paramFromBuf * b;
    }
    return;
  }
  for (let i = 0; i < n; i++) {
    const p = param[i]!;
    const g = grad[i]!;
    const b = bufFromBuf * buffer[i]! + bufFromParam * p + bufFromGrad * g;
    buffer[i] = b;
    param[i] = paramFromParam * p + paramFromGrad * g + paramFromBuf * b;
  }
}

/** Index of the first NaN or infinity, or -1. `x - x` is 0 for finite x and NaN otherwise. */
export function firstNonFinite(values: FloatArray): number {
  const n = values.length;
  for (let i = 0; i < n; i++) {
    const v = values[i]!;
    if (v - v !== 0) return i;
  }
  return -1;
}
