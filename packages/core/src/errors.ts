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

/** The message of something thrown by user code (a getter, a Proxy trap), bounded and never throwing. */
export function describeError(error: unknown): string {
  try {
    const text = error instanceof Error ? String(error.message) : formatValue(error);
    return text.length > FORMAT_MAX_CHARS ? `${text.slice(0, FORMAT_MAX_CHARS)}…` : text;
  } catch {
    return 'an unreadable error';
  }
}

/** Bounds on how much of a value an error message shows (hostile input may be huge or deeply nested). */
const FORMAT_MAX_DEPTH = 3;
const FORMAT_MAX_ITEMS = 8;
const FORMAT_MAX_CHARS = 200;
const FORMAT_MAX_STRING = 120;

/**
 * A short, bounded description of any value for an error message: at most 3 levels of nested
 * arrays, 8 items per array and about 200 characters, so no input (an array nested 4,000 deep, a
 * megabyte string, a Proxy whose traps throw) can make formatting the message itself fail.
 * Never calls user code other than array-element reads, and never throws.
 */
export function formatValue(value: unknown): string {
  let text: string;
  try {
    text = describeValue(value, 0);
  } catch {
    text = 'an unreadable value';
  }
  return text.length > FORMAT_MAX_CHARS ? `${text.slice(0, FORMAT_MAX_CHARS)}…` : text;
}

const typedArrayTag = Object.getOwnPropertyDescriptor(
  Object.getPrototypeOf(Uint8Array.prototype),
  Symbol.toStringTag,
)!.get!;

function describeValue(value: unknown, depth: number): string {
  switch (typeof value) {
    case 'number':
      return Object.is(value, -0) ? '-0' : String(value);
    case 'string':
      return value.length > FORMAT_MAX_STRING
        ? `${JSON.stringify(value.slice(0, FORMAT_MAX_STRING))}…`
        : JSON.stringify(value);
    case 'undefined':
      return 'undefined';
    case 'boolean':
      return String(value);
    case 'bigint':
      return value.toString().length > 40 ? 'a bigint' : `${value}n`;
    case 'symbol':
    case 'function':
      return typeof value;
  }
  if (value === null) return 'null';
  const tag = typedArrayTag.call(value) as string | undefined;
  if (tag !== undefined) return `${tag}(${(value as Uint8Array).length})`;
  if (ArrayBuffer.isView(value)) return `DataView(${(value as DataView).byteLength})`;
  if (Array.isArray(value)) {
    if (depth >= FORMAT_MAX_DEPTH) return '[…]';
    const length = (value as unknown[]).length;
    const items: string[] = [];
    for (let i = 0; i < Math.min(length, FORMAT_MAX_ITEMS); i++) {
      items.push(describeValue((value as unknown[])[i], depth + 1));
    }
    if (length > FORMAT_MAX_ITEMS) items.push(`… ${length - FORMAT_MAX_ITEMS} more`);
    return `[${items.join(', ')}]`;
  }
  return typeof value;
}
