import { describe, expect, it } from 'vitest';
import { expectedErrors, expectedIterationsToTarget } from './moments.js';
import { discreteProblem, gaussianProblem } from './problems.js';
import { iterationsToTarget } from './simulate.js';

describe('exact expected error', () => {
  it('matches the closed form for SGD on the Gaussian: E[e_{t+1}] per direction', () => {
    // x ~ N(0, diag(1, 1/k)), d = w - w*: E[d d^T]' = S - lr(HS + SH) + lr^2 (2 H S H + tr(HS) H).
    const k = 16;
    const lr = 0.2;
    const p = gaussianProblem(k);
    const h = [1, 1 / k];
    let s = [1, k]; // diagonal of S: d0 = (-1, -4)
    const want: number[] = [h[0]! * s[0]! + h[1]! * s[1]!];
    for (let t = 0; t < 3; t++) {
      const tr = h[0]! * s[0]! + h[1]! * s[1]!;
      s = s.map((v, i) => v - 2 * lr * h[i]! * v + lr * lr * (2 * h[i]! * h[i]! * v + tr * h[i]!));
      want.push(h[0]! * s[0]! + h[1]! * s[1]!);
    }
    const got = expectedErrors(p, 'SGD', { lr }, 3);
    got.forEach((g, i) => expect(g).toBeCloseTo(want[i]!, 12));
  });

  it('agrees with the seeded Monte Carlo mean where the error has light tails', () => {
    const p = discreteProblem(64);
    for (const [m, h] of [
      ['SGD', { lr: 1 }],
      ['NAG', { lr: 0.5, momentum: 0.875 }],
      ['AccSGD', { lr: 1, kappa: 256, xi: 16 }],
    ] as const) {
      const exact = expectedIterationsToTarget(p, m, h, { tolerance: 1e-4, maxIterations: 10_000 });
      const mc = iterationsToTarget(p, m, h, { seeds: 512, seed: 3, tolerance: 1e-4, maxIterations: 10_000 });
      expect(Math.abs(mc - exact) / exact).toBeLessThan(0.05);
    }
  });

  it('the seeded Monte Carlo estimate is deterministic given the seed', () => {
    const run = (seed: number) =>
      iterationsToTarget(
        gaussianProblem(64),
        'HB',
        { lr: 0.1, momentum: 0.5 },
        {
          seeds: 8,
          seed,
          tolerance: 1e-4,
          maxIterations: 20_000,
        },
      );
    expect(run(11)).toBe(run(11));
    expect(Number.isFinite(run(11))).toBe(true);
  });

  it('reports divergence as Infinity', () => {
    expect(
      expectedIterationsToTarget(
        gaussianProblem(16),
        'SGD',
        { lr: 2 },
        { tolerance: 1e-4, maxIterations: 1000 },
      ),
    ).toBe(Number.POSITIVE_INFINITY);
  });
});
