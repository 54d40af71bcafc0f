import { AccSGDConfigError, type FusedCoefficients } from '@accsgd/core';
import {
  type AccessType,
  type AccSGDPipeline,
  accsgdUpdatePipeline,
  dispatchSize,
  elementsPerChunk,
  forgetAccsgdUpdatePipeline,
  SEGMENT_ACTIVE,
  SEGMENT_ENTRY_BYTES,
  SEGMENT_ENTRY_WORDS,
  STATUS_NONE,
  type StorageType,
  statusWords,
  UNIFORM_BYTES,
  UNIFORM_WORDS,
  vec4Eligible,
} from './kernels/accsgd-update.js';
import type { StepOptions } from './types.js';
import { GPUBufferUsageFlag } from './validation.js';

// The layout of the groups on the device: each tensor's place in its group's element space (the
// segment table's and the momentum buffer's coordinates, set by group-input.ts), the binding
// windows a step dispatches over, and the encoding of a step's dispatches.

/** One tensor: where it lies. Its name, shape, group and buffer presence are the registry's. */
export interface Slot {
  /** First element in the group's (flat or, for the list form, virtual) element space: segment-table coordinates. */
  offset: number;
  size: number;
  /** The buffers holding the tensor's parameters and gradient, and its first element in them. */
  params: GPUBuffer;
  grads: GPUBuffer;
  first: number;
  /** How the buffers are named in errors: "groups[g]" (flat form) or "groups[g].tensors[k]" (list form). */
  where: string;
  /** The tensor's own path: "groups[g].segments[k]" or "groups[g].tensors[k]". */
  at: string;
  /** Position in `paramNames` (the registry's index), and the group's. */
  index: number;
  group: number;
}

export interface Window {
  /** First element (in the group's flat storage) and element count. */
  start: number;
  length: number;
  /** Range of the group's non-empty slots (in offset order) that intersect the window. */
  firstSlot: number;
  endSlot: number;
  /** Every element of the window belongs to some segment. */
  covered: boolean;
  /** The program for this window: vec4 where vec4Eligible, scalar otherwise. */
  pipeline: AccSGDPipeline;
  bindGroup: GPUBindGroup;
  dispatch: [number, number];
}

export interface Group {
  /** The first element of flat storage the momentum buffer covers (its element 0). */
  base: number;
  slots: Slot[];
  /** Non-empty slots sorted by offset: the rows of the segment table. */
  table: Slot[];
  /** One past the last element of the table. */
  end: number;
  /** The flat form's buffers; null for the list form, whose tensors have their own (see Slot). */
  params: GPUBuffer | null;
  grads: GPUBuffer | null;
  momentum: GPUBuffer;
  segmentTable: GPUBuffer;
  uniforms: GPUBuffer;
  windows: Window[];
  lastTable: Uint32Array | null;
}

/** The GPU objects of the layout: status buffers, and per group its momentum, table, uniforms and windows. */
export interface AllocateOptions {
  device: GPUDevice;
  storage: StorageType;
  label: string;
  maxBindingBytes: number;
  maxWorkgroups: number;
  workgroupsPerDispatch: number;
}

/**
 * Creates the pipelines (cached per device), momentum buffers, segment tables, uniforms and bind
 * groups. Each window gets the vec4 program when its start, length and every tensor it touches
 * are multiples of 4 elements, and the scalar program otherwise. Returns the status buffers of
 * the non-finite scan; the groups' objects are set on them (destroyed by the caller on failure).
 */
