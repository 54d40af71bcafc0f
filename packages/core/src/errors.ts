/**
 * Every failure the library reports on bad input is one of these classes, so callers can
 * tell "you passed something wrong" apart from bugs, and tests can assert the kind.
 */
export class AccSGDError extends Error {
  override readonly name: string = 'AccSGDError';
}

/** A hyperparameter is missing, non-finite, out of range, or unknown. */
export class AccSGDConfigError extends AccSGDError {
  override readonly name = 'AccSGDConfigError';
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly expected: string,
    detail?: string,
  ) {
    super(`${field} ${detail ?? `must be ${expected}`}; got ${formatValue(value)}`);
  }
}

/** A gradient (or the list of gradients) does not fit the parameters it is meant for. */
export class AccSGDGradientError extends AccSGDError {
  override readonly name = 'AccSGDGradientError';
  constructor(
    /** Name of the parameter whose gradient is wrong, or undefined when the whole list is wrong. */
    readonly param: string | undefined,
    message: string,
  ) {
    super(param === undefined ? message : `gradient for parameter "${param}": ${message}`);
  }
}

/** A state file is malformed, or does not match the optimizer it is imported into. */
export class AccSGDStateError extends AccSGDError {
  override readonly name = 'AccSGDStateError';
}

export function formatValue(value: unknown): string {
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : String(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  if (Array.isArray(value)) return `[${value.map(formatValue).join(', ')}]`;
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${(value as Float32Array).length})`;
  return typeof value;
}
