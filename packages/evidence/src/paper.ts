/**
 * The linear-regression protocol as the paper's experiments section describes it (Kidambi et al.,
 * ICLR 2018), beside this package's own protocol (experiment.ts): per setting, R independent runs
 * of t = 5κ iterations; a run counts as converged when no error after 2.5κ iterations exceeds the
 * starting error; the rate of a run is (log f(w0) - log f(wt)) / t; HB and NAG are chosen on a
 * grid by the lowest final error among converged runs; SGD and ASGD run fixed settings; the slope
 * is fitted to log(1/rate) against log(κ).
 */
import { logLogSlope } from './fit.js';
import { createStepper, type Hyper, type MethodName } from './optimizers.js';
import { type DistributionName, hError, makeProblem, type Problem } from './problems.js';
import { createRng, laneSeed } from './rng.js';

/** n values evenly spaced over [a, b], both ends included (numpy's linspace). */
export function linspace(a: number, b: number, n: number): number[] {
  if (!Number.isInteger(n) || n < 2) throw new RangeError(`linspace needs n >= 2 points, got ${n}`);
  return Array.from({ length: n }, (_, k) => (k === n - 1 ? b : a + ((b - a) * k) / (n - 1)));
}

/** The paper's HB/NAG grid: 10 x 10, linear over [0, 1] for both lr and momentum. */
export const PAPER_GRID_AXIS = linspace(0, 1, 10);

/** The outcome of R runs of one setting. */
export interface RunsSummary {
  runs: number;
  /** Runs that passed the filter: no error after `filterFrom` iterations above the starting error. */
  converged: number;
  /** Mean of the converged runs' final errors f(w_t) (the selection criterion); Infinity when none. */
  meanFinalError: number;
  /** Mean of the converged runs' rates (log f(w0) - log f(wt)) / t; NaN when none converged. */
  rate: number;
}

/**
 * Per-run rate and convergence filter over error trajectories: `errors[r][s]` is run r's error after
 * s iterations (s = 0 the start), t = length - 1. A run is converged when every error at iteration
 * s >= filterFrom is <= errors[r][0] (a NaN fails).
 */
export function summarizeRuns(errors: readonly (readonly number[])[], filterFrom: number): RunsSummary {
  const acc = new RunAccumulator(errors.length, filterFrom);
  for (let r = 0; r < errors.length; r++) {
    const e = errors[r]!;
    acc.start(r, e[0]!);
    for (let s = 1; s < e.length; s++) acc.observe(r, s, e[s]!);
  }
  return acc.summary(Math.max(...errors.map((e) => e.length - 1)));
}

/** Streaming form of summarizeRuns, so a simulation need not keep trajectories. */
export class RunAccumulator {
  private readonly initial: Float64Array;
  private readonly last: Float64Array;
  private readonly failed: Uint8Array;
  constructor(
    readonly runs: number,
    readonly filterFrom: number,
  ) {
    this.initial = new Float64Array(runs);
    this.last = new Float64Array(runs);
    this.failed = new Uint8Array(runs);
  }
  start(run: number, error: number): void {
    this.initial[run] = error;
    this.last[run] = error;
  }
  observe(run: number, iteration: number, error: number): void {
    this.last[run] = error;
    if (iteration >= this.filterFrom && !(error <= this.initial[run]!)) this.failed[run] = 1;
  }
  /** True once every run has failed the filter (nothing left to measure). */
  allFailed(): boolean {
    return this.failed.every((f) => f === 1);
  }
  failAll(): void {
    this.failed.fill(1);
  }
  summary(t: number): RunsSummary {
    let converged = 0;
    let errorSum = 0;
    let rateSum = 0;
    for (let r = 0; r < this.runs; r++) {
      if (this.failed[r]) continue;
      converged++;
      const final = Math.max(this.last[r]!, Number.MIN_VALUE); // an exact 0 would give rate Infinity
      errorSum += final;
      rateSum += (Math.log(this.initial[r]!) - Math.log(final)) / t;
    }
    return {
      runs: this.runs,
      converged,
      meanFinalError: converged > 0 ? errorSum / converged : Number.POSITIVE_INFINITY,
      rate: converged > 0 ? rateSum / converged : Number.NaN,
    };
  }
}

