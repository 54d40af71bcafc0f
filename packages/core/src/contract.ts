/**
 * The conformance contract: what every adapter exports as `conformanceAdapter(options?)` from its
 * `./conformance` subpath, and the accuracy it is judged by. It lives in the core because it is
 * part of the spec; @accsgd/conformance holds the vectors and the runner.
 */

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
  setLearningRate(group: number, lr: number): Promise<void>;
  read(): Promise<ConformanceSnapshot>;
  /** The state file (see SPEC.md). */
  exportState(): Promise<Uint8Array>;
  importState(bytes: Uint8Array): Promise<void>;
  close(): Promise<void>;
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
 * The accuracy contract (SPEC.md, "Accuracy"): after step t (1-based) of a trajectory, for every
 * tensor, max|got - truth| / max|truth| must not exceed this bound.
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

/**
 * max|got - truth| / max|truth|; when truth is all zeros, max|got|. NaN anywhere gives Infinity,
 * so a NaN can never pass a bound.
 */
export function relativeError(got: ArrayLike<number>, truth: ArrayLike<number>): number {
  if (got.length !== truth.length) return Number.POSITIVE_INFINITY;
  let maxDiff = 0;
  let maxTruth = 0;
  for (let i = 0; i < truth.length; i++) {
    const diff = Math.abs(got[i]! - truth[i]!);
    if (!(diff <= maxDiff)) maxDiff = Number.isNaN(diff) ? Number.POSITIVE_INFINITY : diff;
    const t = Math.abs(truth[i]!);
    if (t > maxTruth) maxTruth = t;
  }
  return maxTruth === 0 ? maxDiff : maxDiff / maxTruth;
}
