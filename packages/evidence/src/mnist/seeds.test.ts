import { describe, expect, it } from 'vitest';
import { aggregateSeeds, spread } from './seeds.js';
import type { RunResult } from './train.js';

function run(seed: number, losses: number[], accuracies: number[], test?: number, lr = 0.1): RunResult {
  return {
    spec: { name: 'AccSGD', lr },
    backend: 'wasm',
    seed,
    seconds: 1,
    epochs: losses.map((trainLoss, epoch) => ({
      epoch,
      trainLoss,
      validationAccuracy: accuracies[epoch]!,
      trainSeconds: 1,
      evalSeconds: 0,
    })),
    ...(test !== undefined ? { testAccuracy: test } : {}),
  };
}

describe('seed aggregation', () => {
  it('spread: mean, sample standard deviation, min and max', () => {
    // 0.96, 0.97, 0.98: mean 0.97, deviations ±0.01, std sqrt((1e-4 + 0 + 1e-4) / 2) = 0.01.
    const s = spread([0.96, 0.97, 0.98]);
    expect(s.n).toBe(3);
    expect(s.mean).toBeCloseTo(0.97, 14);
    expect(s.std).toBeCloseTo(0.01, 14);
    expect(s.min).toBe(0.96);
    expect(s.max).toBe(0.98);
    expect(spread([5]).std).toBe(0);
  });

  it('aggregates per epoch and the final test accuracy across seeds', () => {
    const a = aggregateSeeds([
      run(1, [2.3, 0.5, 0.3], [0.1, 0.9, 0.95], 0.951),
      run(2, [2.3, 0.7, 0.4], [0.1, 0.88, 0.93], 0.931),
      run(3, [2.3, 0.6, 0.2], [0.1, 0.92, 0.97], 0.971),
    ]);
    expect(a.seeds).toEqual([1, 2, 3]);
    expect(a.epochs.map((e) => e.epoch)).toEqual([0, 1, 2]);
    expect(a.epochs[1]!.trainLoss.mean).toBeCloseTo(0.6, 14);
    expect(a.epochs[1]!.trainLoss.std).toBeCloseTo(0.1, 14);
    expect(a.epochs[2]!.validationAccuracy).toMatchObject({ min: 0.93, max: 0.97 });
    expect(a.epochs[2]!.validationAccuracy.mean).toBeCloseTo(0.95, 14);
    expect(a.testAccuracy!.mean).toBeCloseTo(0.951, 14);
    expect(a.testAccuracy!.std).toBeCloseTo(0.02, 14);
    expect(a.diverged).toBe(0);
  });

  it('a diverged seed counts as diverged and leaves the later epochs to the others', () => {
    const d = { ...run(2, [2.3, 0.9], [0.1, 0.5]), diverged: 'step 150: loss NaN' };
    const a = aggregateSeeds([run(1, [2.3, 0.5, 0.3], [0.1, 0.9, 0.95], 0.95), d]);
    expect(a.diverged).toBe(1);
    expect(a.epochs[1]!.trainLoss.n).toBe(2);
    expect(a.epochs[2]!.trainLoss.n).toBe(1);
    expect(a.testAccuracy!.n).toBe(1);
  });

  it('refuses to mix settings or count a seed twice', () => {
    expect(() => aggregateSeeds([run(1, [1], [0.1]), run(2, [1], [0.1], undefined, 0.3)])).toThrow(
      /different settings/,
    );
    expect(() => aggregateSeeds([run(1, [1], [0.1]), run(1, [1], [0.1])])).toThrow(
      /seed appears twice: 1, 1/,
    );
  });
});
