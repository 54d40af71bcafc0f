/**
 * The conformance contract: what every adapter exports as `conformanceAdapter(options?)` from its
 * `./conformance` subpath, and the accuracy it is judged by. It lives in the core because it is
 * part of the spec; @accsgd/conformance holds the vectors and the runner.
 */

import { fusedCoefficientArray } from './coefficients.js';
import { type Hyperparams, resolveHyperparams } from './hyperparams.js';

export type ConformanceDType = 'float32' | 'float64';

export interface ConformanceProblem {
  groups: {
    hyperparams: { lr: number; kappa?: number; xi?: number; smallConst?: number; weightDecay?: number };
    params: string[];
  }[];
  /** Initial values are float32-representable. */
  params: Record<string, { shape: number[]; init: Float64Array }>;
}

export interface ConformanceSnapshot {
  params: Record<string, Float64Array>;
  /** null: no buffer yet. */
  buffers: Record<string, Float64Array | null>;
}

export interface ConformanceSession {
  /** null or absent: no gradient for that parameter this step. */
  step(grads: Record<string, Float64Array | null>): Promise<void>;
  setLearningRate(lr: number, group: number): Promise<void>;
  read(): Promise<ConformanceSnapshot>;
  /** The state file (see SPEC.md). */
  exportState(): Promise<Uint8Array>;
  importState(bytes: Uint8Array): Promise<void>;
  close(): Promise<void>;
  /**
   * The closed loop (optional; SPEC.md §5.1): the framework's own compute path consuming the live
   * parameter `name`, as a training step's forward and backward pass would. With p the parameter's
   * n elements (row-major) as a column vector and X = `x` (`y.length` rows of n, row-major), it
   * returns the gradient of 0.5 * |X p - y|^2, which is X^T (X p - y), computed by the framework's
   * own ops (its matMul), never from a copy read back or kept by the adapter. `x` and `y` are
   * float32-representable.
   */
  leastSquaresGradient?(name: string, x: Float64Array, y: Float64Array): Promise<Float64Array>;
}

export interface ConformanceAdapter {
  /** e.g. "core/float32", "tfjs/webgpu". */
  readonly name: string;
  /** The precision the adapter computes in. */
  readonly dtype: ConformanceDType;
  open(problem: ConformanceProblem): Promise<ConformanceSession>;
}

export type ConformanceAdapterFactory = (
  options?: Record<string, unknown>,
) => ConformanceAdapter | Promise<ConformanceAdapter>;

/** Unit roundoff of float32 (2^-24). */
export const FLOAT32_UNIT_ROUNDOFF = 2 ** -24;

/**
 * The accuracy contract (SPEC.md §3): after step t (1-based) of a trajectory, for every tensor,
 * max|got - truth| / max(max|truth|, floor) must not exceed this bound.
 *
 * float32: u * (FLOAT32_BASE + FLOAT32_PER_STEP * t), u = 2^-24. A fused float32 step rounds each of
 * its six multipliers and its five operations once (about 11 u of fresh error per step, on the
 * scale of max|truth|); errors already present are carried forward by a map whose rows sum to one,
 * so they add up at most linearly in t. The constants leave a margin of about 3x over that budget.
 * float64: a flat 1e-12, about 4,500 float64 roundings of slack over the longest golden trajectory.
 */
export const FLOAT32_BASE = 32;
export const FLOAT32_PER_STEP = 4;
export const FLOAT64_BOUND = 1e-12;

export function accuracyBound(dtype: ConformanceDType, step: number): number {
  return dtype === 'float64'
    ? FLOAT64_BOUND
    : FLOAT32_UNIT_ROUNDOFF * (FLOAT32_BASE + FLOAT32_PER_STEP * step);
}

/** Smallest normal float32 (2^-126 ≈ 1.18e-38): flush-to-zero loses less than this per operation. */
export const FLOAT32_MIN_NORMAL = 2 ** -126;
/** Flushes counted per element per step by the floor: 3 inputs read plus up to 12 operation results. */
export const FLOOR_FLUSHES = 16;

/**
 * The absolute floor of the accuracy metric (SPEC.md §3), for a tensor whose group has had the
 * hyperparameters `hyperparams` (one entry per step so far; the largest counts):
 *
 *   floor = 16 * (1 + S) * minNormal / u,   S = max over those steps of sum_j |multiplier_j|
 *
 * (minNormal, u) = (2^-126, 2^-24) for float32 and (2^-1022, 2^-53) for float64. Flush-to-zero (which
 * WGSL permits) loses less than minNormal per flushed input or result, at most 15 of them per element
 * per step, and a loss reaches the outputs scaled by at most 1 + S; so after t steps flushing has
 * cost at most 15 t (1 + S) minNormal < t u floor, one u per step of the four the float32 bound grants.
 */
export function accuracyFloor(
  dtype: ConformanceDType,
  hyperparams: readonly (Hyperparams | ConformanceProblem['groups'][number]['hyperparams'])[],
): number {
  let sum = 0;
  for (const h of hyperparams) {
    const multipliers = fusedCoefficientArray(resolveHyperparams(h));
    sum = Math.max(
      sum,
      multipliers.reduce((a, m) => a + Math.abs(m), 0),
    );
  }
  const [minNormal, u] =
    dtype === 'float64' ? [2 ** -1022, 2 ** -53] : [FLOAT32_MIN_NORMAL, FLOAT32_UNIT_ROUNDOFF];
  return (FLOOR_FLUSHES * (1 + sum) * minNormal) / u;
}

/**
 * max|got - truth| / max(max|truth|, floor) (SPEC.md §3; `floor` from accuracyFloor, default 0);
 * when that denominator is zero (truth all zeros, no floor), max|got - truth|. NaN anywhere gives
 * Infinity, so a NaN can never pass a bound.
 */
export function relativeError(got: ArrayLike<number>, truth: ArrayLike<number>, floor = 0): number {
  if (got.length !== truth.length) return Number.POSITIVE_INFINITY;
  let maxDiff = 0;
  let maxTruth = floor;
  for (let i = 0; i < truth.length; i++) {
    const diff = Math.abs(got[i]! - truth[i]!);
    if (!(diff <= maxDiff)) maxDiff = Number.isNaN(diff) ? Number.POSITIVE_INFINITY : diff;
    const t = Math.abs(truth[i]!);
    if (t > maxTruth) maxTruth = t;
  }
  return maxTruth === 0 ? maxDiff : maxDiff / maxTruth;
}
