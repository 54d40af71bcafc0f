import {
  AccSGDConfigError,
  AccSGDError,
  AccSGDGradientError,
  type NonFinitePolicy,
  nonFinitePolicy,
  type ParameterRegistry,
} from '@accsgd/core';
import { AccSGDDeviceError } from './errors.js';
import { defaultWorkgroupsPerDispatch, type StorageType } from './kernels/accsgd-update.js';
import type { StepOptions, WebGPUAccSGDOptions } from './types.js';

// Input validation specific to WebGPU: devices, buffers and their usage, query sets, options and
// gradient flags. Everything here reads a caller's value once and throws a typed error.

/** GPUBufferUsage / GPUMapMode values, spelled out so the module loads before WebGPU globals exist (Node). */
export const GPUBufferUsageFlag = {
  MAP_READ: 0x1,
  COPY_SRC: 0x4,
  COPY_DST: 0x8,
  UNIFORM: 0x40,
  STORAGE: 0x80,
} as const;
export const GPUMapModeFlag = { READ: 0x1 } as const;

/** The kernels compute with float32 multipliers, so accepted hyperparameters must fit float32 (SPEC §1). */
export const F32 = { precision: 'float32' } as const;

const OPTION_KEYS = [
  'storage',
  'label',
  'maxBindingBytes',
  'maxWorkgroupsPerDimension',
  'workgroupsPerDispatch',
  'nonFinite',
] as const;
const STEP_OPTION_KEYS = ['timestampWrites'];
const TIMESTAMP_WRITES_KEYS = ['querySet', 'beginningOfPassWriteIndex', 'endOfPassWriteIndex'];

/** The options of create(), checked against the device. */
export interface Settings {
  storage: StorageType;
  nonFinite: NonFinitePolicy;
  label: string;
  maxBindingBytes: number;
  maxWorkgroups: number;
  workgroupsPerDispatch: number;
}

/** AccSGDConfigError unless `device` looks like a GPUDevice (read without trusting its getters). */
export function checkDevice(device: unknown): asserts device is GPUDevice {
  let looksLikeDevice = false;
  try {
    const d = device as GPUDevice;
    looksLikeDevice =
      typeof d === 'object' &&
      d !== null &&
      typeof d.createBuffer === 'function' &&
      typeof d.queue === 'object' &&
      d.queue !== null;
  } catch {
    // A Proxy of a device, or an object whose getters throw: not a device the optimizer can use.
  }
  if (!looksLikeDevice) throw new AccSGDConfigError('device', describeValue(device), 'a GPUDevice');
}

/** The options of create(), read once and checked against the device's features and limits. */
export function readSettings(device: GPUDevice, input: unknown): Settings {
  const options = createOptions(input);
  const storage = options.storage ?? 'float32';
  if (storage !== 'float32' && storage !== 'float16')
    throw new AccSGDConfigError('storage', storage, '"float32" or "float16"');
  if (storage === 'float16' && !device.features.has('shader-f16')) {
    throw new AccSGDDeviceError(
      'create',
      'unsupported',
      'float16 storage needs the "shader-f16" feature, which this device lacks (request it with ' +
        "adapter.requestDevice({ requiredFeatures: ['shader-f16'] }) on an adapter that has it, or use storage: 'float32')",
    );
  }
  const limits = device.limits;
  return {
    storage,
    nonFinite: nonFinitePolicy(options.nonFinite),
    label: options.label ?? 'accsgd',
    maxBindingBytes: limitOption(
      'maxBindingBytes',
      options.maxBindingBytes,
      limits.maxStorageBufferBindingSize,
    ),
    maxWorkgroups: limitOption(
      'maxWorkgroupsPerDimension',
      options.maxWorkgroupsPerDimension,
      limits.maxComputeWorkgroupsPerDimension,
    ),
    workgroupsPerDispatch: limitOption(
      'workgroupsPerDispatch',
      options.workgroupsPerDispatch,
      Number.MAX_SAFE_INTEGER,
      defaultWorkgroupsPerDispatch(device),
    ),
  };
}

/**
 * The prototype and native `size` and `usage` getters of a device's GPUBuffers. A native getter
 * must only be called on an object whose prototype chain holds `proto`: Dawn's getters do not
 * check the kind of object they are called on (a GPUDevice would be read as a buffer and crash
 * the process), while on a Proxy or an Object.create of a buffer they throw.
 */
export interface BufferBrand {
  proto: object;
  size: (this: unknown) => unknown;
  usage: (this: unknown) => unknown;
}

const brands = new WeakMap<object, BufferBrand | null>();

