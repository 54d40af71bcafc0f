import { AccSGDConfigError, AccSGDGradientError } from './errors.js';

/**
 * What a step does when a gradient of a parameter that has one this step holds NaN or infinity
 * (SPEC §2 rule 6): 'error' rejects the step with AccSGDGradientError; 'skip-step' leaves
 * everything unchanged and reports the step as skipped (as mixed-precision loss scalers do);
 * 'allow' applies it.
 */
export type NonFinitePolicy = 'error' | 'skip-step' | 'allow';

export const NON_FINITE_POLICIES: readonly NonFinitePolicy[] = ['error', 'skip-step', 'allow'];

/** The policy of a `nonFinite` option (default 'error'); AccSGDConfigError for anything else. */
export function nonFinitePolicy(value: unknown): NonFinitePolicy {
  if (value === undefined) return 'error';
  if (!NON_FINITE_POLICIES.includes(value as NonFinitePolicy))
    throw new AccSGDConfigError('nonFinite', value, '"error", "skip-step" or "allow"');
  return value as NonFinitePolicy;
}

/**
 * The outcome of a step that found a non-finite gradient, in the same words on every adapter:
 * under 'skip-step' returns the skipped step's result, with the message as its reason; otherwise
 * throws AccSGDGradientError naming the parameter and element (under 'allow' nothing is checked,
 * so nothing gets here). `value` is how the element reads (e.g. "NaN", "-Infinity",
 * "1e+39, which overflows float32").
 */
export function rejectNonFinite(
  policy: NonFinitePolicy,
  param: string,
  element: number,
  value: string | number,
): { applied: false; reason: string } {
  const error = new AccSGDGradientError(
    param,
    `element ${element} is ${value} (non-finite gradients are rejected; see the nonFinite option)`,
  );
  if (policy !== 'skip-step') throw error;
  return { applied: false, reason: error.message };
}
