import {
  AccSGDConfigError,
  firstRangeOverlap,
  type Hyperparams,
  type RegistryGroup,
  type RegistryParam,
  resolveHyperparams,
  validateHyperparams,
} from '@accsgd/core';
import { align, type Group, type Slot } from './binding-windows.js';
import { AccSGDDeviceError } from './errors.js';
import type { StorageType } from './kernels/accsgd-update.js';
import type { SegmentInput, TensorInput, WebGPUTensorListGroup } from './types.js';
import {
  type BufferBrand,
  checkBuffer,
  checkedShape,
  F32,
  GPUBufferUsageFlag,
  shown,
  shownValues,
} from './validation.js';

// The groups as the caller gives them (flat { params, grads, segments } or { tensors }), checked
// for what WebGPU needs (real buffers with STORAGE usage and room for their tensors, disjoint
// gradient ranges, a momentum buffer within maxBufferSize) and laid out; the registry receives
// their names, shapes, hyperparameters and params ranges.

/** What the layout needs to know of the device and the options. */
export interface LayoutContext {
  device: GPUDevice;
  storage: StorageType;
  brand: BufferBrand | null;
}

const GROUP_EXTRA_KEYS = ['params', 'grads', 'segments'];
const LIST_GROUP_EXTRA_KEYS = ['tensors'];

/**
 * Reads and checks the groups (either form) and lays them out; returns the layout and the groups
 * as the registry is to declare them (each tensor's params range as its storage).
 */
export function readGroups(
  context: LayoutContext,
  groupInputs: unknown,
  base: Hyperparams,
): { groups: Group[]; declared: RegistryGroup[] } {
  if (!Array.isArray(groupInputs) || groupInputs.length === 0) {
    throw new AccSGDConfigError(
      'groups',
      groupInputs,
      'a non-empty array of { params, grads, segments } or { tensors } groups',
    );
  }
  const elementBytes = context.storage === 'float16' ? 2 : 4;
  // Binding offsets must be aligned: momentum starts at the aligned element at or below the group's first.
  const alignElements = Math.max(1, context.device.limits.minStorageBufferOffsetAlignment / elementBytes);
  const groups: Group[] = [];
  const declared: RegistryGroup[] = [];
  let count = 0;
  // Index by index, holes as undefined (forEach and map would skip them); the first bad group
  // stops the walk, so a sparse array of length 2^32 - 1 is not walked in full.
  const groupCount = groupInputs.length;
  for (let g = 0; g < groupCount; g++) {
    const input: unknown = groupInputs[g];
    const where = `groups[${g}]`;
    if (typeof input !== 'object' || input === null)
      throw new AccSGDConfigError(where, input, 'a group { params, grads, segments } or { tensors }');
    const read =
      'tensors' in input
        ? readTensorList(context, input as WebGPUTensorListGroup, g, count, base, alignElements)
        : readFlatGroup(context, input as Record<string, unknown>, g, count, base);
    const { slots, names, shapes, hyperparams, params, grads } = read;
    const table = 'tensors' in input ? slots.filter((s) => s.size > 0) : read.table;
    const end = table.length > 0 ? table[table.length - 1]!.offset + table[table.length - 1]!.size : 0;
    const momentumBase = table.length > 0 ? Math.floor(table[0]!.offset / alignElements) * alignElements : 0;
    const momentumBytes = Math.max((end - momentumBase) * 4, 4);
    const maxBufferSize = context.device.limits.maxBufferSize;
    if (momentumBytes > maxBufferSize) {
      throw new AccSGDDeviceError(
        'create',
        'unsupported',
        `${where} needs a ${momentumBytes}-byte momentum buffer; the device's maxBufferSize is ${maxBufferSize} (split the group)`,
      );
    }
    count += slots.length;
    groups.push({
      base: momentumBase,
      slots,
      table,
      end,
      params,
      grads,
      momentum: undefined as unknown as GPUBuffer,
      segmentTable: undefined as unknown as GPUBuffer,
      uniforms: undefined as unknown as GPUBuffer,
      windows: [],
      lastTable: null,
    });
    declared.push({
      hyperparams,
      precision: 'float32',
      params: slots.map(
        (slot, k): RegistryParam => ({
          ...(names[k] === undefined ? {} : { name: names[k] }),
          shape: shapes[k],
          length: slot.size,
          ...(slot.size === 0
            ? {}
            : {
                storage: {
                  resource: slot.params,
                  begin: slot.first * elementBytes,
                  end: (slot.first + slot.size) * elementBytes,
                },
              }),
          value: `params elements [${slot.first}, ${slot.first + slot.size})`,
        }),
      ),
    });
  }
  return { groups, declared };
}

interface ReadGroup {
  slots: Slot[];
  table: Slot[];
  /** The names as given (undefined: the default), and the shapes. */
  names: unknown[];
  shapes: number[][];
  hyperparams: Hyperparams;
  params: GPUBuffer | null;
  grads: GPUBuffer | null;
}