/** The getter `key` on `object`'s prototype chain, if it is an accessor there. */
function getterOf(object: object, key: string): ((this: unknown) => unknown) | undefined {
  for (let p: object | null = object; p !== null; p = Object.getPrototypeOf(p)) {
    const descriptor = Object.getOwnPropertyDescriptor(p, key);
    if (descriptor) return typeof descriptor.get === 'function' ? descriptor.get : undefined;
  }
  return undefined;
}

/**
 * The GPUBuffer accessors of the device's own buffers, taken from a 4-byte probe buffer (once per
 * device). A native getter called on anything but a real buffer throws, so a look-alike object or
 * a Proxy of a buffer (which passes Dawn's type check and then crashes the process inside Dawn) is
 * rejected before it gets near a WebGPU call. null when the implementation has no such accessors
 * (then buffers are checked by shape only).
 */
export function brandOf(device: GPUDevice): BufferBrand | null {
  const cached = brands.get(device);
  if (cached !== undefined) return cached;
  let probe: unknown;
  try {
    probe = device.createBuffer({ label: 'accsgd probe', size: 4, usage: GPUBufferUsageFlag.COPY_DST });
  } catch (error) {
    throw new AccSGDConfigError(
      'device',
      'a device whose createBuffer throws',
      'a GPUDevice',
      `is not a usable GPUDevice: createBuffer threw (${messageOf(error)})`,
    );
  }
  if (typeof probe !== 'object' || probe === null)
    throw new AccSGDConfigError(
      'device',
      describeValue(probe),
      'a GPUDevice',
      'is not a GPUDevice: createBuffer returned no buffer',
    );
  const size = getterOf(probe, 'size');
  const usage = getterOf(probe, 'usage');
  try {
    (probe as GPUBuffer).destroy();
  } catch {
    // A look-alike device; its buffers are checked by shape below.
  }
  const proto = Object.getPrototypeOf(probe) as object | null;
  const brand = size && usage && proto ? { proto, size, usage } : null;
  brands.set(device, brand);
  return brand;
}

interface QuerySetBrand {
  proto: object;
  type: (this: unknown) => unknown;
  count: (this: unknown) => unknown;
}

const querySetBrands = new WeakMap<object, QuerySetBrand | null>();

/** The native `type` and `count` getters of the device's GPUQuerySets (from a one-query occlusion probe, once per device). */
function querySetBrandOf(device: GPUDevice): QuerySetBrand | null {
  const cached = querySetBrands.get(device);
  if (cached !== undefined) return cached;
  const probe = device.createQuerySet({ label: 'accsgd probe', type: 'occlusion', count: 1 });
  const type = getterOf(probe, 'type');
  const count = getterOf(probe, 'count');
  const proto = Object.getPrototypeOf(probe) as object | null;
  probe.destroy();
  const brand = type && count && proto ? { proto, type, count } : null;
  querySetBrands.set(device, brand);
  return brand;
}

/**
 * Throws AccSGDConfigError unless `buffer` is a GPUBuffer (a real one of the device's kind, when
 * `brand` is known) with `usage`; returns its size and usage as the buffer itself reports them.
 */
export function checkBuffer(
  field: string,
  buffer: GPUBuffer,
  usage: number,
  purpose = 'for the update kernel',
  brand: BufferBrand | null = null,
): { size: number; usage: number } {
  let facts: { size: unknown; usage: unknown } | null = null;
  if (typeof buffer === 'object' && buffer !== null) {
    try {
      if (brand && !Object.prototype.isPrototypeOf.call(brand.proto, buffer)) facts = null;
      else
        facts = brand
          ? { size: brand.size.call(buffer), usage: brand.usage.call(buffer) }
          : { size: buffer.size, usage: buffer.usage };
    } catch {
      facts = null; // a Proxy or a look-alike: the native getters refuse it
    }
  }
  if (!facts || typeof facts.size !== 'number' || typeof facts.usage !== 'number') {
    throw new AccSGDConfigError(
      field,
      describeValue(buffer),
      'a GPUBuffer of this device',
      `must be a GPUBuffer created by the device (not a copy, look-alike or Proxy of one); got ${describeValue(buffer)}`,
    );
  }
  const actual = facts.usage;
  if ((actual & usage) !== usage) {
    const names = Object.entries(GPUBufferUsageFlag)
      .filter(([, bit]) => (usage & bit) !== 0)
      .map(([n]) => n);
    throw new AccSGDConfigError(
      field,
      `a buffer with usage 0x${actual.toString(16)}`,
      `a buffer with ${names.join(' | ')} usage ${purpose}`,
    );
  }
  return { size: facts.size, usage: actual };
}

/**
 * The options of step(), read once: undefined or a plain object whose timestampWrites, if any,
 * names a real GPUQuerySet of type "timestamp" of this device and indices inside it.
 */
