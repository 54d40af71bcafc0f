import { type Cell, PRESETS, runTask, slopesOf } from './experiment.js';
import { type Hyper, METHODS, type MethodName } from './optimizers.js';
import {
  drawInputs,
  type Eligibility,
  fixedSetting,
  inverseRateSlope,
  PAPER_GRID_AXIS,
  type PaperCell,
  type PaperPreset,
  paperProblem,
  randomOptimum,
  runSetting,
  selectSetting,
} from './paper.js';
import { DISTRIBUTIONS, type DistributionName } from './problems.js';
import { geometric, product } from './search.js';

export const PAPER_PRESETS: Record<'quick' | 'full', PaperPreset> = {
  quick: {
    name: 'quick',
    kappas: [2 ** 4, 2 ** 6, 2 ** 8],
    runs: 100,
    iterationsPerKappa: 5,
    extended: { lr: PRESETS.quick.grids.lr, momentum: PRESETS.quick.grids.momentum },
  },
  full: {
    name: 'full',
    kappas: geometric(2, 4, 12, 1),
    runs: 100,
    iterationsPerKappa: 5,
    extended: { lr: PRESETS.full.grids.lr, momentum: PRESETS.full.grids.momentum },
  },
};

export const PAPER_GRID: readonly Hyper[] = product({ momentum: PAPER_GRID_AXIS, lr: PAPER_GRID_AXIS });

/** The slopes the paper reports (discrete / Gaussian), for the comparison table. */
export const PAPER_REPORTED: Record<DistributionName, Record<MethodName, number>> = {
  discrete: { SGD: 0.93, HB: 0.85, NAG: 0.98, AccSGD: 0.55 },
  gaussian: { SGD: 0.87, HB: 0.88, NAG: 0.95, AccSGD: 0.51 },
};

export interface PaperResult {
  preset: PaperPreset;
  seed: number;
  wStar: Record<DistributionName, [number, number]>;
  cells: PaperCell[];
  /** Slopes of log(1/rate) vs log(κ); grid 'extended' and eligibility 'any' only for HB and NAG. */
  slopes: {
    distribution: DistributionName;
    method: MethodName;
    grid: 'paper' | 'extended';
    eligibility: Eligibility;
    slope: number;
  }[];
  /** Our criterion (iterations to 1e-4, exact expectation) on the paper's 10 x 10 grid, HB and NAG. */
  oursOnPaperGrid: {
    cells: Cell[];
    slopes: { distribution: DistributionName; method: MethodName; slope: number }[];
  };
  seconds: number;
}

export interface PaperTask {
  distribution: DistributionName;
  kappa: number;
  method: MethodName;
  grid: 'paper' | 'extended';
  settings: number;
}

export function paperTasks(preset: PaperPreset): PaperTask[] {
  const tasks: PaperTask[] = [];
  const extendedSize = preset.extended ? preset.extended.lr.length * preset.extended.momentum.length : 0;
  for (const distribution of DISTRIBUTIONS)
    for (const kappa of preset.kappas)
      for (const method of METHODS) {
        const tuned = method === 'HB' || method === 'NAG';
        tasks.push({ distribution, kappa, method, grid: 'paper', settings: tuned ? PAPER_GRID.length : 1 });
        if (tuned && preset.extended)
          tasks.push({ distribution, kappa, method, grid: 'extended', settings: extendedSize });
      }
  return tasks;
}

export function runPaperExperiment(
  preset: PaperPreset,
  seed: number,
  hooks: { onTask?: (task: PaperTask) => void; onTaskDone?: (task: PaperTask) => void } = {},
): PaperResult {
  const t0 = performance.now();
  const wStar = { gaussian: randomOptimum(seed), discrete: randomOptimum(seed + 1) };
  const cells: PaperCell[] = [];
  const tasks = paperTasks(preset);
  for (const distribution of DISTRIBUTIONS)
    for (const kappa of preset.kappas) {
      const p = paperProblem(distribution, kappa, wStar[distribution]);
      const t = preset.iterationsPerKappa * kappa;
      // The same input streams for every method and setting (common random numbers).
      const inputs = drawInputs(p, preset.runs, t, seed * 7919 + kappa);
      for (const task of tasks.filter((x) => x.distribution === distribution && x.kappa === kappa)) {
        hooks.onTask?.(task);
        const { method } = task;
        if (method === 'SGD' || method === 'AccSGD') {
          const best = fixedSetting(method, p);
          cells.push({
            distribution,
            kappa,
            method,
            grid: 'paper',
            eligibility: 'all',
            best,
            summary: runSetting(p, method, best, inputs),
            evaluated: 1,
            eligible: 1,
          });
        } else {
          const grid =
            task.grid === 'paper'
              ? PAPER_GRID
              : product({ momentum: preset.extended!.momentum, lr: preset.extended!.lr });
          const selections = selectSetting(p, method, grid, inputs);
          for (const eligibility of ['all', 'any'] as const) {
            const s = selections[eligibility];
            cells.push({
              distribution,
              kappa,
              method,
              grid: task.grid,
              eligibility,
              best: s.best,
              summary: s.summary,
              evaluated: grid.length,
              eligible: s.eligible,
            });
          }
        }
        hooks.onTaskDone?.(task);
      }
    }
  const slopes: PaperResult['slopes'] = [];
  for (const distribution of DISTRIBUTIONS)
    for (const method of METHODS)
      for (const grid of ['paper', 'extended'] as const)
        for (const eligibility of ['all', 'any'] as const) {
          const row = cells.filter(
            (c) =>
              c.distribution === distribution &&
              c.method === method &&
              c.grid === grid &&
              c.eligibility === eligibility,
          );
          if (row.length > 0)
            slopes.push({ distribution, method, grid, eligibility, slope: inverseRateSlope(row) });
        }

  // Our own criterion (exact expected iterations to 1e-4) restricted to the paper's grid, to
  // separate the effect of the grid from that of the protocol.
  const ours = { ...PRESETS[preset.name], kappas: preset.kappas };
  const oursCells: Cell[] = [];
  for (const distribution of DISTRIBUTIONS)
    for (const kappa of preset.kappas)
      for (const method of ['HB', 'NAG'] as const)
        oursCells.push(runTask({ distribution, kappa, method, grid: [...PAPER_GRID] }, ours, seed, 'exact'));
  const oursSlopes = slopesOf(ours, oursCells).filter((s) => s.method === 'HB' || s.method === 'NAG');

  return {
    preset,
    seed,
    wStar,
    cells,
    slopes,
    oursOnPaperGrid: { cells: oursCells, slopes: oursSlopes },
    seconds: (performance.now() - t0) / 1000,
  };
}
