/** Ordinary least-squares line y = intercept + slope * x. */
export function leastSquares(
  xs: readonly number[],
  ys: readonly number[],
): { slope: number; intercept: number } {
  if (xs.length !== ys.length || xs.length < 2) throw new RangeError('need at least two (x, y) pairs');
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i]! - mx) * (ys[i]! - my);
    sxx += (xs[i]! - mx) ** 2;
  }
  if (sxx === 0) throw new RangeError('x values must not all be equal');
  const slope = sxy / sxx;
  return { slope, intercept: my - slope * mx };
}

/**
 * Slope of log(iterations) against log(kappa) (the exponent p in iterations ~ kappa^p), over
 * the finite points; NaN when fewer than two are finite.
 */
export function logLogSlope(kappas: readonly number[], iterations: readonly number[]): number {
  const xs: number[] = [];
  const ys: number[] = [];
  kappas.forEach((k, i) => {
    const it = iterations[i]!;
    if (Number.isFinite(it) && it > 0 && k > 0) {
      xs.push(Math.log(k));
      ys.push(Math.log(it));
    }
  });
  return xs.length < 2 ? Number.NaN : leastSquares(xs, ys).slope;
}
