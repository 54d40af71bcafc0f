import { AccSGDConfigError, AccSGDGradientError } from './errors.js';
import { allFinite, type FloatArray, firstNonFinite } from './fused-update.js';

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

/**
 * The first element of `values` that is not finite once stored at `precision` (a float64 value
 * stored into float32 is rounded once first, so 1e39 overflows), with how it reads in a message
 * ("NaN", "-Infinity", "1e+39, which overflows float32"); null when every element is finite.
 * Copies through the typed arrays' internal slots, calling no user code.
 */
export function firstNonFiniteAs(
  values: FloatArray,
  precision: 'float32' | 'float64',
): { element: number; value: string } | null {
  const narrowed = precision === 'float32' && values instanceof Float64Array;
  const element = firstNonFinite(narrowed ? new Float32Array(values) : values);
  if (element < 0) return null;
  const raw = values[element]!;
  return { element, value: Number.isFinite(raw) ? `${raw}, which overflows float32` : `${raw}` };
}

/**
 * Whether every element of every array is finite once stored at its precision (as
 * firstNonFiniteAs): one packed check for the common case, so that a step over many small
 * gradients does not pay a call per gradient; firstNonFiniteAs then names the element.
 */
export function allFiniteAs(
  values: readonly FloatArray[],
  precisions: readonly ('float32' | 'float64')[],
): boolean {
  return allFinite(
    values.map((v, i) =>
      precisions[i] === 'float32' && v instanceof Float64Array ? new Float32Array(v) : v,
    ),
  );
}