export function checkStepOptions(device: GPUDevice, input: unknown): StepOptions {
  return typed(
    () => {
      if (input === undefined) return {};
      if (!isPlainObject(input))
        throw new AccSGDConfigError(
          'step options',
          describeValue(input),
          'undefined or { timestampWrites? }',
        );
      const options = { ...input };
      for (const key of Object.keys(options)) {
        if (!STEP_OPTION_KEYS.includes(key))
          throw new AccSGDConfigError(
            `step options.${key}`,
            shown(options[key]),
            'timestampWrites',
            'is not an option of step (expected timestampWrites)',
          );
      }
      if (options.timestampWrites === undefined) return {};
      const writes = options.timestampWrites;
      const expected = '{ querySet, beginningOfPassWriteIndex?, endOfPassWriteIndex? }';
      if (!isPlainObject(writes))
        throw new AccSGDConfigError('timestampWrites', describeValue(writes), expected);
      const copy = { ...writes };
      for (const key of Object.keys(copy)) {
        if (!TIMESTAMP_WRITES_KEYS.includes(key))
          throw new AccSGDConfigError(
            `timestampWrites.${key}`,
            shown(copy[key]),
            expected,
            `is not a field of ${expected}`,
          );
      }
      const querySet = copy.querySet;
      let facts: { type: unknown; count: unknown } | null = null;
      const brand = querySetBrandOf(device);
      if (typeof querySet === 'object' && querySet !== null) {
        try {
          if (brand && !Object.prototype.isPrototypeOf.call(brand.proto, querySet)) facts = null;
          else
            facts = brand
              ? { type: brand.type.call(querySet), count: brand.count.call(querySet) }
              : { type: (querySet as GPUQuerySet).type, count: (querySet as GPUQuerySet).count };
        } catch {
          facts = null;
        }
      }
      if (facts?.type !== 'timestamp' || typeof facts.count !== 'number')
        throw new AccSGDConfigError(
          'timestampWrites.querySet',
          describeValue(querySet),
          'a GPUQuerySet of type "timestamp" created by the device',
        );
      const count = facts.count;
      for (const key of ['beginningOfPassWriteIndex', 'endOfPassWriteIndex']) {
        const index = copy[key];
        if (
          index !== undefined &&
          !(Number.isSafeInteger(index) && (index as number) >= 0 && (index as number) < count)
        )
          throw new AccSGDConfigError(
            `timestampWrites.${key}`,
            shown(index),
            `an integer in [0, ${count - 1}] (the query set's count)`,
          );
      }
      return { timestampWrites: copy as unknown as GPUComputePassTimestampWrites };
    },
    (detail) =>
      new AccSGDConfigError(
        'step options',
        'an unreadable value',
        'undefined or { timestampWrites? }',
        `could not be read (${detail})`,
      ),
  );
}

/**
 * The gradient flags as booleans per tensor: undefined (all), an array of booleans (every index
 * read, holes rejected) or a plain object keyed by name, whose keys the registry reads. Anything
 * else (a Map, a Set, a typed array, a class instance) would read as no flags at all, so it is
 * rejected.
 */
export function readPresence(registry: ParameterRegistry, present: unknown): boolean[] {
  return typed(
    () => {
      const count = registry.size;
      if (present === undefined) return new Array<boolean>(count).fill(true);
      if (Array.isArray(present)) {
        if (present.length !== count) {
          throw new AccSGDGradientError(
            undefined,
            `expected ${count} gradient flags (one per tensor), got ${present.length}`,
          );
        }
        return Array.from(present as readonly unknown[], (flag, i) => {
          if (typeof flag !== 'boolean')
            throw new AccSGDGradientError(
              registry.name(i),
              `expected true or false, got ${describeValue(flag)}`,
            );
          return flag;
        });
      }
      if (!isPlainObject(present)) {
        throw new AccSGDGradientError(
          undefined,
          `expected the gradient flags as an array of booleans (one per tensor) or a plain object { name: boolean }, got ${describeValue(present)}`,
        );
      }
      const active = new Array<boolean>(count).fill(false);
      // Copied first (each value read once, here), so that a getter that throws is reported as
      // unreadable flags; the registry maps the keys to tensors and rejects unknown names.
      for (const { index, name, grad } of registry.planStep<unknown>({ ...present }).work) {
        if (typeof grad !== 'boolean')
          throw new AccSGDGradientError(name, `expected true, false or null, got ${describeValue(grad)}`);
        active[index] = grad;
      }
      return active;
    },
    (detail) => new AccSGDGradientError(undefined, `could not read the gradient flags (${detail})`),
  );
}

