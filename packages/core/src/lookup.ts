import { AccSGDConfigError } from './errors.js';

/** The parameter group at `index`; throws AccSGDConfigError naming the valid range. Shared by every adapter. */
export function groupAt<T>(groups: readonly T[], index: number): T {
  const group = Number.isInteger(index) ? groups[index] : undefined;
  if (group === undefined)
    throw new AccSGDConfigError('group', index, `an integer in [0, ${groups.length - 1}]`);
  return group;
}

/** A parameter by position or by name; throws AccSGDConfigError listing what exists. */
export function paramAt<T>(params: readonly T[], byName: ReadonlyMap<string, T>, param: number | string): T {
  const found =
    typeof param === 'string' ? byName.get(param) : Number.isInteger(param) ? params[param] : undefined;
  if (found === undefined) {
    throw new AccSGDConfigError(
      'param',
      param,
      `an index in [0, ${params.length - 1}] or one of the names ${listNames([...byName.keys()])}`,
    );
  }
  return found;
}

/** Names for a message: the first 20, then how many more (a model may have 100,000). */
export function listNames(names: readonly string[], max = 20): string {
  const shown = names.slice(0, max).join(', ');
  return names.length > max ? `${shown}, … (${names.length - max} more)` : shown;
}

// The typed-array intrinsics, read once: a hostile array can shadow `length` or `buffer` with an
// own property, and a Proxy of a Float32Array passes `instanceof` but has no typed-array slots.
const TypedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object;
const intrinsic = (key: string | symbol) =>
  Object.getOwnPropertyDescriptor(TypedArrayPrototype, key)!.get! as (this: unknown) => unknown;
const tagGetter = intrinsic(Symbol.toStringTag);
const lengthGetter = intrinsic('length');
const byteOffsetGetter = intrinsic('byteOffset');
const byteLengthGetter = intrinsic('byteLength');
const bufferGetter = intrinsic('buffer');
const resizableGetter = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, 'resizable')?.get;
const growableGetter =
  typeof SharedArrayBuffer === 'function'
    ? Object.getOwnPropertyDescriptor(SharedArrayBuffer.prototype, 'growable')?.get
    : undefined;
const SHADOWED = ['length', 'byteOffset', 'byteLength', 'buffer', 'BYTES_PER_ELEMENT', 'constructor'];

/** The typed-array kind of a value ("Float32Array", ...), or undefined for anything else (a Proxy too). */
export function typedArrayName(value: unknown): string | undefined {
  return typedArrayTag(value);
}
function typedArrayTag(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  return tagGetter.call(value) as string | undefined;
}

/**
 * Whether `value` is a genuine Float32Array or Float64Array: its internal kind, its prototype chain
 * and its visible properties all agree (no Proxy, no array posing as another kind through
 * setPrototypeOf, no own `length` or `buffer` that would lie to the update loop).
 */
export function isGenuineFloatArray(value: unknown): value is Float32Array | Float64Array {
  const tag = typedArrayTag(value);
  if (tag === 'Float32Array') {
    if (!(value instanceof Float32Array) || value instanceof Float64Array) return false;
  } else if (tag === 'Float64Array') {
    if (!(value instanceof Float64Array) || value instanceof Float32Array) return false;
  } else return false;
  return SHADOWED.every((key) => !Object.hasOwn(value, key));
}

/** Elements the typed array views now (0 once its buffer is detached). */
export function typedLength(value: ArrayBufferView): number {
  return lengthGetter.call(value) as number;
}

/** Where a typed array's memory lies: its buffer and byte range, read through the intrinsics. */
export function memoryOf(value: ArrayBufferView): { buffer: ArrayBufferLike; begin: number; end: number } {
  const begin = byteOffsetGetter.call(value) as number;
  return {
    buffer: bufferGetter.call(value) as ArrayBufferLike,
    begin,
    end: begin + (byteLengthGetter.call(value) as number),
  };
}

/** Whether the array's buffer can change size (a resizable ArrayBuffer or growable SharedArrayBuffer). */
export function hasResizableBuffer(value: ArrayBufferView): boolean {
  const buffer = bufferGetter.call(value) as object;
  if (resizableGetter && buffer instanceof ArrayBuffer && resizableGetter.call(buffer) === true) return true;
  return (
    growableGetter !== undefined &&
    typeof SharedArrayBuffer === 'function' &&
    buffer instanceof SharedArrayBuffer &&
    growableGetter.call(buffer) === true
  );
}

