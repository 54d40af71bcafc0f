import { describe, expect, it } from 'vitest';
import {
  drawInputs,
  fixedSetting,
  inverseRateSlope,
  linspace,
  type PaperCell,
  paperProblem,
  rSquared,
  runSetting,
  selectSetting,
  summarizeRuns,
} from './paper.js';

describe("the paper protocol's rate and convergence filter", () => {
  it('gives (log f0 - log ft) / t: an error halving every step has rate ln 2', () => {
    // f_s = 2^-s for s = 0..10: rate = (log 1 - log 2^-10) / 10 = ln 2.
    const run = Array.from({ length: 11 }, (_, s) => 2 ** -s);
    const r = summarizeRuns([run], 5);
    expect(r.converged).toBe(1);
    expect(r.rate).toBeCloseTo(Math.LN2, 12);
    expect(r.meanFinalError).toBe(2 ** -10);
  });

  it('drops a run whose error exceeds the start after the filter point, keeps one that does so before it', () => {
    // t = 10, filter from iteration 5 (2.5 kappa with kappa = 2).
    const early = [1, 3, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1]; // above f0 only at s = 1
    const late = [1, 0.5, 0.4, 0.3, 0.2, 0.1, 1.5, 0.1, 0.1, 0.1, 0.1]; // above f0 at s = 6
    const equal = [1, 0.5, 0.5, 0.5, 0.5, 1, 1, 1, 1, 1, 1]; // equal to f0 is not above it
    const nan = [1, 0.5, 0.5, 0.5, 0.5, 0.5, Number.NaN, 0.5, 0.5, 0.5, 0.5];
    const r = summarizeRuns([early, late, equal, nan], 5);
    expect(r.runs).toBe(4);
    expect(r.converged).toBe(2); // early and equal
    // Mean over the converged runs: rates ln(10)/10 and 0; final errors 0.1 and 1.
    expect(r.rate).toBeCloseTo(Math.log(10) / 20, 12);
    expect(r.meanFinalError).toBeCloseTo(0.55, 12);
  });

  it('reports no rate and an infinite error when no run converged', () => {
    const r = summarizeRuns([[1, 2, 2, 2]], 1);
    expect(r.converged).toBe(0);
    expect(r.rate).toBeNaN();
    expect(r.meanFinalError).toBe(Number.POSITIVE_INFINITY);
  });

  it('fits the slope of log(1/rate) against log(kappa): rate = 1/kappa gives 1, 1/sqrt(kappa) gives 0.5', () => {
    const cell = (kappa: number, rate: number) =>
      ({ kappa, summary: { runs: 1, converged: 1, meanFinalError: 0, rate } }) as PaperCell;
    const ks = [16, 64, 256, 1024];
    expect(inverseRateSlope(ks.map((k) => cell(k, 3 / k)))).toBeCloseTo(1, 12);
    expect(inverseRateSlope(ks.map((k) => cell(k, 1 / Math.sqrt(k))))).toBeCloseTo(0.5, 12);
  });

  it('SGD on the discrete problem with lr = 1 solves each observed coordinate exactly: a known rate', () => {
    // Discrete inputs x = ±e1 or ±e2/sqrt(kappa); with lr = 1/R^2 = 1 a step on ±e1 zeroes the first
    // coordinate's error; a step on the second shrinks it by (1 - 1/kappa). With w* = (0, 1), the
    // error after t steps is (1/(2 kappa)) (1 - 1/kappa)^(2 n2), n2 the number of e2 draws.
    const kappa = 4;
    const p = paperProblem('discrete', kappa, [0, 1]);
    expect(fixedSetting('SGD', p)).toEqual({ lr: 1 });
    const t = 5 * kappa;
    const inputs = drawInputs(p, 3, t, 11);
    const r = runSetting(p, 'SGD', { lr: 1 }, inputs);
    let expectedRate = 0;
    for (let run = 0; run < 3; run++) {
      let n2 = 0;
      for (let s = 0; s < t; s++) if (inputs.x[2 * (s * 3 + run) + 1] !== 0) n2++;
      expectedRate += (-2 * n2 * Math.log(1 - 1 / kappa)) / t / 3;
    }
    expect(r.converged).toBe(3);
    expect(r.rate).toBeCloseTo(expectedRate, 10);
  });

  it('the 10 x 10 linear grid is linspace(0, 1, 10), ends included', () => {
    const g = linspace(0, 1, 10);
    expect(g).toHaveLength(10);
    expect(g[0]).toBe(0);
    expect(g[9]).toBe(1);
    expect(g[3]).toBeCloseTo(1 / 3, 15);
  });

  it('R^2 bounds E[||x||^2 x x^T] by R^2 H: 3 + 1/kappa (Gaussian), 1 (discrete)', () => {
    expect(rSquared(paperProblem('gaussian', 16, [1, 1]))).toBeCloseTo(3 + 1 / 16, 15);
    expect(rSquared(paperProblem('discrete', 16, [1, 1]))).toBe(1);
    expect(fixedSetting('AccSGD', paperProblem('discrete', 16, [1, 1]))).toEqual({ lr: 1, kappa: 32, xi: 4 });
  });

  it('selection: momentum 1 and lr 0 are never eligible, and the chosen setting beats the rest', () => {
    const p = paperProblem('gaussian', 16, [1, -0.5]);
    const inputs = drawInputs(p, 20, 80, 3);
    const grid = [
      { momentum: 0, lr: 0 },
      { momentum: 1, lr: 0.5 },
      { momentum: 0.5, lr: 0.25 },
      { momentum: 0, lr: 0.25 },
    ];
    const s = selectSetting(p, 'HB', grid, inputs);
    const each = grid.map((h) => runSetting(p, 'HB', h, inputs));
    expect(each[0]!.converged).toBe(20); // lr 0 never moves: f_t = f_0 passes the filter...
    expect(each[0]!.rate).toBe(0); // ...with rate 0, so it cannot be the lowest error
    expect(s.all.best).not.toEqual(grid[1]);
    const eligible = each.filter((e) => e.converged === e.runs);
    expect(s.all.summary.meanFinalError).toBe(Math.min(...eligible.map((e) => e.meanFinalError)));
  });
});
