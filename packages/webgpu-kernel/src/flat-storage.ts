import { AccSGDConfigError } from '@accsgd/core';
import { type StorageType, VEC4_ELEMENTS } from './kernels/accsgd-update.js';
import type { SegmentInput } from './webgpu-optimizer.js';

export interface FlatTensor {
  name: string;
  shape: number[];
}

/**
 * Flat params and grads buffers for a list of tensors, each tensor at an offset aligned to the
 * device's minStorageBufferOffsetAlignment (and to 4 elements), so training kernels can bind every
 * tensor on its own (`binding(name)`) while the optimizer updates them all in one dispatch
 * (`segments`). When every tensor's element count is a multiple of 4 too, the optimizer updates the
 * group with vec4 accesses.
 */
export interface FlatStorage {
  params: GPUBuffer;
  grads: GPUBuffer;
  segments: SegmentInput[];
  storage: StorageType;
  /** The tensor's range of the params (or grads) buffer, ready for a bind group entry. */
  binding(name: string, which?: 'params' | 'grads'): GPUBufferBinding;
  /** queue.writeBuffer of one tensor's values (float32 storage; for float16 pass the raw bits as Uint16Array). */
  write(name: string, which: 'params' | 'grads', values: Float32Array | Uint16Array): void;
  destroy(): void;
}

const STORAGE = 0x80;
const COPY_SRC = 0x4;
const COPY_DST = 0x8;

export function createFlatStorage(
  device: GPUDevice,
  tensors: readonly FlatTensor[],
  options: { storage?: StorageType; label?: string } = {},
): FlatStorage {
  const { storage, label } = readOptions(options);
  const list = readTensors(tensors);
  const elementBytes = storage === 'float16' ? 2 : 4;
  // Both are powers of two, so the larger is a multiple of the smaller.
  const alignElements = Math.max(VEC4_ELEMENTS, device.limits.minStorageBufferOffsetAlignment / elementBytes);
  const segments: SegmentInput[] = [];
  const byName = new Map<string, SegmentInput & { size: number }>();
  let end = 0;
  list.forEach((tensor, k) => {
    const size = tensor.shape.reduce((a, d) => a * d, 1);
    if (!Number.isSafeInteger(size))
      throw new AccSGDConfigError(
        `tensors[${k}].shape`,
        tensor.shape,
        'dimensions whose product is a safe integer',
      );
    if (byName.has(tensor.name))
      throw new AccSGDConfigError(`tensors[${k}].name`, tensor.name, 'a unique name');
    const offset = Math.ceil(end / alignElements) * alignElements;
    const segment = { name: tensor.name, offset, shape: [...tensor.shape], size };
    segments.push(segment);
    byName.set(tensor.name, segment);
    end = offset + size;
  });
  const size = Math.max(Math.ceil((end * elementBytes) / 4) * 4, 4);
  if (size > device.limits.maxBufferSize) {
    throw new AccSGDConfigError(
      'tensors',
      `${end} elements`,
      `at most ${device.limits.maxBufferSize} bytes in all (the device's maxBufferSize)`,
      `need ${size} bytes of ${storage} storage, more than the device's maxBufferSize of ${device.limits.maxBufferSize}; split them into groups`,
    );
  }
  const usage = STORAGE | COPY_SRC | COPY_DST;
  const params = device.createBuffer({ label: `${label} params`, size, usage });
  const grads = device.createBuffer({ label: `${label} grads`, size, usage });
  const segmentOf = (name: string) => {
    const segment = byName.get(name);
    if (!segment) throw new AccSGDConfigError('name', name, `one of ${[...byName.keys()].join(', ')}`);
    return segment;
  };
  return {
    params,
    grads,
    segments,
    storage,
    binding(name, which = 'params') {
      const segment = segmentOf(name);
      checkWhich(which);
      return {
        buffer: which === 'params' ? params : grads,
        offset: segment.offset * elementBytes,
        size: Math.ceil((segment.size * elementBytes) / 4) * 4,
      };
    },
    write(name, which, values) {
      const segment = segmentOf(name);
      checkWhich(which);
      const wanted = storage === 'float16' ? 'Uint16Array' : 'Float32Array';
      if (typedArrayTag(values) !== wanted) {
        throw new AccSGDConfigError(
          `values for "${name}"`,
          describe(values),
          storage === 'float16' ? 'a Uint16Array of float16 bits' : 'a Float32Array',
        );
      }
      if (values.length !== segment.size) {
        throw new AccSGDConfigError(
          `values for "${name}"`,
          `${values.length} elements`,
          `${segment.size} elements`,
        );
      }
      if (segment.size === 0) return;
      let data = new Uint8Array(values.byteLength);
      data.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
      if (data.byteLength % 4 !== 0) {
        const padded = new Uint8Array(data.byteLength + 2);
        padded.set(data);
        data = padded;
      }
      device.queue.writeBuffer(which === 'params' ? params : grads, segment.offset * elementBytes, data);
    },
    destroy() {
      params.destroy();
      grads.destroy();
    },
  };
}

