import { AccSGDConfigError, AccSGDError, describeError } from './errors.js';
import { typedArrayName } from './lookup.js';
import type { AccSGDOptions } from './optimizer.js';

/** Helpers that read a caller's values once, so that getters and Proxy traps cannot lie twice. */

/** Runs `read`; anything but an AccSGDError it throws (a getter, a Proxy trap) becomes AccSGDConfigError. */
export function readInput<T>(field: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    if (error instanceof AccSGDError) throw error;
    throw new AccSGDConfigError(
      field,
      undefined,
      'a readable value',
      `could not be read (${describeError(error)})`,
    );
  }
}

/** Longest array read from the caller (a Proxy may claim any length). */
const MAX_ITEMS = 2 ** 26;

/** A copy of an array's items, or undefined when `value` is not an array. */
export function readList(value: unknown): unknown[] | undefined {
  if (!Array.isArray(value)) return undefined;
  if (!(value.length <= MAX_ITEMS)) return undefined;
  const out: unknown[] = [];
  for (let i = 0; i < value.length; i++) out.push(value[i]);
  return out;
}

/** A prototype-free copy of an object's own enumerable properties; AccSGDConfigError for a non-object. */
export function readRecord(field: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || ArrayBuffer.isView(value))
    throw new AccSGDConfigError(field, value, 'an object');
  const out: Record<string, unknown> = Object.create(null);
  for (const key of Object.keys(value)) out[key] = (value as Record<string, unknown>)[key];
  return out;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** What a value is, for a message: "Array", "Map", "Int8Array", "number"; never throws. */
export function describeKind(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value !== 'object') return typeof value;
  const tag = typedArrayName(value);
  if (tag !== undefined) return tag;
  try {
    if (Array.isArray(value)) return 'Array';
    const name = (value as object).constructor?.name;
    return typeof name === 'string' && name.length > 0 && name.length < 60 ? name : 'object';
  } catch {
    return 'object';
  }
}

const OPTION_KEYS = ['nonFinite', 'arena', 'threads'];

/** The AccSGD options, read once; AccSGDConfigError for an unknown key. */
export function readOptions(options: unknown): AccSGDOptions {
  if (options === undefined) return {};
  const record = readRecord('options', options);
  for (const key of Object.keys(record)) {
    if (!OPTION_KEYS.includes(key)) {
      throw new AccSGDConfigError(
        `options.${key}`,
        record[key],
        `one of ${OPTION_KEYS.join(', ')}`,
        `is not an AccSGD option (expected one of ${OPTION_KEYS.join(', ')})`,
      );
    }
  }
  return record as AccSGDOptions;
}

/** A group's parts, read once; undefined when `input` is not a group { params: [...] }. */
export function readGroup(
  input: unknown,
  field: string,
):
  | {
      params: unknown[];
      names: unknown[] | undefined;
      shapes: unknown[] | undefined;
      hyper: Record<string, unknown>;
    }
  | undefined {
  if (typeof input !== 'object' || input === null || Array.isArray(input) || ArrayBuffer.isView(input))
    return undefined;
  const record = readRecord(field, input);
  const params = readList(record.params);
  if (params === undefined) return undefined;
  const { params: _, names, shapes, ...hyper } = record;
  const list = (key: string, value: unknown) => {
    if (value === undefined) return undefined;
    const items = readList(value);
    if (items === undefined)
      throw new AccSGDConfigError(`${field}.${key}`, value, 'an array with one entry per parameter');
    return items;
  };
  return { params, names: list('names', names), shapes: list('shapes', shapes), hyper };
}
