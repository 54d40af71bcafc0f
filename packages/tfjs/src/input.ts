import { AccSGDConfigError, AccSGDError } from '@accsgd/core';

/** A learning rate as a function of the optimizer's iteration count (0 on the first step). */
export type LearningRateSchedule = (iteration: number) => number;

/**
 * Runs `read` over caller-supplied values; an untyped error from them (a getter or Proxy trap that
 * throws, a schedule that throws) becomes the typed error `fail` makes.
 */
export function readInput<T>(read: () => T, fail: (message: string) => AccSGDError): T {
  try {
    return read();
  } catch (error) {
    if (error instanceof AccSGDError) throw error;
    throw fail(describeError(error));
  }
}

/** A copy of a config's plain objects and arrays (to a bounded depth), read once. */
export function readConfig(config: unknown): unknown {
  const copy = (value: unknown, depth: number): unknown => {
    if (depth === 0 || typeof value !== 'object' || value === null) return value;
    if (Array.isArray(value)) return Array.from(value as unknown[], (x) => copy(x, depth - 1));
    if (!isPlainObject(value)) return value;
    return Object.fromEntries(Object.keys(value).map((k) => [k, copy(value[k], depth - 1)]));
  };
  return readInput(
    () => copy(config, 6),
    (message) =>
      new AccSGDConfigError(
        'config',
        '(unreadable)',
        'plain data',
        `could not be read (${message}); expected plain data { lr, ... }`,
      ),
  );
}

export function scheduledLr(lr: number | LearningRateSchedule, iteration: number, field: string): number {
  if (typeof lr !== 'function') return lr;
  const value = readInput(
    () => lr(iteration),
    (message) =>
      new AccSGDConfigError(
        field,
        lr,
        'a schedule returning a finite number >= 0',
        `schedule threw at iteration ${iteration} (${message}); expected it to return a finite number >= 0`,
      ),
  );
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new AccSGDConfigError(
      field,
      value,
      'a finite number >= 0',
      `schedule gave ${describeValue(value)} at iteration ${iteration}; expected a finite number >= 0`,
    );
  }
  return value;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** A short description of a value for error messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value !== 'object') return typeof value;
  if (Array.isArray(value)) return 'an array';
  const name = (Object.getPrototypeOf(value) as { constructor?: { name?: unknown } } | null)?.constructor
    ?.name;
  return typeof name === 'string' && name !== '' ? `a ${name}` : 'an object';
}

export function describeError(error: unknown): string {
  try {
    return error instanceof Error ? error.message : String(error);
  } catch {
    return 'an unprintable value was thrown';
  }
}

export function describeValue(value: unknown): string {
  try {
    return typeof value === 'object' && value !== null ? describe(value) : String(value);
  } catch {
    return typeof value;
  }
}