/** A flat-form group ({ params, grads, segments }). */
function readFlatGroup(
  context: LayoutContext,
  input: Record<string, unknown>,
  g: number,
  count: number,
  base: Hyperparams,
): ReadGroup {
  const where = `groups[${g}]`;
  const { params, grads, segments, ...hyper } = input as unknown as {
    params: GPUBuffer;
    grads: GPUBuffer;
    segments: unknown;
  };
  const hyperparams = validateHyperparams(
    resolveHyperparams(shownValues(hyper) as Partial<Hyperparams>, base, GROUP_EXTRA_KEYS),
    F32,
  );
  checkBuffer(`${where}.params`, params, GPUBufferUsageFlag.STORAGE, undefined, context.brand);
  checkBuffer(`${where}.grads`, grads, GPUBufferUsageFlag.STORAGE, undefined, context.brand);
  if (params === grads)
    throw new AccSGDConfigError(`${where}.grads`, 'the params buffer', 'a buffer other than params');
  if (!Array.isArray(segments) || segments.length === 0) {
    throw new AccSGDConfigError(
      `${where}.segments`,
      segments,
      'a non-empty array of { offset, shape or size }',
    );
  }
  const names: unknown[] = [];
  const shapes: number[][] = [];
  const slots = Array.from(segments as readonly SegmentInput[], (segment, k): Slot => {
    const at = `${where}.segments[${k}]`;
    if (typeof segment !== 'object' || segment === null)
      throw new AccSGDConfigError(at, segment, '{ offset, shape or size }');
    const { offset, shape: shapeInput, size, name } = segment;
    if (!Number.isSafeInteger(offset) || offset < 0)
      throw new AccSGDConfigError(`${at}.offset`, shown(offset), 'an integer >= 0 (elements)');
    const shape = checkedShape(`${at}.shape`, shapeInput);
    const shapeCount = shape?.reduce((a, d) => a * d, 1);
    const size_ = size ?? shapeCount;
    if (size_ === undefined || !Number.isSafeInteger(size_) || size_ < 0) {
      throw new AccSGDConfigError(`${at}.size`, shown(size), 'an integer >= 0 (or give a shape)');
    }
    if (shapeCount !== undefined && shapeCount !== size_) {
      throw new AccSGDConfigError(`${at}.shape`, shape, `a shape of ${size_} elements (size)`);
    }
    names.push(name == null ? undefined : shownName(name));
    shapes.push(shape ?? [size_]);
    return { offset, size: size_, params, grads, first: offset, where, at, index: count + k, group: g };
  });
  const table = slots.filter((s) => s.size > 0).sort((a, b) => a.offset - b.offset);
  const nameOf = (s: Slot) => names[s.index - count] ?? String(s.index);
  for (let k = 1; k < table.length; k++) {
    const previous = table[k - 1]!;
    if (table[k]!.offset < previous.offset + previous.size) {
      throw new AccSGDConfigError(
        `${where}.segments`,
        `"${nameOf(previous)}" [${previous.offset}, ${previous.offset + previous.size}) and "${nameOf(table[k]!)}" [${table[k]!.offset}, ${table[k]!.offset + table[k]!.size})`,
        'disjoint element ranges',
        'overlap',
      );
    }
  }
  const end = table.length > 0 ? table[table.length - 1]!.offset + table[table.length - 1]!.size : 0;
  if (end >= 2 ** 32)
    throw new AccSGDConfigError(`${where}.segments`, end, 'fewer than 2^32 elements of flat storage');
  const needed = align(end * (context.storage === 'float16' ? 2 : 4), 4);
  for (const [field, buffer] of [
    ['params', params],
    ['grads', grads],
  ] as const) {
    if (buffer.size < needed) {
      throw new AccSGDConfigError(
        `${where}.${field}`,
        `a buffer of ${buffer.size} bytes`,
        `at least ${needed} bytes`,
        `is too small: the segments reach element ${end} (${context.storage}), so it needs at least ${needed} bytes; it has ${buffer.size}`,
      );
    }
  }
  return { slots, table, names, shapes, hyperparams, params, grads };
}

/**
 * A list-form group ({ tensors }): each tensor keeps its own buffers and gets a place in a virtual
 * element space of the group (the segment table's and the momentum buffer's coordinates), at an
 * offset aligned to the binding offset alignment, so every tensor is its own binding window.
 */
