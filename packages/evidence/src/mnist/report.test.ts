import { describe, expect, it } from 'vitest';
import type { OptimizerName } from './optimizers.js';
import { bestRun, divergence, withoutUnchosenTests } from './report.js';
import type { RunResult } from './train.js';

function run(name: OptimizerName, lr: number, finals: [number, number][], diverged?: string): RunResult {
  return {
    spec: { name, lr },
    backend: 'wasm',
    epochs: [[2.3, 0.1] as [number, number], ...finals].map(([trainLoss, validationAccuracy], epoch) => ({
      epoch,
      trainLoss,
      validationAccuracy,
      trainSeconds: 1,
      evalSeconds: 0.1,
    })),
    ...(diverged ? { diverged } : {}),
    seconds: 1,
    seed: 1,
    // A test accuracy that would pick another run: the choice must not look at it.
    testAccuracy: 1 - lr / 10,
  };
}

describe('best setting', () => {
  it('is the highest final validation accuracy among completed runs, ties to the lower loss, never the test accuracy', () => {
    const runs = [
      run('SGD', 0.1, [
        [0.5, 0.9],
        [0.3, 0.95],
      ]),
      run('SGD', 0.3, [
        [0.4, 0.93],
        [0.2, 0.97],
      ]),
      run('SGD', 1, [
        [0.3, 0.94],
        [0.1, 0.97],
      ]),
      run('Adam', 0.01, [[0.2, 0.99]], 'step 700: loss NaN'),
      run('Adam', 0.001, [
        [0.3, 0.9],
        [0.2, 0.92],
      ]),
    ];
    expect(bestRun(runs, 'SGD', 2)).toBe(2);
    expect(bestRun(runs, 'Adam', 2)).toBe(4);
    expect(() => bestRun(runs, 'Nesterov', 2)).toThrow(/no run of Nesterov/);
  });

  it('measures the largest per-epoch difference between two runs', () => {
    const a = run('AccSGD', 0.3, [
      [0.5, 0.9],
      [0.3, 0.95],
    ]);
    const b = run('AccSGD', 0.3, [
      [0.5001, 0.9],
      [0.3, 0.9502],
    ]);
    const d = divergence(a, b);
    expect(d.loss).toBeCloseTo(1e-4, 8);
    expect(d.accuracy).toBeCloseTo(2e-4, 8);
  });

  it('keeps test accuracies only for the chosen runs', () => {
    const runs = [
      run('SGD', 0.1, [[0.5, 0.9]]),
      run('SGD', 0.3, [[0.4, 0.93]]),
      run('Adam', 0.001, [[0.3, 0.9]]),
    ];
    const kept = withoutUnchosenTests(runs, [1, 2]);
    expect(kept.map((r) => r.testAccuracy)).toEqual([undefined, 0.97, 0.9999]);
    expect('testAccuracy' in kept[0]!).toBe(false);
    expect(kept[0]!.epochs).toBe(runs[0]!.epochs); // nothing else changes
  });
});
