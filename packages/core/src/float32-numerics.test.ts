import { describe, expect, it } from 'vitest';
import { assertFloat32Multipliers, float32MultiplierProblem, fusedCoefficients } from './coefficients.js';
import { accuracyBound, accuracyFloor, FLOAT32_MIN_NORMAL, relativeError } from './contract.js';
import { AccSGDConfigError, AccSGDStateError } from './errors.js';
import { float32Multipliers, fusedUpdate } from './fused-update.js';
import { type HyperparamsInput, resolveHyperparams, validateHyperparams } from './hyperparams.js';
import { AccSGD } from './optimizer.js';
import { encodeState } from './state-file.js';

/** The AccSGDConfigError thrown by `attempt`, or a failure when there is none. */
function configError(attempt: () => unknown): AccSGDConfigError {
  try {
    attempt();
  } catch (error) {
    expect(error).toBeInstanceOf(AccSGDConfigError);
    return error as AccSGDConfigError;
  }
  throw new Error('expected an AccSGDConfigError');
}

const float32 = { precision: 'float32' } as const;

describe('float32 multipliers (SPEC §1)', () => {
  it('lr = 1e38 is valid in float64, but bufFromGrad overflows float32 and a zero gradient gives NaN', () => {
    const h = resolveHyperparams({ lr: 1e38 });
    expect(validateHyperparams(h)).toBe(h);
    // Why it must be rejected: the rounded multiplier is -Infinity, and -Infinity * 0 is NaN.
    expect(float32Multipliers(fusedCoefficients(h), false)[2]).toBe(Number.NEGATIVE_INFINITY);
    const p = new Float32Array([1, 2]);
    fusedUpdate(p, new Float32Array(2), new Float32Array([1, 2]), fusedCoefficients(h), false);
    expect(Number.isNaN(p[0])).toBe(true);

    const error = configError(() => validateHyperparams(h, float32));
    expect(error.field).toBe('lr');
    expect(error.value).toBe(1e38);
    expect(error.message).toMatch(
      /^lr is out of range for float32: the multiplier bufFromGrad = -beta \* largeLr = -7\.0+\d*e\+38 overflows float32/,
    );
    expect(float32MultiplierProblem(h)).toMatchObject({ field: 'lr', multiplier: 'bufFromGrad' });
  });

  it('lr = 1e-46 rounds paramFromGrad to 0 in float32 (the gradient would be ignored): field lr', () => {
    const h = resolveHyperparams({ lr: 1e-46 });
    expect(validateHyperparams(h)).toBe(h);
    expect(Math.fround(fusedCoefficients(h).paramFromGrad)).toBe(-0);
    const error = configError(() => validateHyperparams(h, float32));
    expect(error.field).toBe('lr');
    expect(error.value).toBe(1e-46);
    expect(error.message).toContain('rounds to 0 in float32');
    // bufFromGrad = -7e-46 is checked first and rounds to 0 as well.
    expect(float32MultiplierProblem(h)).toMatchObject({ field: 'lr', multiplier: 'bufFromGrad' });
  });

  it('weightDecay * largeLr overflowing float32 names weightDecay', () => {
    for (const [input, multiplier] of [
      [{ lr: 0.1, weightDecay: 1e39 }, 'bufFromParam'],
      [{ lr: 1e30, weightDecay: 1e10 }, 'paramFromParam'],
    ] as const) {
      const h = resolveHyperparams(input);
      expect(validateHyperparams(h)).toBe(h);
      const error = configError(() => validateHyperparams(h, float32));
      expect(error.field).toBe('weightDecay');
      expect(error.value).toBe(input.weightDecay);
      expect(float32MultiplierProblem(h)?.multiplier).toBe(multiplier);
    }
  });

  it('names xi when xi drives bufFromGrad = -smallConst * xi * lr out of range, smallConst when zeta does', () => {
    expect(
      configError(() => assertFloat32Multipliers(resolveHyperparams({ lr: 1, kappa: 1e40, xi: 1e39 }))).field,
    ).toBe('xi');
    // smallConst = 1e-40 with xi = 1e70, kappa = 1: beta = 1e-10, zeta = 1e-30 < lr; zeta * lr = 1e-50.
    const tinyZeta = resolveHyperparams({ lr: 1e-20, kappa: 1, xi: 1e70, smallConst: 1e-40 });
    expect(validateHyperparams(tinyZeta)).toBe(tinyZeta);
    expect(float32MultiplierProblem(tinyZeta)).toMatchObject({
      field: 'smallConst',
      multiplier: 'paramFromGrad',
    });
  });

  it('accepts every ordinary setting, lr = 0, and subnormal but non-zero multipliers (lr = 1e-40)', () => {
    for (const input of [
      { lr: 0.1 },
      { lr: 0 },
      { lr: 1e-40 },
      { lr: 0.01, kappa: 1e7, xi: 1 },
      { lr: 0.1, kappa: 1, xi: 1, smallConst: 1 },
      { lr: 1e30, weightDecay: 1e-3 },
    ] satisfies HyperparamsInput[]) {
      const h = resolveHyperparams(input);
      expect(float32MultiplierProblem(h), JSON.stringify(input)).toBeNull();
      expect(validateHyperparams(h, float32)).toBe(h);
    }
  });
});

