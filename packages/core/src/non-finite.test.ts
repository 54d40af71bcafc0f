import { describe, expect, it } from 'vitest';
import { AccSGDConfigError, AccSGDGradientError } from './errors.js';
import { nonFinitePolicy, rejectNonFinite } from './non-finite.js';

describe('nonFinitePolicy', () => {
  it("defaults to 'error' and passes the three policies through", () => {
    expect(nonFinitePolicy(undefined)).toBe('error');
    expect(['error', 'skip-step', 'allow'].map(nonFinitePolicy)).toEqual(['error', 'skip-step', 'allow']);
  });

  it('rejects anything else with AccSGDConfigError naming the choices', () => {
    for (const bad of ['ignore', 'Error', null, 0, true]) {
      expect(() => nonFinitePolicy(bad)).toThrow(AccSGDConfigError);
    }
    expect(() => nonFinitePolicy('ignore')).toThrow(
      'nonFinite must be "error", "skip-step" or "allow"; got "ignore"',
    );
  });
});

describe('rejectNonFinite', () => {
  const message =
    'gradient for parameter "w": element 3 is NaN (non-finite gradients are rejected; see the nonFinite option)';

  it("throws AccSGDGradientError naming the parameter and element under 'error'", () => {
    let thrown: unknown;
    try {
      rejectNonFinite('error', 'w', 3, 'NaN');
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(AccSGDGradientError);
    expect(thrown).toMatchObject({ param: 'w', message });
  });

  it("returns the skipped step with the same words under 'skip-step'", () => {
    expect(rejectNonFinite('skip-step', 'w', 3, 'NaN')).toEqual({ applied: false, reason: message });
  });
});