/** A byte range [begin, end) of some storage: an ArrayBuffer, a GPUBuffer, anything compared by identity. */
export interface MemoryRange {
  resource: unknown;
  begin: number;
  end: number;
}

/** Where a typed array's memory lies, as a MemoryRange (its ArrayBuffer and byte range). */
export function rangeOf(value: ArrayBufferView): MemoryRange {
  const m = memoryOf(value);
  return { resource: m.buffer, begin: m.begin, end: m.end };
}

/**
 * The first pair of arrays whose memory overlaps (same buffer, intersecting byte ranges), as
 * indices into `arrays`, or undefined. Sorts by (buffer, offset): O(n log n). Empty arrays overlap
 * nothing.
 */
export function firstOverlap(arrays: readonly ArrayBufferView[]): [number, number] | undefined {
  return firstRangeOverlap(arrays.map(rangeOf));
}

/** Numbers the distinct resources of `ranges` in order of appearance. */
function resourceIds(ranges: readonly MemoryRange[]): number[] {
  const ids = new Map<unknown, number>();
  return ranges.map((r) => {
    let id = ids.get(r.resource);
    if (id === undefined) {
      id = ids.size;
      ids.set(r.resource, id);
    }
    return id;
  });
}

/**
 * The first pair of ranges that overlap (same resource, intersecting byte ranges), as indices
 * [lower, higher] into `ranges`, or undefined. O(n log n); empty ranges overlap nothing.
 */
export function firstRangeOverlap(ranges: readonly MemoryRange[]): [number, number] | undefined {
  const ids = resourceIds(ranges);
  const sorted = ranges
    .map((r, index) => ({ id: ids[index]!, begin: r.begin, end: r.end, index }))
    .filter((r) => r.end > r.begin);
  sorted.sort((a, b) => a.id - b.id || a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < sorted.length; i++) {
    const previous = sorted[i - 1]!;
    const current = sorted[i]!;
    // Sorted by start, and non-empty: when neighbours do not overlap, ends increase too, so
    // checking neighbours is enough.
    if (previous.id === current.id && current.begin < previous.end) {
      return [Math.min(previous.index, current.index), Math.max(previous.index, current.index)];
    }
  }
  return undefined;
}

/**
 * The first pair [probe, owned] (indices into the two lists) whose ranges overlap, or undefined.
 * Probes may overlap each other and owned ranges may overlap each other; only a probe against an
 * owned range counts (a gradient against a parameter or a momentum buffer). One sort of the ranges
 * on resources that some probe lives on, then one sweep: O((n + m) log(n + m)).
 */
export function firstCrossOverlap(
  probes: readonly MemoryRange[],
  owned: readonly MemoryRange[],
): [number, number] | undefined {
  if (probes.length === 0) return undefined;
  const onProbed = new Set(probes.map((p) => p.resource));
  type Entry = { id: number; begin: number; end: number; index: number; probe: boolean };
  const all = [...probes, ...owned];
  const ids = resourceIds(all);
  const entries: Entry[] = [];
  all.forEach((r, i) => {
    if (r.end <= r.begin || !onProbed.has(r.resource)) return;
    const probe = i < probes.length;
    entries.push({ id: ids[i]!, begin: r.begin, end: r.end, index: probe ? i : i - probes.length, probe });
  });
  entries.sort((a, b) => a.id - b.id || a.begin - b.begin);
  let ownedSoFar: Entry | undefined;
  let probeSoFar: Entry | undefined;
  for (const entry of entries) {
    if (ownedSoFar && ownedSoFar.id !== entry.id) ownedSoFar = undefined;
    if (probeSoFar && probeSoFar.id !== entry.id) probeSoFar = undefined;
    const other = entry.probe ? ownedSoFar : probeSoFar;
    if (other && entry.begin < other.end)
      return entry.probe ? [entry.index, other.index] : [other.index, entry.index];
    if (entry.probe) {
      if (!probeSoFar || entry.end > probeSoFar.end) probeSoFar = entry;
    } else if (!ownedSoFar || entry.end > ownedSoFar.end) ownedSoFar = entry;
  }
  return undefined;
}
