import { createStepper, type Hyper, type MethodName } from './optimizers.js';
import { hError, type Problem } from './problems.js';
import { createRng, laneSeed, type Rng } from './rng.js';

export interface RunOptions {
  /** Independent runs averaged in the error (lane i draws its inputs from laneSeed(seed, i)). */
  seeds: number;
  seed: number;
  /** Target: mean ||w_t - w*||_H^2 <= tolerance * ||w_0 - w*||_H^2. */
  tolerance: number;
  /** Give up (Infinity) after this many iterations. */
  maxIterations: number;
  /** Declare divergence (Infinity) once the mean error exceeds this multiple of the initial one. */
  divergence?: number;
}

/**
 * Iterations until the error averaged over `seeds` runs (batch size 1, the same input streams for
 * every method and setting) first reaches the target, or Infinity when it does not within
 * maxIterations or diverges. All runs share one parameter vector [w^(0), w^(1), ...] updated by
 * one optimizer: every method here acts elementwise, so the runs stay independent.
 */
export function iterationsToTarget(
  problem: Problem,
  method: MethodName,
  hyper: Hyper,
  options: RunOptions,
): number {
  const { seeds, tolerance, maxIterations } = options;
  const divergence = options.divergence ?? 1e8;
  const param = new Float64Array(2 * seeds); // w0 = 0
  const grad = new Float64Array(2 * seeds);
  const rngs: Rng[] = [];
  for (let i = 0; i < seeds; i++) rngs.push(createRng(laneSeed(options.seed, i)));
  let stepper: ReturnType<typeof createStepper>;
  try {
    stepper = createStepper(method, param, hyper);
  } catch {
    return Number.POSITIVE_INFINITY; // invalid setting (the AccSGD constructor validates)
  }
  const initial = hError(problem, 0, 0);
  const target = tolerance * initial;
  const limit = divergence * initial;
  const [ws0, ws1] = problem.wStar;
  const x = new Float64Array(2);
  for (let t = 1; t <= maxIterations; t++) {
    for (let i = 0; i < seeds; i++) {
      problem.sample(rngs[i]!, x);
      const x0 = x[0]!;
      const x1 = x[1]!;
      const r = x0 * (param[2 * i]! - ws0) + x1 * (param[2 * i + 1]! - ws1); // <x, w> - y
      grad[2 * i] = r * x0;
      grad[2 * i + 1] = r * x1;
    }
    try {
      stepper.step(grad);
    } catch {
      return Number.POSITIVE_INFINITY; // non-finite gradient: diverged
    }
    let sum = 0;
    for (let i = 0; i < seeds; i++) sum += hError(problem, param[2 * i]!, param[2 * i + 1]!);
    const mean = sum / seeds;
    if (mean <= target) return t;
    if (!(mean <= limit)) return Number.POSITIVE_INFINITY;
  }
  return Number.POSITIVE_INFINITY;
}