export function allocateWindows(
  options: AllocateOptions,
  groups: Group[],
  created: { status?: GPUBuffer; statusRead?: GPUBuffer },
): void {
  const { device, storage, label: prefix } = options;
  const pipelines = new Map<AccessType, AccSGDPipeline>();
  const pipelineFor = (access: AccessType): AccSGDPipeline => {
    let entry = pipelines.get(access);
    if (!entry) {
      try {
        entry = accsgdUpdatePipeline(device, storage, access);
      } catch (error) {
        forgetAccsgdUpdatePipeline(device, storage);
        throw error;
      }
      pipelines.set(access, entry);
    }
    return entry;
  };
  const elementBytes = storage === 'float16' ? 2 : 4;
  // Window starts must be aligned for every binding: params/grads (elementBytes) and momentum (4 bytes).
  const alignElements = Math.max(1, device.limits.minStorageBufferOffsetAlignment / elementBytes);
  // A window is at most one binding (maxStorageBufferBindingSize); the kernel's grid-stride loop
  // covers a window of any length with any number of workgroups.
  const windowElements = Math.floor(options.maxBindingBytes / 4 / alignElements) * alignElements;
  if (windowElements < alignElements) {
    throw new AccSGDConfigError(
      'maxBindingBytes',
      options.maxBindingBytes,
      `at least ${alignElements * 4} bytes`,
    );
  }
  const statusBytes = statusWords(groups.length) * 4;
  const status = device.createBuffer({
    label: `${prefix} status`,
    size: statusBytes,
    usage: GPUBufferUsageFlag.STORAGE | GPUBufferUsageFlag.COPY_SRC | GPUBufferUsageFlag.COPY_DST,
  });
  created.status = status;
  created.statusRead = device.createBuffer({
    label: `${prefix} status readback`,
    size: statusBytes,
    usage: GPUBufferUsageFlag.MAP_READ | GPUBufferUsageFlag.COPY_DST,
  });
  groups.forEach((group, g) => {
    const label = `${prefix} group ${g}`;
    const { base: begin, end } = group;
    // Element k of the momentum buffer belongs to element begin + k of the flat storage.
    group.momentum = device.createBuffer({
      label: `${label} momentum`,
      size: Math.max((end - begin) * 4, 4),
      usage: GPUBufferUsageFlag.STORAGE | GPUBufferUsageFlag.COPY_SRC | GPUBufferUsageFlag.COPY_DST,
    });
    group.segmentTable = device.createBuffer({
      label: `${label} segments`,
      size: Math.max(group.table.length, 1) * SEGMENT_ENTRY_BYTES,
      usage: GPUBufferUsageFlag.STORAGE | GPUBufferUsageFlag.COPY_DST,
    });
    // The windows: the flat form's storage cut every windowElements from the momentum base; in the
    // list form each tensor (cut likewise when larger) is a window over its own buffers.
    const spans: {
      start: number;
      length: number;
      params: GPUBuffer;
      grads: GPUBuffer;
      storageStart: number;
    }[] = [];
    if (group.params && group.grads) {
      for (let s = begin; s < end; s += windowElements)
        spans.push({
          start: s,
          length: Math.min(windowElements, end - s),
          params: group.params,
          grads: group.grads,
          storageStart: s,
        });
    } else {
      for (const slot of group.table)
        for (let s = slot.offset; s < slot.offset + slot.size; s += windowElements)
          spans.push({
            start: s,
            length: Math.min(windowElements, slot.offset + slot.size - s),
            params: slot.params,
            grads: slot.grads,
            storageStart: slot.first + (s - slot.offset),
          });
    }
    const uniformStride = align(UNIFORM_BYTES, device.limits.minUniformBufferOffsetAlignment);
    group.uniforms = device.createBuffer({
      label: `${label} uniforms`,
      size: Math.max(spans.length, 1) * uniformStride,
      usage: GPUBufferUsageFlag.UNIFORM | GPUBufferUsageFlag.COPY_DST,
    });
    group.windows = spans.map(({ start, length, params, grads, storageStart }, w): Window => {
      let firstSlot = 0;
      while (
        firstSlot < group.table.length &&
        group.table[firstSlot]!.offset + group.table[firstSlot]!.size <= start
      )
        firstSlot++;
      let endSlot = firstSlot;
      let coveredTo = start;
      let covered = true;
      while (endSlot < group.table.length && group.table[endSlot]!.offset < start + length) {
        if (group.table[endSlot]!.offset > coveredTo) covered = false;
        coveredTo = group.table[endSlot]!.offset + group.table[endSlot]!.size;
        endSlot++;
      }
      if (coveredTo < start + length) covered = false;
      const access: AccessType = vec4Eligible(storage, start, length, group.table.slice(firstSlot, endSlot))
        ? 'vec4'
        : 'scalar';
      const pipeline = pipelineFor(access);
      const storageBytes = align(length * elementBytes, 4);
      const bindGroup = device.createBindGroup({
        label: `${label} window ${w}`,
        layout: pipeline.layout,
        entries: [
          {
            binding: 0,
            resource: { buffer: group.uniforms, offset: w * uniformStride, size: UNIFORM_BYTES },
          },
          { binding: 1, resource: { buffer: group.segmentTable } },
          {
            binding: 2,
            resource: { buffer: params, offset: storageStart * elementBytes, size: storageBytes },
          },
          {
            binding: 3,
            resource: { buffer: grads, offset: storageStart * elementBytes, size: storageBytes },
          },
          { binding: 4, resource: { buffer: group.momentum, offset: (start - begin) * 4, size: length * 4 } },
          { binding: 5, resource: { buffer: status } },
        ],
      });
      return {
        start,
        length,
        firstSlot,
        endSlot,
        covered,
        pipeline,
        bindGroup,
        dispatch: dispatchSize(
          length,
          options.maxWorkgroups,
          options.workgroupsPerDispatch,
          elementsPerChunk(access),
        ),
      };
    });
  });
}

/** The seven float32 coefficients of the uniform block, from the float64 multipliers, rounded once. */
export function roundedCoefficients(c: FusedCoefficients): Float32Array {
  return Float32Array.of(
    c.bufFromBuf,
    c.bufFromParam,
    c.bufFromGrad,
    c.paramFromParam,
    c.paramFromGrad,
    c.paramFromBuf,
    c.bufFromBuf + c.bufFromParam,
  );
}

const FLOAT32_MIN_NORMAL = 2 ** -126;
const SUBNORMAL_SCALE = 2 ** 64;

