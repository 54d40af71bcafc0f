/**
 * The closed loop of the conformance contract (SPEC.md §5.1): its truth, its error metric and its
 * bound. An adapter's `leastSquaresGradient(name, x, y)` computes X^T (X p - y) with its framework's
 * own ops on the live parameter p; the suite compares that with what read() reports.
 */
import { FLOAT32_UNIT_ROUNDOFF } from './contract.js';

/**
 * X^T (X p - y) in float64 (`x`: y.length rows of p.length, row-major), with the scale
 * s = |X|^T (|X| |p| + |y|) that bounds the rounding of any summation order.
 */
export function leastSquaresGradient(
  x: ArrayLike<number>,
  p: ArrayLike<number>,
  y: ArrayLike<number>,
): { gradient: Float64Array; scale: Float64Array } {
  const rows = y.length;
  const n = p.length;
  const gradient = new Float64Array(n);
  const scale = new Float64Array(n);
  for (let r = 0; r < rows; r++) {
    let residual = -y[r]!;
    let magnitude = Math.abs(y[r]!);
    for (let k = 0; k < n; k++) {
      residual += x[r * n + k]! * p[k]!;
      magnitude += Math.abs(x[r * n + k]! * p[k]!);
    }
    for (let j = 0; j < n; j++) {
      gradient[j] = gradient[j]! + x[r * n + j]! * residual;
      scale[j] = scale[j]! + Math.abs(x[r * n + j]!) * magnitude;
    }
  }
  return { gradient, scale };
}

/** max_j |got_j - truth_j| / s_j (the plain difference where s_j = 0); Infinity for a NaN or a wrong length. */
export function closedLoopError(
  got: ArrayLike<number>,
  truth: { gradient: Float64Array; scale: Float64Array },
): number {
  if (got.length !== truth.gradient.length) return Number.POSITIVE_INFINITY;
  let worst = 0;
  for (let j = 0; j < got.length; j++) {
    const diff = Math.abs(got[j]! - truth.gradient[j]!);
    const error = truth.scale[j] === 0 ? diff : diff / truth.scale[j]!;
    if (!(error <= worst)) worst = Number.isNaN(error) ? Number.POSITIVE_INFINITY : error;
  }
  return worst;
}

/**
 * A float32 matMul of inner size k errs by at most about k u relative to s, in any summation order,
 * with or without fused multiply-adds; X p - y has inner size n + 1 and X^T r has inner size
 * `rows`. Twice their sum leaves room for rounding X p before y is subtracted. A parameter that one
 * step has moved by a relative 1e-4 misses this by orders of magnitude for the suite's sizes.
 * float64 adapters are held to the same bound.
 */
export function closedLoopBound(n: number, rows: number): number {
  return FLOAT32_UNIT_ROUNDOFF * 2 * (n + 1 + rows + 2);
}
