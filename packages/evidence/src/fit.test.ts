import { describe, expect, it } from 'vitest';
import { leastSquares, logLogSlope } from './fit.js';

describe('least-squares slope', () => {
  it('recovers an exact line', () => {
    const { slope, intercept } = leastSquares([0, 1, 2, 3], [1, 3, 5, 7]);
    expect(slope).toBeCloseTo(2, 12);
    expect(intercept).toBeCloseTo(1, 12);
  });

  it('iterations = 30 * kappa^0.5 gives slope 0.5; 7 * kappa gives 1', () => {
    const kappas = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096];
    expect(
      logLogSlope(
        kappas,
        kappas.map((k) => 30 * Math.sqrt(k)),
      ),
    ).toBeCloseTo(0.5, 12);
    expect(
      logLogSlope(
        kappas,
        kappas.map((k) => 7 * k),
      ),
    ).toBeCloseTo(1, 12);
  });

  it('fits noisy symmetric residuals to the true slope: y = 1.5 x +- 0.1 alternating', () => {
    const xs = [1, 2, 3, 4];
    const ys = [1.5 + 0.1, 3 - 0.1, 4.5 - 0.1, 6 + 0.1];
    expect(leastSquares(xs, ys).slope).toBeCloseTo(1.5, 12);
  });

  it('ignores unreached (Infinity) points and needs two finite ones', () => {
    expect(logLogSlope([2, 4, 8], [4, 16, Number.POSITIVE_INFINITY])).toBeCloseTo(2, 12);
    expect(logLogSlope([2, 4], [4, Number.POSITIVE_INFINITY])).toBeNaN();
  });
});