/**
 * The uniform block's coefficient words: the seven rounded coefficients (words 0..6), a subnormal
 * one times 2^64 (exact: a power of two), then their scales (words 12..18 of the block): 1, or
 * 2^-64 where the coefficient was scaled. A flush-to-zero device would drop a subnormal coefficient.
 */
export function coefficientWords(c: FusedCoefficients): Float32Array {
  const rounded = roundedCoefficients(c);
  const words = new Float32Array(14);
  rounded.forEach((v, k) => {
    const subnormal = v !== 0 && Math.abs(v) < FLOAT32_MIN_NORMAL;
    words[k] = subnormal ? v * SUBNORMAL_SCALE : v;
    words[7 + k] = subnormal ? 1 / SUBNORMAL_SCALE : 1;
  });
  return words;
}

/** What one step dispatches. */
export interface StepEncoding {
  device: GPUDevice;
  label: string;
  groups: Group[];
  status: GPUBuffer;
  statusRead: GPUBuffer;
  /** Per tensor index: 0 (no gradient), or SEGMENT_ACTIVE with SEGMENT_INITIALISE on its first step. */
  flags: Uint32Array;
  /** Per group: the uniform block's coefficients and their scales (coefficientWords). */
  coefficients: Float32Array[];
  options: StepOptions;
  /** Scan for non-finite gradients before the updates. */
  check: boolean;
}

/**
 * Encodes and submits one step: the segment tables and uniforms of every group with a gradient,
 * the scans (when checking) and then the updates of every window with an active tensor, in one
 * compute pass, and (when checking) the copy of the status words for readStatus.
 */
export function encodeStep(step: StepEncoding): void {
  const { device, label, groups, flags: byIndex, coefficients, options, check } = step;
  const encoder = device.createCommandEncoder({ label: `${label} step` });
  const pass = encoder.beginComputePass({
    label: `${label} step`,
    ...(options.timestampWrites ? { timestampWrites: options.timestampWrites } : {}),
  });
  let current: AccSGDPipeline | null = null;
  const uniformStride = align(UNIFORM_BYTES, device.limits.minUniformBufferOffsetAlignment);
  const status = new Uint32Array(statusWords(groups.length)).fill(STATUS_NONE);
  status[0] = 0;
  // Written every step (also under 'allow', where no scan runs, so the update is never predicated off).
  device.queue.writeBuffer(step.status, 0, status);
  const updates: (() => void)[] = [];
  groups.forEach((group, g) => {
    if (!group.slots.some((slot) => byIndex[slot.index] !== 0)) return;
    if (group.table.length === 0) return;
    const flags = group.table.map((slot) => byIndex[slot.index]!);
    const table = new Uint32Array(group.table.length * SEGMENT_ENTRY_WORDS);
    group.table.forEach((slot, k) => {
      table[k * SEGMENT_ENTRY_WORDS] = slot.offset;
      table[k * SEGMENT_ENTRY_WORDS + 1] = slot.offset + slot.size;
      table[k * SEGMENT_ENTRY_WORDS + 2] = flags[k]!;
    });
    if (!group.lastTable || !sameWords(group.lastTable, table)) {
      device.queue.writeBuffer(group.segmentTable, 0, table);
      group.lastTable = table;
    }
    const uniforms = new ArrayBuffer(group.windows.length * uniformStride);
    group.windows.forEach((window, w) => {
      const floats = new Float32Array(uniforms, w * uniformStride, UNIFORM_WORDS);
      const words = new Uint32Array(uniforms, w * uniformStride, UNIFORM_WORDS);
      floats.set(coefficients[g]!.subarray(0, 7));
      floats.set(coefficients[g]!.subarray(7, 14), 12);
      words[7] = window.start;
      words[8] = window.length;
      words[9] = group.table.length;
      let plain = window.covered;
      for (let k = window.firstSlot; k < window.endSlot && plain; k++) plain = flags[k] === SEGMENT_ACTIVE;
      words[10] = plain ? 0 : 1;
      words[11] = g;
    });
    device.queue.writeBuffer(group.uniforms, 0, uniforms);
    for (const window of group.windows) {
      if (!flags.slice(window.firstSlot, window.endSlot).some((f) => f !== 0)) continue;
      // Scans of every group first (when checking), then the updates, which read their verdict.
      if (check) {
        pass.setPipeline(window.pipeline.scan);
        current = null;
        pass.setBindGroup(0, window.bindGroup);
        pass.dispatchWorkgroups(window.dispatch[0], window.dispatch[1]);
      }
      updates.push(() => {
        if (window.pipeline !== current) {
          current = window.pipeline;
          pass.setPipeline(current.pipeline);
        }
        pass.setBindGroup(0, window.bindGroup);
        pass.dispatchWorkgroups(window.dispatch[0], window.dispatch[1]);
      });
    }
  });
  for (const update of updates) update();
  pass.end();
  if (check) encoder.copyBufferToBuffer(step.status, 0, step.statusRead, 0, status.byteLength);
  device.queue.submit([encoder.finish()]);
}

export function align(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

function sameWords(a: Uint32Array, b: Uint32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
