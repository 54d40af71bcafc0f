import { logLogSlope } from './fit.js';
import { expectedIterationsToTarget } from './moments.js';
import { type Hyper, METHODS, type MethodName, SMALL_CONST } from './optimizers.js';
import { DISTRIBUTIONS, type DistributionName, makeProblem } from './problems.js';
import { geometric, gridSearch, product } from './search.js';
import { iterationsToTarget } from './simulate.js';

export interface Preset {
  name: 'quick' | 'full';
  kappas: number[];
  distributions: readonly DistributionName[];
  /** Seeds averaged by the Monte Carlo estimator (the check at the best setting, or the search with --estimator mc). */
  seeds: number;
  tolerance: number;
  /** Iteration cap as a multiple of kappa (plus 1000). */
  capPerKappa: number;
  grids: {
    lr: number[];
    momentum: number[];
    accLr: number[];
    /** AccSGD's kappa as multiples of the problem's condition number. */
    accKappaFactor: number[];
    accXi: number[];
  };
}

const momentumGrid = (halfOctaves: number, stepHalves: number): number[] => [
  0,
  ...Array.from(
    { length: Math.floor(halfOctaves / stepHalves) },
    (_, k) => 1 - 2 ** (-((k + 1) * stepHalves) / 2),
  ),
];

export const PRESETS: Record<'quick' | 'full', Preset> = {
  quick: {
    name: 'quick',
    kappas: [2 ** 4, 2 ** 6, 2 ** 8],
    distributions: DISTRIBUTIONS,
    seeds: 64,
    tolerance: 1e-4,
    capPerKappa: 100,
    grids: {
      lr: geometric(2, 1, -8, 1),
      momentum: momentumGrid(10, 2), // 0, 1/2, 3/4, ..., 1 - 2^-5
      accLr: geometric(2, 1, -5, 1),
      accKappaFactor: geometric(2, -2, 2, 1),
      accXi: geometric(2, 0, 4, 1),
    },
  },
  full: {
    name: 'full',
    kappas: geometric(2, 4, 12, 1),
    distributions: DISTRIBUTIONS,
    seeds: 256,
    tolerance: 1e-4,
    capPerKappa: 100,
    grids: {
      lr: geometric(2, 1, -10, 0.5),
      momentum: momentumGrid(20, 1), // 0, 1 - 2^-0.5, 1/2, ..., 1 - 2^-10
      accLr: geometric(2, 1, -5, 0.5),
      accKappaFactor: geometric(2, -4, 4, 1),
      accXi: geometric(2, 0, 9, 1),
    },
  },
};

/** The grid of a method for a problem of condition number kappa. */
export function gridFor(method: MethodName, kappa: number, preset: Preset): Hyper[] {
  const g = preset.grids;
  switch (method) {
    case 'SGD':
      return product({ lr: g.lr });
    case 'HB':
    case 'NAG':
      return product({ momentum: g.momentum, lr: g.lr });
    case 'AccSGD':
      return product({ kappa: g.accKappaFactor.map((f) => f * kappa), xi: g.accXi, lr: g.accLr }).filter(
        // SPEC §1: beta = smallConst^2 * xi / kappa must be <= 1.
        (h) => (SMALL_CONST * SMALL_CONST * h.xi!) / h.kappa! <= 1,
      );
  }
}

export interface Cell {
  distribution: DistributionName;
  kappa: number;
  method: MethodName;
  /** Fewest iterations found (Infinity: no setting reached the target within the cap). */
  iterations: number;
  best: Hyper | undefined;
  /** Hyperparameters whose best value sits on the edge of its grid ("lr:high"). */
  edges: string[];
  evaluated: number;
  /** Monte Carlo check at the best setting: iterations for the mean over preset.seeds seeded runs. */
  mcIterations: number;
}

/** How a setting's iterations are measured during the search. */
export type Estimator = 'exact' | 'mc';

export interface Result {
  estimator: Estimator;
  preset: Preset;
  seed: number;
  cells: Cell[];
  slopes: { distribution: DistributionName; method: MethodName; slope: number }[];
  seconds: number;
}

/** Which hyperparameters of `best` lie on the edge of the grid (momentum 0 is a natural edge). */
export function edgesOf(grid: readonly Hyper[], best: Hyper): string[] {
  const out: string[] = [];
  for (const key of Object.keys(best)) {
    const values = [...new Set(grid.map((h) => h[key]!))].sort((a, b) => a - b);
    if (values.length < 2) continue;
    const v = best[key]!;
    if (v === values[0] && !(key === 'momentum' && v === 0)) out.push(`${key}:low`);
    if (v === values[values.length - 1]) out.push(`${key}:high`);
  }
  return out;
}

export interface Task {
  distribution: DistributionName;
  kappa: number;
  method: MethodName;
  grid: Hyper[];
}

export function tasksFor(preset: Preset): Task[] {
  const tasks: Task[] = [];
  for (const distribution of preset.distributions)
    for (const kappa of preset.kappas)
      for (const method of METHODS)
        tasks.push({ distribution, kappa, method, grid: gridFor(method, kappa, preset) });
  return tasks;
}

/** Grid-searches one (distribution, kappa, method). */
export function runTask(
  task: Task,
  preset: Preset,
  seed: number,
  estimator: Estimator,
  onProgress?: (done: number, total: number) => void,
): Cell {
  const problem = makeProblem(task.distribution, task.kappa);
  const cap = Math.round(preset.capPerKappa * task.kappa + 1000);
  const mc = (hyper: Hyper, budget: number) =>
    iterationsToTarget(problem, task.method, hyper, {
      seeds: preset.seeds,
      seed,
      tolerance: preset.tolerance,
      maxIterations: budget,
    });
  const search = gridSearch(
    task.grid,
    (hyper, budget) =>
      estimator === 'mc'
        ? mc(hyper, budget)
        : expectedIterationsToTarget(problem, task.method, hyper, {
            tolerance: preset.tolerance,
            maxIterations: budget,
          }),
    { budget: cap, ...(onProgress ? { onProgress } : {}) },
  );
  const mcIterations =
    estimator === 'mc' ? search.cost : search.best ? mc(search.best, 4 * cap) : Number.POSITIVE_INFINITY;
  return {
    distribution: task.distribution,
    kappa: task.kappa,
    method: task.method,
    iterations: search.cost,
    best: search.best,
    edges: search.best ? edgesOf(task.grid, search.best) : [],
    evaluated: search.evaluated,
    mcIterations,
  };
}

export function slopesOf(preset: Preset, cells: readonly Cell[]): Result['slopes'] {
  const slopes: Result['slopes'] = [];
  for (const distribution of preset.distributions)
    for (const method of METHODS) {
      const row = cells.filter((c) => c.distribution === distribution && c.method === method);
      slopes.push({
        distribution,
        method,
        slope: logLogSlope(
          row.map((c) => c.kappa),
          row.map((c) => c.iterations),
        ),
      });
    }
  return slopes;
}

export function runExperiment(
  preset: Preset,
  seed: number,
  estimator: Estimator,
  hooks: {
    onTaskStart?: (task: Task, index: number) => void;
    onProgress?: (done: number, total: number) => void;
  } = {},
): Result {
  const t0 = performance.now();
  const tasks = tasksFor(preset);
  const cells: Cell[] = [];
  tasks.forEach((task, i) => {
    hooks.onTaskStart?.(task, i);
    cells.push(runTask(task, preset, seed, estimator, hooks.onProgress));
  });
  return {
    estimator,
    preset,
    seed,
    cells,
    slopes: slopesOf(preset, cells),
    seconds: (performance.now() - t0) / 1000,
  };
}