/** A fixed w* drawn from N(0, I_2) with `seed` (the paper: "a fixed random w*"). */
export function randomOptimum(seed: number): [number, number] {
  const rng = createRng(seed);
  return [rng.normal(), rng.normal()];
}

/**
 * The paper's problem: our distribution (the Gaussian is the paper's; the discrete one is its
 * two-atom distribution scaled to eigenvalue ratio κ, see the report) with a fixed random w*.
 */
export function paperProblem(
  name: DistributionName,
  kappa: number,
  wStar: readonly [number, number],
): Problem {
  const base = makeProblem(name, kappa);
  return { name: base.name, kappa, h: base.h, wStar, sample: (rng, out) => base.sample(rng, out) };
}

/**
 * R^2 with E[||x||^2 x x^T] <= R^2 H (the SGD step-size bound 1/R^2 of the theory the paper uses):
 * Gaussian E[||x||^2 x x^T] = tr(H) H + 2 H^2, so R^2 = tr(H) + 2 max(H); discrete: max ||x||^2.
 */
export function rSquared(p: Problem): number {
  if (p.name === 'gaussian') return p.h[0] + p.h[1] + 2 * Math.max(p.h[0], p.h[1]);
  return Math.max(2 * p.h[0], 2 * p.h[1]); // the atoms are sqrt(2 h_i) e_i
}

/**
 * kappa~ with E[||x||^2_{H^-1} x x^T] <= kappa~ H: Gaussian in d = 2 dimensions d + 2 = 4;
 * discrete: ||x||^2_{H^-1} = 2 on every atom.
 */
export function statisticalCondition(p: Problem): number {
  return p.name === 'gaussian' ? 4 : 2;
}

/**
 * The fixed settings used for SGD and ASGD (the paper's appendix values could not be read here, so
 * these come from the theory the paper builds on, not from any search): SGD lr = 1/R^2; ASGD short
 * step lr = 1/R^2, long step kappa = R^2/mu (mu the smallest eigenvalue of H), statistical advantage
 * xi = sqrt(kappa / kappa~).
 */
export function fixedSetting(method: 'SGD' | 'AccSGD', p: Problem): Hyper {
  const r2 = rSquared(p);
  if (method === 'SGD') return { lr: 1 / r2 };
  const kappa = r2 / Math.min(p.h[0], p.h[1]);
  return { lr: 1 / r2, kappa, xi: Math.sqrt(kappa / statisticalCondition(p)) };
}

/** The inputs of R runs for t iterations, drawn once and shared by every method and setting. */
export interface InputStreams {
  runs: number;
  iterations: number;
  /** x of run r at iteration s (1-based) at [2 * ((s - 1) * runs + r)], two coordinates. */
  x: Float64Array;
}

export function drawInputs(p: Problem, runs: number, iterations: number, seed: number): InputStreams {
  const x = new Float64Array(2 * runs * iterations);
  const rngs = Array.from({ length: runs }, (_, r) => createRng(laneSeed(seed, r)));
  const out = new Float64Array(2);
  for (let s = 0; s < iterations; s++)
    for (let r = 0; r < runs; r++) {
      p.sample(rngs[r]!, out);
      x[2 * (s * runs + r)] = out[0]!;
      x[2 * (s * runs + r) + 1] = out[1]!;
    }
  return { runs, iterations, x };
}

