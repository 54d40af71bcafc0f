import { describe, expect, it } from 'vitest';
import { AccSGDConfigError } from './errors.js';
import { adviseHyperparams, HYPERPARAM_DEFAULTS, resolveHyperparams } from './hyperparams.js';

describe('resolveHyperparams', () => {
  it('fills the reference defaults', () => {
    expect(resolveHyperparams({ lr: 0.1 })).toEqual({
      lr: 0.1,
      kappa: 1000,
      xi: 10,
      smallConst: 0.7,
      weightDecay: 0,
    });
    expect(HYPERPARAM_DEFAULTS).toEqual({ kappa: 1000, xi: 10, smallConst: 0.7, weightDecay: 0 });
  });

  it('inherits from a parent before the defaults', () => {
    expect(resolveHyperparams({ xi: 3 }, { lr: 0.2, kappa: 50 })).toEqual({
      lr: 0.2,
      kappa: 50,
      xi: 3,
      smallConst: 0.7,
      weightDecay: 0,
    });
  });

  it('accepts the edges of every range', () => {
    expect(() => resolveHyperparams({ lr: 0, smallConst: 1, kappa: 1, xi: 1 })).not.toThrow();
  });
});

describe('adviseHyperparams', () => {
  it('is silent inside the advised ranges', () => {
    expect(adviseHyperparams(resolveHyperparams({ lr: 0.1 }))).toEqual([]);
  });

  it("flags xi above sqrt(kappa) and small kappa, with the authors' reasons", () => {
    const advice = adviseHyperparams(resolveHyperparams({ lr: 0.1, kappa: 50, xi: 20 }));
    expect(advice.map((a) => a.field)).toEqual(['xi', 'kappa']);
    expect(advice[0]!.message).toContain('sqrt(kappa) = 7.071');
    expect(advice[0]!.message).toContain('oscillation or divergence');
  });

  it('advises raising xi for large batches', () => {
    const advice = adviseHyperparams(resolveHyperparams({ lr: 0.1, kappa: 1e4, xi: 10 }), {
      batchSize: 2048,
    });
    expect(advice).toHaveLength(1);
    expect(advice[0]!.message).toContain('raise xi by sqrt(k)');
  });

  it('flags xi below 1', () => {
    expect(adviseHyperparams(resolveHyperparams({ lr: 0.1, xi: 0.5 }))[0]!.message).toContain('below 1');
  });
});

it('errors carry field, value and expected range', () => {
  try {
    resolveHyperparams({ lr: 0.1, smallConst: 2 });
    expect.unreachable();
  } catch (error) {
    expect(error).toBeInstanceOf(AccSGDConfigError);
    expect(error).toMatchObject({ field: 'smallConst', value: 2, expected: 'a finite number in (0, 1]' });
  }
});
