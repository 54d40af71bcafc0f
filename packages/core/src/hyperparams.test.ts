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

describe('kappa, xi and smallConst that do not fit together (beta > 1)', () => {
  const thrown = (attempt: () => unknown): AccSGDConfigError => {
    try {
      attempt();
    } catch (error) {
      expect(error).toBeInstanceOf(AccSGDConfigError);
      return error as AccSGDConfigError;
    }
    throw new Error('expected an AccSGDConfigError');
  };

  it('names kappa when the caller set kappa and xi is the default, with numbers rounded for people', () => {
    // beta = 0.7^2 * 10 / 0.5 = 9.8 (9.799999999999999 in float64); kappa must be >= 0.49 * 10 = 4.9.
    const error = thrown(() => resolveHyperparams({ lr: 0.1, kappa: 0.5 }));
    expect(error.field).toBe('kappa');
    expect(error.value).toBe(0.5);
    expect(error.expected).toBe('>= smallConst^2 * xi = 4.9');
    expect(error.message).toBe(
      'kappa is out of range for xi = 10 (the default) and smallConst = 0.7 (the default): beta = smallConst^2 * xi / kappa = 9.8 must be in (0, 1], so kappa must be >= smallConst^2 * xi = 4.9; got 0.5',
    );
    expect(error.message).not.toContain('9.799999999999999');
  });

  it('names xi when the caller set xi, and smallConst when only smallConst was set', () => {
    const xi = thrown(() => resolveHyperparams({ lr: 0.1, kappa: 10, xi: 100 }));
    expect(xi).toMatchObject({ field: 'xi', value: 100, expected: '<= kappa / smallConst^2 = 20.4082' });
    // defaults kappa = 1000, xi = 10: smallConst must be <= sqrt(1000 / 10) = 10, so 1 fits; a
    // group whose inherited xi is large makes smallConst the field set here.
    const small = thrown(() => resolveHyperparams({ smallConst: 1 }, { lr: 0.1, kappa: 4, xi: 9 }));
    expect(small).toMatchObject({
      field: 'smallConst',
      value: 1,
      expected: '<= sqrt(kappa / xi) = 0.666667',
    });
  });
});