/** Runs one setting of one method on every stream (w0 = 0) and summarizes the runs. */
export function runSetting(p: Problem, method: MethodName, hyper: Hyper, inputs: InputStreams): RunsSummary {
  const { runs, iterations, x } = inputs;
  const filterFrom = 2.5 * p.kappa;
  const acc = new RunAccumulator(runs, filterFrom);
  const param = new Float64Array(2 * runs);
  const grad = new Float64Array(2 * runs);
  const [ws0, ws1] = p.wStar;
  const f0 = hError(p, 0, 0);
  for (let r = 0; r < runs; r++) acc.start(r, f0);
  let stepper: ReturnType<typeof createStepper>;
  try {
    stepper = createStepper(method, param, hyper);
  } catch {
    acc.failAll(); // a setting the optimizer rejects
    return acc.summary(iterations);
  }
  for (let s = 1; s <= iterations; s++) {
    const base = 2 * (s - 1) * runs;
    for (let r = 0; r < runs; r++) {
      const x0 = x[base + 2 * r]!;
      const x1 = x[base + 2 * r + 1]!;
      const residual = x0 * (param[2 * r]! - ws0) + x1 * (param[2 * r + 1]! - ws1);
      grad[2 * r] = residual * x0;
      grad[2 * r + 1] = residual * x1;
    }
    try {
      stepper.step(grad);
    } catch {
      // @accsgd/core rejects a non-finite gradient for the whole step, so every run stops here.
      acc.failAll();
      return acc.summary(iterations);
    }
    for (let r = 0; r < runs; r++) acc.observe(r, s, hError(p, param[2 * r]!, param[2 * r + 1]!));
    if (s >= filterFrom && acc.allFailed()) return acc.summary(iterations);
  }
  return acc.summary(iterations);
}

export interface PaperCell {
  distribution: DistributionName;
  kappa: number;
  method: MethodName;
  /** 'paper': the 10 x 10 linear grid (HB, NAG) or the fixed setting (SGD, AccSGD); 'extended': ours. */
  grid: 'paper' | 'extended';
  /** The selection rule (HB, NAG); 'all' for the fixed settings. */
  eligibility: Eligibility;
  best: Hyper | undefined;
  summary: RunsSummary;
  /** Settings tried, and how many met the eligibility rule. */
  evaluated: number;
  eligible: number;
}

/** Which settings may be chosen: every run converged ('all'), or at least one ('any'). */
export type Eligibility = 'all' | 'any';

export interface Selection {
  best: Hyper | undefined;
  summary: RunsSummary;
  /** Settings that met the eligibility rule. */
  eligible: number;
}

/**
 * Chooses the setting with the lowest mean final error among converged runs (ties: the first), under
 * both readings of the paper's rule: among settings whose runs all converged, and among settings
 * with at least one converged run (where one lucky run out of 100 can carry a setting).
 */
export function selectSetting(
  p: Problem,
  method: MethodName,
  grid: readonly Hyper[],
  inputs: InputStreams,
): Record<Eligibility, Selection> {
  const none = (): Selection => ({
    best: undefined,
    summary: { runs: inputs.runs, converged: 0, meanFinalError: Number.POSITIVE_INFINITY, rate: Number.NaN },
    eligible: 0,
  });
  const out: Record<Eligibility, Selection> = { all: none(), any: none() };
  for (const hyper of grid) {
    const s = runSetting(p, method, hyper, inputs);
    for (const rule of ['all', 'any'] as const) {
      const ok = rule === 'all' ? s.converged === s.runs : s.converged > 0;
      if (!ok) continue;
      const sel = out[rule];
      sel.eligible++;
      if (s.meanFinalError < sel.summary.meanFinalError) {
        sel.best = hyper;
        sel.summary = s;
      }
    }
  }
  return out;
}

export interface PaperPreset {
  name: 'quick' | 'full';
  kappas: number[];
  runs: number;
  /** t = iterationsPerKappa * κ. */
  iterationsPerKappa: number;
  /** Our grids for the 'extended' rows (lr x momentum), as experiment.ts's preset. */
  extended: { lr: number[]; momentum: number[] } | undefined;
}

/** Slope of log(1/rate) against log(κ) over the cells with a finite positive rate. */
export function inverseRateSlope(cells: readonly PaperCell[]): number {
  const ok = cells.filter((c) => c.summary.rate > 0);
  return logLogSlope(
    ok.map((c) => c.kappa),
    ok.map((c) => 1 / c.summary.rate),
  );
}
