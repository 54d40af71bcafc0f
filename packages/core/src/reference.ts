import { deriveCoefficients } from './coefficients.js';
import type { Hyperparams } from './hyperparams.js';

/**
 * The reference algorithm exactly as SPEC.md states it, one element-wise statement per line of
 * the reference implementation, in float64. It is deliberately unfused and unoptimised: it is
 * the source of truth that golden vectors are generated from and that fused kernels are
 * checked against. Returns new arrays; the inputs are not modified.
 */
export function referenceStep(
  param: ArrayLike<number>,
  buffer: ArrayLike<number> | null,
  grad: ArrayLike<number>,
  h: Hyperparams,
): { param: Float64Array; buffer: Float64Array } {
  const { largeLr, beta, zeta } = deriveCoefficients(h);
  const n = param.length;
  const p = Float64Array.from(param);
  const g = Float64Array.from(grad);
  if (h.weightDecay !== 0) for (let i = 0; i < n; i++) g[i] = g[i]! + h.weightDecay * p[i]!;
  const buf = Float64Array.from(buffer ?? p);
  for (let i = 0; i < n; i++) buf[i] = buf[i]! * (1 / beta - 1);
  for (let i = 0; i < n; i++) buf[i] = buf[i]! + -largeLr * g[i]!;
  for (let i = 0; i < n; i++) buf[i] = buf[i]! + p[i]!;
  for (let i = 0; i < n; i++) buf[i] = buf[i]! * beta;
  for (let i = 0; i < n; i++) p[i] = p[i]! + -h.lr * g[i]!;
  for (let i = 0; i < n; i++) p[i] = p[i]! * zeta;
  for (let i = 0; i < n; i++) p[i] = p[i]! + (1 - zeta) * buf[i]!;
  return { param: p, buffer: buf };
}