/** Runs `body`; an error that is not an AccSGD error (a throwing getter, a revoked Proxy) becomes `wrap(message)`. */
export function typed<T>(body: () => T, wrap: (detail: string) => AccSGDError): T {
  try {
    return body();
  } catch (error) {
    if (error instanceof AccSGDError) throw error;
    throw wrap(messageOf(error));
  }
}

export function messageOf(error: unknown): string {
  try {
    return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  } catch {
    return 'an unprintable error';
  }
}

/**
 * A value as it may be handed to AccSGDConfigError (whose message prints arrays in full): objects
 * become their description, short arrays a copy with objects described.
 */
export function shown(value: unknown): unknown {
  if (typeof value === 'function') return describeValue(value);
  if (typeof value !== 'object' || value === null) return value;
  try {
    if (Array.isArray(value) && value.length <= 16) {
      return Array.from(value as unknown[], (v) =>
        (typeof v === 'object' && v !== null) || typeof v === 'function' ? describeValue(v) : v,
      );
    }
  } catch {
    // unreadable: described below
  }
  return describeValue(value);
}

/** A copy of an object's own enumerable values, each `shown` (non-objects pass through unchanged). */
export function shownValues(input: unknown): unknown {
  if (typeof input !== 'object' || input === null) return input;
  return Object.fromEntries(Object.entries(input).map(([key, value]) => [key, shown(value)]));
}

/** How a value reads in an error message, without touching it beyond its type and class name. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value !== 'object' && typeof value !== 'function') {
    if (typeof value === 'string')
      return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
    if (typeof value === 'symbol') return 'a symbol';
    return `${typeof value} ${String(value)}`;
  }
  try {
    if (Array.isArray(value)) return `an array of ${value.length}`;
    const name: unknown = Object.getPrototypeOf(value)?.constructor?.name;
    return typeof name === 'string' && name !== '' ? `a ${name}` : `an ${typeof value}`;
  } catch {
    return 'an unreadable object (a revoked Proxy?)';
  }
}

/** A plain object: an object literal or Object.create(null), not a Map, array, typed array or class instance. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** The options of create(), read once: undefined or a plain object of known keys. */
function createOptions(input: unknown): WebGPUAccSGDOptions {
  if (input === undefined) return {};
  const known = `{ ${OPTION_KEYS.map((k) => `${k}?`).join(', ')} }`;
  if (!isPlainObject(input))
    throw new AccSGDConfigError('options', describeValue(input), `undefined or an object ${known}`);
  // No option takes an object: any object value is replaced by its description, so that neither
  // the checks nor the messages read into it (a Proxy, a getter, a huge sparse array).
  const raw = { ...input };
  if (raw.label !== undefined && typeof raw.label !== 'string')
    throw new AccSGDConfigError('options.label', shown(raw.label), 'a string');
  const options = shownValues(raw) as Record<string, unknown>;
  for (const key of Object.keys(options)) {
    if (!(OPTION_KEYS as readonly string[]).includes(key)) {
      throw new AccSGDConfigError(
        `options.${key}`,
        options[key],
        `one of ${OPTION_KEYS.join(', ')}`,
        `is not an option of WebGPUAccSGD.create (expected one of ${OPTION_KEYS.join(', ')})`,
      );
    }
  }
  return options as WebGPUAccSGDOptions;
}

function limitOption(field: string, value: number | undefined, limit: number, fallback = limit): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value <= 0 || value > limit) {
    const range =
      limit === Number.MAX_SAFE_INTEGER
        ? 'an integer >= 1'
        : `an integer in [1, ${limit}] (the device limit)`;
    throw new AccSGDConfigError(field, value, range);
  }
  return value;
}

/**
 * A copy of an optional shape (read once, holes included); throws AccSGDConfigError unless it is an
 * array of integers >= 0 whose product is a safe integer.
 */
export function checkedShape(at: string, shape: unknown): number[] | undefined {
  if (shape === undefined) return undefined;
  // Index by index, stopping at the first bad dimension (a hole included): a sparse array of
  // length 2^32 - 1 must not be walked in full.
  const copy: unknown[] = [];
  if (Array.isArray(shape)) {
    const length = shape.length;
    for (let i = 0; i < length; i++) {
      const d: unknown = shape[i];
      copy.push(d);
      if (!(Number.isSafeInteger(d) && (d as number) >= 0)) break;
    }
  }
  if (!Array.isArray(shape) || !copy.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
    throw new AccSGDConfigError(at, shown(shape), 'an array of integers >= 0');
  }
  const dims = copy as number[];
  if (!Number.isSafeInteger(dims.reduce((a, d) => a * d, 1)))
    throw new AccSGDConfigError(at, dims, 'a shape of at most 2^53 - 1 elements');
  return dims;
}
