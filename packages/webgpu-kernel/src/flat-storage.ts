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
  const storage = options.storage ?? 'float32';
  const elementBytes = storage === 'float16' ? 2 : 4;
  // Both are powers of two, so the larger is a multiple of the smaller.
  const alignElements = Math.max(VEC4_ELEMENTS, device.limits.minStorageBufferOffsetAlignment / elementBytes);
  const segments: SegmentInput[] = [];
  const byName = new Map<string, SegmentInput & { size: number }>();
  let end = 0;
  tensors.forEach((tensor, k) => {
    const size = tensor.shape.reduce((a, d) => a * d, 1);
    if (!Number.isSafeInteger(size) || size < 0)
      throw new AccSGDConfigError(`tensors[${k}].shape`, tensor.shape, 'an array of integers >= 0');
    if (byName.has(tensor.name))
      throw new AccSGDConfigError(`tensors[${k}].name`, tensor.name, 'a unique name');
    const offset = Math.ceil(end / alignElements) * alignElements;
    const segment = { name: tensor.name, offset, shape: [...tensor.shape], size };
    segments.push(segment);
    byName.set(tensor.name, segment);
    end = offset + size;
  });
  const size = Math.max(Math.ceil((end * elementBytes) / 4) * 4, 4);
  const label = options.label ?? 'accsgd flat';
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
      return {
        buffer: which === 'params' ? params : grads,
        offset: segment.offset * elementBytes,
        size: Math.ceil((segment.size * elementBytes) / 4) * 4,
      };
    },
    write(name, which, values) {
      const segment = segmentOf(name);
      if (values.length !== segment.size) {
        throw new AccSGDConfigError(`values for "${name}"`, values, `${segment.size} elements`);
      }
      if ((storage === 'float16') !== values instanceof Uint16Array) {
        throw new AccSGDConfigError(
          `values for "${name}"`,
          values,
          storage === 'float16' ? 'a Uint16Array of float16 bits' : 'a Float32Array',
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
