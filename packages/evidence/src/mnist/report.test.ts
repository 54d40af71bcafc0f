import { describe, expect, it } from 'vitest';
import { analyzeMapping, type MappingPreset } from './mapping.js';
import type { OptimizerName } from './optimizers.js';
import { bestRun, convMappingSection, convRuleVerdict, divergence, withoutUnchosenTests } from './report.js';
import { sweepRun } from './test-support.js';
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

describe("the MLP's momentum rule checked on the conv net's sweep", () => {
  const m: MappingPreset = {
    trainCount: 10_000,
    epochs: 1,
    momentumLrs: [0.03, 0.1, 0.3],
    accsgd: { lrs: [0.1, 0.3, 1], kappas: [1000], xis: [1, 10] },
  };
  const sweep = (at03: number) => {
    const runs = [
      sweepRun({ name: 'Momentum', lr: 0.03 }, 0.9),
      sweepRun({ name: 'Momentum', lr: 0.1 }, 0.94),
      sweepRun({ name: 'Momentum', lr: 0.3 }, 0.92),
      sweepRun({ name: 'AccSGD', lr: 0.1, kappa: 1000, xi: 10 }, 0.92),
      sweepRun({ name: 'AccSGD', lr: 0.3, kappa: 1000, xi: 10 }, at03),
      sweepRun({ name: 'AccSGD', lr: 1, kappa: 1000, xi: 10 }, 0.1, 'step 9: loss NaN'),
      sweepRun({ name: 'AccSGD', lr: 0.3, kappa: 1000, xi: 1 }, 0.9),
      sweepRun({ name: 'AccSGD', lr: 1, kappa: 1000, xi: 1 }, 0.945),
    ];
    return { runs, analysis: analyzeMapping(runs), seconds: 12 };
  };

  it('holds when the rule lands within half a point of the best AccSGD run', () => {
    // Heavy ball's best 0.1 -> fromMomentum's lr 0.300 at kappa 1000, xi 10: the run at 0.3 (94.2%).
    const v = convRuleVerdict(sweep(0.942), m);
    expect(v).toContain("maps the conv net's best heavy-ball lr 0.1 to AccSGD lr 0.300");
    expect(v).toContain('reached 94.20% on the validation split, against 94.50% (kappa 1000, xi 1, lr 1)');
    expect(v).toContain('**It holds**');
    expect(v).toContain("Caution: AccSGD's best lr 1 is an edge of its grid");
    expect(v).toContain('One seed, 1 epoch(s) and grids about 3× apart');
  });

  it('does not hold when it lands further below, and warns of a best lr at the grid edge', () => {
    const v = convRuleVerdict(sweep(0.93), m);
    expect(v).toContain('**It does not hold**');
    expect(v).toContain('more than 0.5 points below the best AccSGD setting');
    // Heavy ball's best at the top of its grid is flagged too.
    const top = sweep(0.93);
    top.runs[2] = sweepRun({ name: 'Momentum', lr: 0.3 }, 0.95);
    expect(convRuleVerdict({ ...top, analysis: analyzeMapping(top.runs) }, m)).toContain(
      "heavy ball's best lr 0.3 is an edge of its grid; AccSGD's best lr 1 is an edge of its grid",
    );
  });

  it('tables every run, the diverged ones marked', () => {
    const md = convMappingSection(sweep(0.942), m, 1).join('\n');
    expect(md).toContain('| AccSGD kappa 1000, xi 10 | 92.00% | 94.20% | diverged |');
    expect(md).toContain('| AccSGD kappa 1000, xi 1 | - | 90.00% | 94.50% |');
    expect(md).toContain('Heavy ball: lr 0.03 90.00%, lr 0.1 94.00%, lr 0.3 92.00%.');
    expect(md).toContain('| 1000 | 1 | 1 (grid edge) | 94.50% (best) | 10.0 | 0.824 |');
    expect(md).not.toContain('Every AccSGD run at'); // lr 1 trained at xi 1
  });

  it('says when every AccSGD run from some lr up failed, though its steady-state step was short', () => {
    const s = sweep(0.942);
    s.runs[7] = sweepRun({ name: 'AccSGD', lr: 1, kappa: 1000, xi: 1 }, 0.1119);
    const md = convMappingSection({ ...s, analysis: analyzeMapping(s.runs) }, m, 1).join('\n');
    expect(md).toContain(
      "Every AccSGD run at lr ≥ 1 failed (diverged or stayed below 20.00%, chance being about 10%), whatever kappa and xi, although at xi = 1 and lr 1 the steady-state step (0.82) is shorter than heavy ball's at its best lr (1.0).",
    );
  });
});
