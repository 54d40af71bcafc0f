import type { Rng } from './rng.js';

/**
 * A 2-dimensional noiseless least-squares problem: inputs x from a distribution with covariance
 * H = E[x x^T] = scale * diag(1, 1/kappa) (condition number kappa), labels y = <w*, x>.
 */
export interface Problem {
  readonly name: DistributionName;
  readonly kappa: number;
  /** The diagonal of H = E[x x^T]. */
  readonly h: readonly [number, number];
  /** The optimum w*. The start is w0 = 0. */
  readonly wStar: readonly [number, number];
  /** Draws one input x into out[0], out[1]. */
  sample(rng: Rng, out: Float64Array): void;
}

export type DistributionName = 'gaussian' | 'discrete';

export const DISTRIBUTIONS: readonly DistributionName[] = ['gaussian', 'discrete'];

/**
 * w* = (1, sqrt(kappa)) puts the same share of the initial error ||w0 - w*||_H^2 in both
 * eigendirections, so that the 1e-4 target cannot be met without converging in the flat direction.
 */
function optimum(kappa: number): [number, number] {
  return [1, Math.sqrt(kappa)];
}

/** x ~ N(0, diag(1, 1/kappa)). */
export function gaussianProblem(kappa: number): Problem {
  const s2 = 1 / Math.sqrt(kappa);
  return {
    name: 'gaussian',
    kappa,
    h: [1, 1 / kappa],
    wStar: optimum(kappa),
    sample(rng, out) {
      out[0] = rng.normal();
      out[1] = s2 * rng.normal();
    },
  };
}

/**
 * With probability 1/2, x = z e1; otherwise x = z e2 / sqrt(kappa), z uniform on {-1, +1}:
 * H = diag(1/2, 1/(2 kappa)). One coordinate is observed per sample.
 */
export function discreteProblem(kappa: number): Problem {
  const s2 = 1 / Math.sqrt(kappa);
  return {
    name: 'discrete',
    kappa,
    h: [0.5, 0.5 / kappa],
    wStar: optimum(kappa),
    sample(rng, out) {
      const u = rng.uniform();
      const z = u < 0.25 || (u >= 0.5 && u < 0.75) ? -1 : 1;
      if (u < 0.5) {
        out[0] = z;
        out[1] = 0;
      } else {
        out[0] = 0;
        out[1] = z * s2;
      }
    },
  };
}

export function makeProblem(name: DistributionName, kappa: number): Problem {
  return name === 'gaussian' ? gaussianProblem(kappa) : discreteProblem(kappa);
}

/** ||w - w*||_H^2 for H diagonal. */
export function hError(problem: Problem, w0: number, w1: number): number {
  const d0 = w0 - problem.wStar[0];
  const d1 = w1 - problem.wStar[1];
  return problem.h[0] * d0 * d0 + problem.h[1] * d1 * d1;
}