function readTensorList(
  context: LayoutContext,
  input: WebGPUTensorListGroup,
  g: number,
  count: number,
  base: Hyperparams,
  alignElements: number,
): ReadGroup {
  const where = `groups[${g}]`;
  const { tensors, ...hyper } = input;
  for (const key of GROUP_EXTRA_KEYS) {
    if (key in hyper) {
      throw new AccSGDConfigError(
        `${where}.${key}`,
        shown((hyper as Record<string, unknown>)[key]),
        'absent: a group is either { tensors } or { params, grads, segments }',
      );
    }
  }
  const hyperparams = validateHyperparams(
    resolveHyperparams(shownValues(hyper) as Partial<Hyperparams>, base, LIST_GROUP_EXTRA_KEYS),
    F32,
  );
  if (!Array.isArray(tensors) || tensors.length === 0) {
    throw new AccSGDConfigError(
      `${where}.tensors`,
      tensors,
      'a non-empty array of { params, grads, elements }',
    );
  }
  const elementBytes = context.storage === 'float16' ? 2 : 4;
  const seen = new Map<GPUBuffer, string>();
  const names: unknown[] = [];
  const shapes: number[][] = [];
  let cursor = 0;
  const slots = Array.from(tensors as readonly TensorInput[], (tensor, k): Slot => {
    const at = `${where}.tensors[${k}]`;
    if (typeof tensor !== 'object' || tensor === null)
      throw new AccSGDConfigError(at, tensor, '{ params, grads, elements }');
    const { params, grads, elements, shape: shapeInput, name } = tensor;
    if (!Number.isSafeInteger(elements) || elements < 0)
      throw new AccSGDConfigError(`${at}.elements`, shown(elements), 'an integer >= 0');
    const shape = checkedShape(`${at}.shape`, shapeInput);
    const shapeCount = shape?.reduce((a, d) => a * d, 1);
    if (shapeCount !== undefined && shapeCount !== elements) {
      throw new AccSGDConfigError(`${at}.shape`, shape, `a shape of ${elements} elements (elements)`);
    }
    const needed = align(elements * elementBytes, 4);
    for (const [field, buffer] of [
      ['params', params],
      ['grads', grads],
    ] as const) {
      checkBuffer(`${at}.${field}`, buffer, GPUBufferUsageFlag.STORAGE, undefined, context.brand);
      const other = seen.get(buffer);
      if (other !== undefined) {
        throw new AccSGDConfigError(
          `${at}.${field}`,
          `the buffer of ${other}`,
          'a buffer no other params or grads of the group uses',
        );
      }
      seen.set(buffer, `${at}.${field}`);
      if (buffer.size < needed) {
        throw new AccSGDConfigError(
          `${at}.${field}`,
          `a buffer of ${buffer.size} bytes`,
          `at least ${needed} bytes`,
          `is too small: the tensor has ${elements} elements (${context.storage}), so it needs at least ${needed} bytes; it has ${buffer.size}`,
        );
      }
    }
    names.push(name == null ? undefined : shownName(name));
    shapes.push(shape ?? [elements]);
    const offset = cursor;
    cursor = align(offset + elements, alignElements);
    return { offset, size: elements, params, grads, first: 0, where: at, at, index: count + k, group: g };
  });
  const last = slots.filter((s) => s.size > 0).at(-1);
  const end = last ? last.offset + last.size : 0;
  if (end >= 2 ** 32)
    throw new AccSGDConfigError(`${where}.tensors`, end, 'fewer than 2^32 elements in all (aligned)');
  return { slots, table: [], names, shapes, hyperparams, params: null, grads: null };
}

/** A name as given to the registry: a string as it is, anything else described (the registry rejects it). */
function shownName(name: unknown): unknown {
  return typeof name === 'string' ? name : shown(name);
}

/**
 * Rejects a tensor whose grads range shares an element of one buffer with another tensor's params
 * or grads range (in any group): a gradient overwritten by another tensor's update, or one
 * gradient read for two tensors. (Params against params is the registry's storage check.) O(n log n).
 */
export function checkGradientRanges(groups: readonly Group[], nameOf: (index: number) => string): void {
  interface Range {
    start: number;
    end: number;
    slot: Slot;
    which: 'params' | 'grads';
  }
  const ranges: Range[] = [];
  for (const group of groups)
    for (const slot of group.slots)
      for (const which of ['params', 'grads'] as const)
        ranges.push({ start: slot.first, end: slot.first + slot.size, slot, which });
  const hit = firstRangeOverlap(
    ranges.map((r) => ({ resource: r.slot[r.which], begin: r.start, end: r.end })),
  );
  if (!hit) return;
  // Named after the later of the two in group order.
  const [a, b] = [ranges[hit[0]]!, ranges[hit[1]]!];
  const [first, second] = a.slot.index <= b.slot.index ? [a, b] : [b, a];
  const where = (r: Range) => r.slot.at;
  const what = (r: Range) => `("${nameOf(r.slot.index)}") ${r.which} elements [${r.start}, ${r.end})`;
  const shared = `[${Math.max(a.start, b.start)}, ${Math.min(a.end, b.end)})`;
  const consequence =
    first.which === 'params' && second.which === 'params'
      ? 'would be updated twice in one step'
      : first.which === 'grads' && second.which === 'grads'
        ? 'would be read as the gradient of two tensors'
        : "would hold one tensor's gradient and another's parameters, so an update would overwrite a gradient";
  throw new AccSGDConfigError(
    where(second),
    `${second.which} elements [${second.start}, ${second.end})`,
    'elements of a buffer that no other tensor uses as params or grads',
    `${what(second)} overlaps ${where(first)} ${what(first)} in one GPUBuffer: elements ${shared} ${consequence} (ranges of one buffer must be disjoint across all groups)`,
  );
}