const typedArrayToStringTag = Object.getOwnPropertyDescriptor(
  Object.getPrototypeOf(Uint8Array.prototype),
  Symbol.toStringTag,
)!.get!;

/** The class of a genuine typed array (read from its internal slot, so a Proxy or a look-alike has none). */
function typedArrayTag(value: unknown): string | undefined {
  return typedArrayToStringTag.call(value) as string | undefined;
}

function describe(value: unknown): string {
  if (value === null || typeof value !== 'object')
    return typeof value === 'string' ? 'a string' : String(value);
  return typedArrayTag(value) ?? (Array.isArray(value) ? 'an array' : 'an object');
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function checkWhich(which: unknown): void {
  if (which !== 'params' && which !== 'grads')
    throw new AccSGDConfigError('which', describe(which), '"params" or "grads"');
}

/** Runs `read` over caller-supplied values: a getter or Proxy trap that throws becomes AccSGDConfigError. */
function readInput<T>(field: string, expected: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    if (error instanceof AccSGDConfigError) throw error;
    throw new AccSGDConfigError(field, '(unreadable)', expected);
  }
}

const OPTION_KEYS = ['storage', 'label'];

function readOptions(options: unknown): { storage: StorageType; label: string } {
  const expected = 'undefined or { storage?: "float32" | "float16", label?: string }';
  return readInput('options', expected, () => {
    if (options === undefined) return { storage: 'float32', label: 'accsgd flat' };
    if (!isPlainObject(options)) throw new AccSGDConfigError('options', describe(options), expected);
    for (const key of Object.keys(options))
      if (!OPTION_KEYS.includes(key))
        throw new AccSGDConfigError(`options.${key}`, 'an unknown option', expected);
    const storage = options.storage ?? 'float32';
    if (storage !== 'float32' && storage !== 'float16')
      throw new AccSGDConfigError('options.storage', describe(storage), '"float32" or "float16"');
    const label = options.label ?? 'accsgd flat';
    if (typeof label !== 'string') throw new AccSGDConfigError('options.label', describe(label), 'a string');
    return { storage, label };
  });
}

/** The tensor list, read once into plain records: names non-empty strings, shapes of integers >= 0. */
function readTensors(tensors: unknown): FlatTensor[] {
  const expected = 'an array of { name: string, shape: number[] }';
  return readInput('tensors', expected, () => {
    if (!Array.isArray(tensors)) throw new AccSGDConfigError('tensors', describe(tensors), expected);
    const out: FlatTensor[] = [];
    for (let k = 0; k < tensors.length; k++) {
      const tensor: unknown = tensors[k];
      if (!isPlainObject(tensor))
        throw new AccSGDConfigError(`tensors[${k}]`, describe(tensor), '{ name, shape }');
      const { name, shape } = tensor;
      if (typeof name !== 'string' || name === '')
        throw new AccSGDConfigError(`tensors[${k}].name`, describe(name), 'a non-empty string');
      if (!Array.isArray(shape) || shape.length > 32)
        throw new AccSGDConfigError(
          `tensors[${k}].shape`,
          describe(shape),
          'an array of at most 32 integers >= 0',
        );
      const dims: number[] = [];
      for (let d = 0; d < shape.length; d++) {
        const dim: unknown = shape[d];
        if (typeof dim !== 'number' || !Number.isSafeInteger(dim) || dim < 0)
          throw new AccSGDConfigError(`tensors[${k}].shape[${d}]`, describe(dim), 'an integer >= 0');
        dims.push(dim);
      }
      out.push({ name, shape: dims });
    }
    return out;
  });
}
