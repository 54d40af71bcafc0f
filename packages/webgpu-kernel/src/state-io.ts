import {
  AccSGDStateError,
  decodeState,
  encodeState,
  type ImportPlan,
  type ParameterRegistry,
} from '@accsgd/core';
import type { Group, Slot } from './binding-windows.js';
import type { DeviceQueue } from './device-queue.js';
import { AccSGDDeviceError } from './errors.js';
import { STATUS_NONE, type StorageType } from './kernels/accsgd-update.js';
import { describeValue, GPUBufferUsageFlag, GPUMapModeFlag } from './validation.js';

// Moving state between the device and the host: parameters and momentum buffers read back, the
// non-finite scan's verdict, and state files (the registry's snapshot out, its import plan in).

/** Where the optimizer's state lies on the device. */
export interface DeviceState {
  queue: DeviceQueue;
  groups: readonly Group[];
  storage: StorageType;
}

/**
 * Copies the slots' elements of `which` storage to the host: one ranged copy (in chunks) per
 * buffer, so one per group for momentum and flat-form params, one per tensor for list-form params.
 */
export async function readSlots(
  state: DeviceState,
  call: string,
  slots: readonly Slot[],
  which: 'params' | 'momentum',
): Promise<Float32Array[]> {
  const half = which === 'params' && state.storage === 'float16';
  const elementBytes = half ? 2 : 4;
  const out = new Map<Slot, Float32Array>();
  // Each slot's buffer and the element of that buffer where the slot starts.
  const runs = new Map<GPUBuffer, { slot: Slot; at: number }[]>();
  for (const s of slots) {
    if (s.size === 0) {
      out.set(s, new Float32Array(0));
      continue;
    }
    const group = groupOf(state.groups, s);
    const buffer = which === 'params' ? s.params : group.momentum;
    const at = which === 'params' ? s.first : s.offset - group.base;
    const run = runs.get(buffer);
    if (run) run.push({ slot: s, at });
    else runs.set(buffer, [{ slot: s, at }]);
  }
  for (const [buffer, wanted] of runs) {
    const first = wanted.reduce((m, w) => Math.min(m, w.at), Number.POSITIVE_INFINITY);
    const end = wanted.reduce((m, w) => Math.max(m, w.at + w.slot.size), 0);
    const bytes = await state.queue.readBytes(
      call,
      buffer,
      first * elementBytes,
      (end - first) * elementBytes,
    );
    for (const { slot: s, at: position } of wanted) {
      const at = (position - first) * elementBytes;
      const slice = bytes.slice(at, at + s.size * elementBytes);
      out.set(
        s,
        half
          ? halfToFloat(new Uint16Array(slice.buffer, 0, s.size))
          : new Float32Array(slice.buffer, 0, s.size),
      );
    }
  }
  return slots.map((s) => out.get(s)!);
}

/** The first non-finite gradient the step's scan found (first group, lowest element), or null. */
export async function readStatus(
  state: DeviceState,
  call: string,
  staging: GPUBuffer,
): Promise<{ slot: Slot; element: number; value: string } | null> {
  await state.queue.guard(call, staging.mapAsync(GPUMapModeFlag.READ));
  const words = new Uint32Array(staging.getMappedRange().slice(0));
  staging.unmap();
  if (words[0] === 0) return null;
  for (let g = 0; g < state.groups.length; g++) {
    const element = words[1 + g]!;
    if (element === STATUS_NONE) continue;
    const slot = state.groups[g]!.table.find((s) => s.offset <= element && element < s.offset + s.size);
    if (!slot) continue;
    let value = 'non-finite';
    if ((slot.grads.usage & GPUBufferUsageFlag.COPY_SRC) !== 0) {
      const half = state.storage === 'float16';
      const at = slot.first + (element - slot.offset);
      const bytes = await state.queue.readBytes(call, slot.grads, at * (half ? 2 : 4), half ? 2 : 4);
      const copy = bytes.slice();
      value = String(
        half ? halfToFloat(new Uint16Array(copy.buffer, 0, 1))[0] : new Float32Array(copy.buffer, 0, 1)[0],
      );
    }
    return { slot, element: element - slot.offset, value };
  }
  throw new AccSGDDeviceError(
    call,
    'internal',
    'the non-finite scan reported an element of no active tensor',
  );
}

/** The state file of the registry's snapshot, with the momentum buffers read back from the device. */
export async function exportStateFile(state: DeviceState, registry: ParameterRegistry): Promise<Uint8Array> {
  const withBuffer = allSlots(state.groups).filter((s) => registry.hasBuffer(s.index));
  const data = await readSlots(state, 'exportState', withBuffer, 'momentum');
  const byIndex = new Map(withBuffer.map((s, i) => [s.index, data[i]!]));
  return encodeState(registry.snapshot((index) => byIndex.get(index)!));
}

/**
 * Decodes a state file and checks it against the registry (names, shapes, groups, float32
 * multipliers), or throws AccSGDStateError: nothing is written for a bad file.
 */
export function planStateImport(registry: ParameterRegistry, bytes: unknown): ImportPlan {
  // A Uint8Array (or Buffer) itself: a Proxy of one passes instanceof but not ArrayBuffer.isView.
  if (!ArrayBuffer.isView(bytes) || Object.prototype.toString.call(bytes) !== '[object Uint8Array]') {
    throw new AccSGDStateError(
      `importState expects the state file as a Uint8Array (the bytes exportState returned); got ${describeValue(bytes)}`,
    );
  }
  return registry.planImport(decodeState(bytes as Uint8Array));
}

/** Writes a planned import's momentum buffers to the device (the registry commits the rest). */
export function writeImport(state: DeviceState, plan: ImportPlan): void {
  for (const slot of allSlots(state.groups)) {
    const data = plan.buffers[slot.index];
    if (!data || slot.size === 0) continue;
    const group = groupOf(state.groups, slot);
    state.queue.device.queue.writeBuffer(
      group.momentum,
      (slot.offset - group.base) * 4,
      Float32Array.from(data),
    );
  }
}

export function allSlots(groups: readonly Group[]): Slot[] {
  return groups.flatMap((g) => g.slots);
}

function groupOf(groups: readonly Group[], slot: Slot): Group {
  return groups[slot.group]!;
}

/** IEEE 754 binary16 bits to float32 values. */
export function halfToFloat(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i]!;
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    out[i] =
      exponent === 0
        ? sign * 2 ** -14 * (mantissa / 1024)
        : exponent === 31
          ? mantissa === 0
            ? sign * Number.POSITIVE_INFINITY
            : Number.NaN
          : sign * 2 ** (exponent - 15) * (1 + mantissa / 1024);
  }
  return out;
}
