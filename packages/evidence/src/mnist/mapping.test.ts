import { AccSGD } from '@accsgd/core';
import { describe, expect, it } from 'vitest';
import { accsgdStep, analyzeMapping, checkRule, failedFrom, mappingSpecs, momentumStep } from './mapping.js';
import { sweepRun } from './test-support.js';

describe('momentum to AccSGD mapping', () => {
  it("steady-state steps: heavy ball lr/(1-m); AccSGD's matches @accsgd/core on a constant gradient", () => {
    expect(momentumStep(0.03)).toBeCloseTo(0.3, 14);
    // lr 0.1, xi 10, smallConst 0.7: 0.1 * 0.7 * 11 / 1.7 = 0.45294...
    expect(accsgdStep(0.1, 10)).toBeCloseTo(0.77 / 1.7, 14);
    const p = new Float64Array([0]);
    const opt = new AccSGD([p], { lr: 0.1, kappa: 100, xi: 10, smallConst: 0.7 });
    let before = 0;
    for (let i = 0; i < 5000; i++) {
      before = p[0]!;
      opt.step([new Float64Array([1])]);
    }
    expect(before - p[0]!).toBeCloseTo(accsgdStep(0.1, 10), 9);
  });

  it('skips (kappa, xi) pairs with beta > 1', () => {
    const specs = mappingSpecs({
      trainCount: 1,
      epochs: 1,
      momentumLrs: [0.01],
      accsgd: { lrs: [0.1, 1], kappas: [10, 1000], xis: [1, 30] },
    });
    // kappa 10 with xi 30: beta = 0.49 * 30 / 10 = 1.47 > 1, left out.
    expect(specs.filter((s) => s.name === 'AccSGD')).toHaveLength(6);
    expect(specs.some((s) => s.kappa === 10 && s.xi === 30)).toBe(false);
  });

  it('finds the best momentum lr and, per (kappa, xi), the best AccSGD lr with its ratios', () => {
    const runs = [
      sweepRun({ name: 'Momentum', lr: 0.01 }, 0.95),
      sweepRun({ name: 'Momentum', lr: 0.03 }, 0.97),
      sweepRun({ name: 'AccSGD', lr: 0.1, kappa: 1000, xi: 10 }, 0.96),
      sweepRun({ name: 'AccSGD', lr: 0.3, kappa: 1000, xi: 10 }, 0.975),
      sweepRun({ name: 'AccSGD', lr: 0.3, kappa: 100, xi: 1 }, 0.9),
      sweepRun({ name: 'AccSGD', lr: 1, kappa: 100, xi: 1 }, 0.974),
    ];
    const a = analyzeMapping(runs, 0.002);
    expect(a.momentum).toEqual({ lr: 0.03, validationAccuracy: 0.97 });
    expect(a.best).toMatchObject({ kappa: 1000, xi: 10, bestLr: 0.3, validationAccuracy: 0.975 });
    expect(a.best.lrRatio).toBeCloseTo(10, 12);
    // AccSGD's step 0.3 * 0.7 * 11 / 1.7 = 1.3588 against momentum's 0.3: ratio 4.529.
    expect(a.best.stepRatio).toBeCloseTo(7.7 / 1.7, 12);
    expect(a.good.map((r) => r.xi).sort()).toEqual([1, 10]); // 0.974 is within 0.002 of 0.975
  });

  it('a diverged run is never the best', () => {
    const d = { ...sweepRun({ name: 'Momentum', lr: 1 }, 0.99), diverged: 'step 3: loss NaN' };
    const a = analyzeMapping([
      d,
      sweepRun({ name: 'Momentum', lr: 0.1 }, 0.9),
      sweepRun({ name: 'AccSGD', lr: 1 }, 0.9),
    ]);
    expect(a.momentum.lr).toBe(0.1);
  });
});

describe('checkRule', () => {
  const runs = [
    sweepRun({ name: 'Momentum', lr: 0.03 }, 0.9),
    sweepRun({ name: 'Momentum', lr: 0.1 }, 0.95),
    sweepRun({ name: 'AccSGD', lr: 0.1, kappa: 1000, xi: 10 }, 0.93),
    sweepRun({ name: 'AccSGD', lr: 0.3, kappa: 1000, xi: 10 }, 0.952),
    sweepRun({ name: 'AccSGD', lr: 1, kappa: 1000, xi: 10 }, 0.5),
    sweepRun({ name: 'AccSGD', lr: 1, kappa: 100, xi: 1 }, 0.955),
  ];

  it("lands the rule on the nearest lr of the sweep and scores it against the sweep's best", () => {
    // Heavy ball's best lr 0.1 (step 1); ratio 1.36 at xi 10: lr = 1.36 / (0.7 * 11 / 1.7) = 0.30026.
    const c = checkRule(runs, analyzeMapping(runs), 1.36);
    expect(c.suggestedLr).toBeCloseTo((1.36 * 1.7) / 7.7, 12);
    expect(c.nearestLr).toBe(0.3);
    expect(c.accuracy).toBe(0.952);
    expect(c.bestAccuracy).toBe(0.955);
    expect(c.holds).toBe(true); // 0.952 >= 0.955 - 0.005
    expect(checkRule(runs, analyzeMapping(runs), 1.36, 1000, 10, 0.002).holds).toBe(false);
  });

  it('a rule that lands on a poor lr does not hold; a log-scale tie goes to the smaller lr', () => {
    // Ratio 4.53 at xi 10 gives lr 1.0003: the diverging-ish run at lr 1.
    const far = checkRule(runs, analyzeMapping(runs), 4.53);
    expect(far.nearestLr).toBe(1);
    expect(far.holds).toBe(false);
    // sqrt(0.1 * 0.3) = 0.1732 sits halfway between 0.1 and 0.3 on a log scale.
    const mid = checkRule(runs, analyzeMapping(runs), (Math.sqrt(0.03) * 7.7) / 1.7);
    expect(mid.suggestedLr).toBeCloseTo(Math.sqrt(0.03), 12);
    expect(mid.nearestLr).toBe(0.1);
  });

  it('refuses a (kappa, xi) the sweep did not run', () => {
    expect(() => checkRule(runs, analyzeMapping(runs), 1.36, 10_000, 10)).toThrow(
      'no AccSGD run at kappa 10000, xi 10',
    );
  });
});

describe('failedFrom', () => {
  it('is the smallest lr from which every run failed, whatever kappa and xi', () => {
    const runs = [
      sweepRun({ name: 'AccSGD', lr: 0.3, kappa: 100, xi: 1 }, 0.92),
      sweepRun({ name: 'AccSGD', lr: 0.3, kappa: 100, xi: 10 }, 0.11), // failed, but 0.3 also trained
      sweepRun({ name: 'AccSGD', lr: 1, kappa: 100, xi: 1 }, 0.1119),
      { ...sweepRun({ name: 'AccSGD', lr: 1, kappa: 100, xi: 10 }, 0.5), diverged: 'step 4: loss NaN' },
      sweepRun({ name: 'AccSGD', lr: 3, kappa: 100, xi: 1 }, 0.1),
      sweepRun({ name: 'Momentum', lr: 0.1 }, 0.94),
      sweepRun({ name: 'Momentum', lr: 0.3 }, 0.2), // not below 0.2: it trained
    ];
    expect(failedFrom(runs, 'AccSGD')).toBe(1);
    expect(failedFrom(runs, 'Momentum')).toBeUndefined();
    expect(failedFrom([...runs, sweepRun({ name: 'Momentum', lr: 1 }, 0.1)], 'Momentum')).toBe(1);
  });
});