describe('AccSGD checks float32 multipliers for groups that hold Float32Array parameters', () => {
  it('rejects lr = 1e38 for float32 parameters and accepts it for float64 ones', () => {
    expect(configError(() => new AccSGD([new Float32Array(2)], { lr: 1e38 })).field).toBe('lr');
    expect(configError(() => new AccSGD([new Float32Array(2)], { lr: 1e-46 })).field).toBe('lr');
    expect(
      configError(() => new AccSGD([{ params: [new Float32Array(2)], weightDecay: 1e39 }], { lr: 0.1 }))
        .field,
    ).toBe('weightDecay');
    expect(() => new AccSGD([new Float64Array(2)], { lr: 1e38 })).not.toThrow();
  });

  it('setLearningRate rejects a float32-unrepresentable lr and changes nothing', () => {
    const opt = new AccSGD([{ params: [new Float32Array(2)] }, { params: [new Float64Array(2)] }], {
      lr: 0.1,
    });
    expect(configError(() => opt.setLearningRate(1e38)).field).toBe('lr');
    expect(configError(() => opt.setLearningRate(1e-46, 0)).field).toBe('lr');
    expect(opt.paramGroups.map((g) => g.hyperparams.lr)).toEqual([0.1, 0.1]);
    opt.setLearningRate(1e38, 1); // the float64 group may take it
    expect(opt.paramGroups.map((g) => g.hyperparams.lr)).toEqual([0.1, 1e38]);
  });

  it('importState rejects such hyperparameters with AccSGDStateError naming the field, changing nothing', () => {
    const opt = new AccSGD([new Float32Array([1, 2])], { lr: 0.1 });
    opt.step([new Float32Array([0.5, 0.5])]);
    const before = opt.exportState();
    const bad = encodeState({
      groups: [{ hyperparams: resolveHyperparams({ lr: 1e38 }), params: ['0'], step: 4 }],
      buffers: new Map(),
    });
    expect(() => opt.importState(bad)).toThrow(AccSGDStateError);
    expect(() => opt.importState(bad)).toThrow(
      /^group 0: lr is out of range for float32: the multiplier bufFromGrad/,
    );
    expect(opt.exportState()).toEqual(before);
    const f64 = new AccSGD([new Float64Array([1, 2])], { lr: 0.1 });
    f64.importState(bad);
    expect(f64.paramGroups[0]!.hyperparams.lr).toBe(1e38);
  });
});

describe('the accuracy floor (SPEC §3)', () => {
  it('is 16 (1 + S) minNormal / u, S the largest sum of |multipliers| so far', () => {
    const c = fusedCoefficients(resolveHyperparams({ lr: 0.1 }));
    const s = Object.values(c).reduce((a, m) => a + Math.abs(m), 0);
    expect(s).toBeCloseTo(2.7993, 4);
    expect(accuracyFloor('float32', [{ lr: 0.1 }])).toBe((16 * (1 + s) * FLOAT32_MIN_NORMAL) / 2 ** -24);
    expect(accuracyFloor('float32', [{ lr: 0.1 }])).toBeCloseTo(1.1988e-29, 32);
    expect(accuracyFloor('float32', [{ lr: 0 }, { lr: 0.1 }, { lr: 0 }])).toBe(
      accuracyFloor('float32', [{ lr: 0.1 }]),
    );
    expect(accuracyFloor('float64', [{ lr: 0.1 }])).toBe((16 * (1 + s) * 2 ** -1022) / 2 ** -53);
  });

  it('an all-subnormal tensor is judged on the floor, a normal one relative to its largest value', () => {
    const truth = [1e-40, -3e-40];
    const flushed = [0, 0];
    expect(relativeError(flushed, truth)).toBe(1); // the 1.x metric: every flush-to-zero fails
    const floor = accuracyFloor('float32', [{ lr: 0.1 }]);
    expect(relativeError(flushed, truth, floor)).toBe(3e-40 / floor);
    expect(relativeError(flushed, truth, floor)).toBeLessThan(accuracyBound('float32', 1) / 1e4);
    expect(relativeError([1.5, 0], [1, 0], floor)).toBe(0.5);
    expect(relativeError([0, 0], [0, 0], floor)).toBe(0);
    expect(relativeError([1e-20, 0], [0, 0], floor)).toBe(1e-20 / floor);
    expect(relativeError([Number.NaN], [1e-40], floor)).toBe(Number.POSITIVE_INFINITY);
  });
});
