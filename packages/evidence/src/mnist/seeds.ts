import type { RunResult } from './train.js';

/** Mean, sample standard deviation (n - 1; 0 for one value), minimum and maximum. */
export interface Spread {
  n: number;
  mean: number;
  std: number;
  min: number;
  max: number;
}

export function spread(values: readonly number[]): Spread {
  const n = values.length;
  if (n === 0) throw new RangeError('spread of no values');
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const ss = values.reduce((a, b) => a + (b - mean) ** 2, 0);
  return {
    n,
    mean,
    std: n > 1 ? Math.sqrt(ss / (n - 1)) : 0,
    min: Math.min(...values),
    max: Math.max(...values),
  };
}

export interface SeedAggregate {
  seeds: number[];
  /** Per epoch (0 = initial), over the runs that reached it. */
  epochs: { epoch: number; trainLoss: Spread; validationAccuracy: Spread }[];
  /** Final test accuracy over the runs that have one (every seed of a chosen setting). */
  testAccuracy: Spread | undefined;
  /** Runs that diverged (left out of the per-epoch spreads after their last epoch). */
  diverged: number;
}

/**
 * Aggregates the runs of one setting over seeds. The runs must share the setting (optimizer and
 * hyperparameters) and have distinct seeds, or the spread would mix settings or count a run twice.
 */
export function aggregateSeeds(runs: readonly RunResult[]): SeedAggregate {
  if (runs.length === 0) throw new RangeError('no runs to aggregate');
  const key = (r: RunResult) => JSON.stringify(r.spec);
  if (runs.some((r) => key(r) !== key(runs[0]!)))
    throw new RangeError(`runs of different settings: ${[...new Set(runs.map(key))].join(' vs ')}`);
  const seeds = runs.map((r) => r.seed);
  if (new Set(seeds).size !== seeds.length) throw new RangeError(`a seed appears twice: ${seeds.join(', ')}`);
  const longest = Math.max(...runs.map((r) => r.epochs.length));
  const epochs: SeedAggregate['epochs'] = [];
  for (let i = 0; i < longest; i++) {
    const at = runs.map((r) => r.epochs[i]).filter((e) => e !== undefined);
    epochs.push({
      epoch: at[0]!.epoch,
      trainLoss: spread(at.map((e) => e.trainLoss)),
      validationAccuracy: spread(at.map((e) => e.validationAccuracy)),
    });
  }
  const tests = runs.map((r) => r.testAccuracy).filter((t): t is number => t !== undefined);
  return {
    seeds,
    epochs,
    testAccuracy: tests.length > 0 ? spread(tests) : undefined,
    diverged: runs.filter((r) => r.diverged).length,
  };
}
