import { describe, expect, it } from 'vitest';
import { fromMomentum, MOMENTUM_STEP_RATIO } from './advice.js';
import { AccSGDConfigError } from './errors.js';
import { AccSGD } from './optimizer.js';

describe('fromMomentum', () => {
  it('matches steady-state steps: momentum(0.03, 0.9) moves 0.3 per unit gradient', () => {
    const start = fromMomentum({ lr: 0.03, momentum: 0.9 });
    // AccSGD at xi = 10, smallConst = 0.7 moves lr * 0.7 * 11 / 1.7 = 4.5294 lr per unit gradient.
    expect(start.lr).toBeCloseTo((MOMENTUM_STEP_RATIO * 0.3 * 1.7) / 7.7, 12);
    expect(start).toMatchObject({ kappa: 1000, xi: 10, smallConst: 0.7, empirical: true });
    expect(start.note).toMatch(/^Empirical starting point/);
    // Measured on two models; on the conv net 3x above the rule's lr failed, so it says where to search first.
    expect(start.note).toContain('matched on a small MNIST conv net');
    expect(start.note).toContain('lower first');
  });

  it('passes as hyperparameters as it is, and refuses keys it does not know', () => {
    const p = new Float32Array([1, 2]);
    const opt = new AccSGD([p], fromMomentum({ lr: 0.1, momentum: 0.9 }));
    expect(opt.paramGroups[0]!.hyperparams).toMatchObject({ kappa: 1000, xi: 10, smallConst: 0.7 });
    expect(Object.keys(fromMomentum({ lr: 0.1, momentum: 0.9 }))).toEqual([
      'lr',
      'kappa',
      'xi',
      'smallConst',
    ]);
    expect(() => fromMomentum({ lr: 0.1, momentum: 0.9, nesterov: true } as never)).toThrow(
      "nesterov is not a key of fromMomentum's setting (expected lr, momentum, kappa, xi, smallConst); got true",
    );
  });

  it('reproduces the measurement it comes from: momentum(0.1, 0.9) -> AccSGD lr 0.3 at kappa 1000, xi 10', () => {
    // The MNIST sweep's best settings: heavy ball lr 0.1; AccSGD lr 0.3 (1.36 = 0.3 * 7.7 / 1.7 / 1.0).
    expect(fromMomentum({ lr: 0.1, momentum: 0.9 }).lr).toBeCloseTo(0.3, 2);
  });

  it("the returned lr gives AccSGD the ratio times momentum's step on a constant gradient", () => {
    const start = fromMomentum({ lr: 0.01, momentum: 0.9, kappa: 100 });
    const p = new Float64Array([0]);
    const opt = new AccSGD([p], {
      lr: start.lr,
      kappa: start.kappa,
      xi: start.xi,
      smallConst: start.smallConst,
    });
    let before = 0;
    for (let i = 0; i < 3000; i++) {
      before = p[0]!;
      opt.step([new Float64Array([1])]);
    }
    expect(before - p[0]!).toBeCloseTo(MOMENTUM_STEP_RATIO * (0.01 / (1 - 0.9)), 9);
  });

  it('momentum 0 is plain SGD (step lr); a larger xi asks for a smaller lr', () => {
    expect(fromMomentum({ lr: 0.1, momentum: 0 }).lr).toBeCloseTo(
      (MOMENTUM_STEP_RATIO * 0.1 * 1.7) / 7.7,
      12,
    );
    const a = fromMomentum({ lr: 0.1, momentum: 0.9, xi: 10 }).lr;
    const b = fromMomentum({ lr: 0.1, momentum: 0.9, xi: 21 }).lr;
    expect(a / b).toBeCloseTo(2, 12); // (1 + 21) / (1 + 10)
  });

  it('says what was wrong and what was expected', () => {
    expect(() => fromMomentum({ lr: 0.1, momentum: 1 })).toThrow(AccSGDConfigError);
    expect(() => fromMomentum({ lr: 0.1, momentum: 1 })).toThrow(/momentum must be in \[0, 1\).*got 1/);
    expect(() => fromMomentum({ lr: -1, momentum: 0.9 })).toThrow(/lr must be a finite number > 0/);
    expect(() => fromMomentum({ lr: 0.1, momentum: 0.9, smallConst: 2 })).toThrow(
      /smallConst must be a finite number in \(0, 1\]/,
    );
  });
});
