import { ParameterArena } from './arena.js';
import { assertFloat32StateGroups, fusedCoefficients } from './coefficients.js';
import {
  AccSGDConfigError,
  AccSGDError,
  AccSGDGradientError,
  AccSGDStateError,
  describeError,
} from './errors.js';
import { type FloatArray, firstNonFinite, fusedUpdate } from './fused-update.js';
import {
  type Hyperparams,
  type HyperparamsInput,
  resolveHyperparams,
  validateHyperparams,
} from './hyperparams.js';
import {
  firstOverlap,
  groupAt,
  hasResizableBuffer,
  isGenuineFloatArray,
  listNames,
  memoryOf,
  paramAt,
  typedArrayName,
  typedLength,
} from './lookup.js';
import { type NonFinitePolicy, nonFinitePolicy, rejectNonFinite } from './non-finite.js';
import { type SafetensorsLimits, shapeProblem } from './safetensors.js';
import { assertStateFits, decodeState, encodeState, type OptimizerState } from './state-file.js';

export interface ParamGroupInput extends Partial<Hyperparams> {
  params: FloatArray[];
  /** Names for the state file; default: the parameter's index over all groups ("0", "1", ...), as in PyTorch. */
  names?: string[];
  /** Shapes, checked against state files; default: [length]. */
  shapes?: number[][];
}

export interface AccSGDOptions {
  nonFinite?: NonFinitePolicy;
  /**
   * Where to allocate float32 momentum buffers. With parameters and gradients in the same arena
   * the update runs in place, without copies. Buffers that do not fit go to the ordinary heap.
   */
  arena?: ParameterArena;
}

export type Gradients =
  | readonly (FloatArray | null | undefined)[]
  | Readonly<Record<string, FloatArray | null | undefined>>;

export type StepResult = { applied: true } | { applied: false; reason: string };

interface Slot {
  name: string;
  shape: number[];
  /** The parameter's length at construction; checked again before every write. */
  length: number;
  param: FloatArray;
  /** The momentum buffer, or null before the parameter's first step. */
  buffer: FloatArray | null;
  /** Memory for the buffer, allocated once and kept when a state import removes the buffer. */
  storage: FloatArray | null;
  group: number;
}

interface Group {
  hyperparams: Hyperparams;
  slots: Slot[];
  step: number;
}

const GROUP_EXTRA_KEYS = ['params', 'names', 'shapes'];

/**
 * AccSGD on the CPU, over Float32Array / Float64Array parameters updated in place.
 *
 *   const opt = new AccSGD(params, { lr: 0.1, kappa: 1000, xi: 10 });
 *   opt.step(grads);            // grads aligned with params; null = no gradient this step
 *
 * Per group, with largeLr = lr*kappa/smallConst, alpha = 1 - smallConst^2*xi/kappa, beta = 1 - alpha,
 * zeta = smallConst/(smallConst + beta), and for each parameter p with gradient g:
 *   g   <- g + weightDecay * p
 *   buf <- p                                 (first step of p only)
 *   buf <- beta * ((1/beta - 1) * buf - largeLr * g + p)
 *   p   <- zeta * (p - lr * g) + (1 - zeta) * buf
 * computed as one fused pass per tensor. A step is atomic: every gradient is checked before any
 * parameter changes.
 */
export class AccSGD {
  readonly nonFinite: NonFinitePolicy;
  private readonly arena: ParameterArena | undefined;
  private readonly groups: Group[];
  private readonly slots: Slot[];
  private readonly byName: Map<string, Slot>;

  constructor(
    params: FloatArray[] | ParamGroupInput[],
    defaults: HyperparamsInput,
    options: AccSGDOptions = {},
  ) {
    // Every argument is read once, inside readInput: a getter or Proxy trap that throws becomes an
    // AccSGDConfigError, and one that answers differently on a second read cannot matter.
    const opts = readInput('options', () => readOptions(options));
    this.nonFinite = nonFinitePolicy(opts.nonFinite);
    if (opts.arena !== undefined && !readInput('arena', () => opts.arena instanceof ParameterArena)) {
      throw new AccSGDConfigError('arena', opts.arena, 'a ParameterArena');
    }
    this.arena = opts.arena;
    const base = resolveHyperparams(readInput('defaults', () => readRecord('defaults', defaults)));
    const list = readInput('params', () => readList(params));
    if (list === undefined || list.length === 0) {
      throw new AccSGDConfigError(
        'params',
        params,
        'a non-empty array of Float32Array/Float64Array or of parameter groups',
      );
    }
    const groupInputs = isGenuineFloatArray(list[0]) ? [{ params: list }] : list;
    this.groups = [];
    this.slots = [];
    this.byName = new Map();
    const seen = new Set<FloatArray>();
    const labels: string[] = [];
    groupInputs.forEach((input, g) => {
      const read = readInput(`params[${g}]`, () => readGroup(input, `params[${g}]`));
      if (read === undefined) {
        throw new AccSGDConfigError(
          `params[${g}]`,
          input,
          'a Float32Array/Float64Array or a group { params: [...] }',
        );
      }
      const { params: members, names, shapes, hyper } = read;
      const hyperparams = resolveHyperparams(hyper, base, GROUP_EXTRA_KEYS);
      if (names !== undefined && names.length !== members.length) {
        throw new AccSGDConfigError(
          `params[${g}].names`,
          names,
          `an array of ${members.length} names (one per parameter)`,
        );
      }
      if (shapes !== undefined && shapes.length !== members.length) {
        throw new AccSGDConfigError(
          `params[${g}].shapes`,
          shapes,
          `an array of ${members.length} shapes (one per parameter)`,
        );
      }
      const group: Group = { hyperparams, slots: [], step: 0 };
      members.forEach((param, k) => {
        const field = `params[${g}].params[${k}]`;
        if (!isGenuineFloatArray(param)) {
          throw new AccSGDConfigError(field, param, 'a Float32Array or Float64Array');
        }
        if (seen.has(param))
          throw new AccSGDConfigError(
            field,
            'the same array',
            'each parameter once',
            'appears in more than one place',
          );
        seen.add(param);
        if (hasResizableBuffer(param)) {
          throw new AccSGDConfigError(
            field,
            param,
            'an array over a fixed-length ArrayBuffer',
            'is over a resizable ArrayBuffer or growable SharedArrayBuffer, whose size could change under the optimizer; use a fixed-length buffer',
          );
        }
        const name = names === undefined ? String(this.slots.length) : names[k];
        const nameProblem = checkName(name);
        if (nameProblem !== undefined)
          throw new AccSGDConfigError(`params[${g}].names[${k}]`, name, nameProblem);
        if (this.byName.has(name as string))
          throw new AccSGDConfigError(`params[${g}].names[${k}]`, name, 'a unique name');
        const length = typedLength(param);
        const rawShape =
          shapes === undefined ? [length] : readInput(`params[${g}].shapes[${k}]`, () => readList(shapes[k]));
        const problem = shapeProblem(rawShape, undefined);
        if (problem !== undefined || rawShape === undefined) {
          throw new AccSGDConfigError(
            `params[${g}].shapes[${k}]`,
            shapes?.[k],
            `an array of integers >= 0 whose product is ${length}`,
          );
        }
        const shape = rawShape as number[];
        if (shape.reduce((a, b) => a * b, 1) !== length) {
          throw new AccSGDConfigError(`params[${g}].shapes[${k}]`, shape, `a shape of ${length} elements`);
        }
        const slot: Slot = {
          name: name as string,
          shape: [...shape],
          length,
          param,
          buffer: null,
          storage: null,
          group: g,
        };
        group.slots.push(slot);
        this.slots.push(slot);
        this.byName.set(slot.name, slot);
        labels.push(field);
      });
      validateHyperparams(hyperparams, { precision: precisionOf(group) }); // SPEC §1: float32 multipliers
      this.groups.push(group);
    });
    // Two views of the same memory would be updated twice per step, each reading the other's
    // half-written values.
    const overlap = firstOverlap(this.slots.map((s) => s.param));
    if (overlap) {
      throw new AccSGDConfigError(
        labels[overlap[1]]!,
        this.slots[overlap[1]]!.param,
        'memory of its own',
        `overlaps the memory of ${labels[overlap[0]]} (two views of the same buffer); each parameter needs memory of its own`,
      );
    }
  }

  /** The groups' resolved hyperparameters, member names and step counts (copies). */
  get paramGroups(): { hyperparams: Hyperparams; params: string[]; step: number }[] {
    return this.groups.map((g) => ({
      hyperparams: { ...g.hyperparams },
      params: g.slots.map((s) => s.name),
      step: g.step,
    }));
  }

  /** Parameter names in step order (the order gradients are aligned to). */
  get paramNames(): string[] {
    return this.slots.map((s) => s.name);
  }

  /** Sets the learning rate of one group, or of every group when `group` is omitted. Takes effect next step. */
  setLearningRate(lr: number, group?: number): void {
    const targets = group === undefined ? this.groups : [groupAt(this.groups, group)];
    const updated = targets.map((g) =>
      validateHyperparams({ ...g.hyperparams, lr }, { precision: precisionOf(g) }),
    );
    targets.forEach((g, i) => {
      g.hyperparams = updated[i]!;
    });
  }

  /**
   * The momentum buffer of a parameter (by index or name): a live view, or null before its first
   * step. Steps and state imports write into the same array.
   */
  buffer(param: number | string): FloatArray | null {
    return paramAt(this.slots, this.byName, param).buffer;
  }

  /**
   * One optimizer step. `grads` is aligned with the parameters (an array; a hole, null or
   * undefined means no gradient) or keyed by name (a plain object); a null or missing gradient
   * skips that parameter, leaving its buffer untouched. Anything else (a Map, a Set, a typed array,
   * a class instance) is an AccSGDGradientError, and so is a gradient that is not a genuine
   * Float32Array/Float64Array of the parameter's length or whose memory overlaps a parameter's or a
   * momentum buffer's. A parameter whose memory was detached or resized since construction is an
   * AccSGDConfigError. All of it is checked before anything changes.
   */
  step(grads: Gradients): StepResult {
    const work = this.readGradients(grads);
    for (const { slot, grad } of work) {
      if (!isGenuineFloatArray(grad))
        throw new AccSGDGradientError(
          slot.name,
          `expected a Float32Array or Float64Array, got ${describe(grad)}`,
        );
      const length = typedLength(grad);
      if (length !== slot.length) {
        throw new AccSGDGradientError(slot.name, `has ${length} elements; the parameter has ${slot.length}`);
      }
    }
    this.assertMemoryIntact(work.map((w) => w.slot));
    // Buffers for first steps are allocated now, before the overlap check (a gradient could view
    // arena memory that the buffer is about to take); allocating changes nothing visible.
    const storage = this.allocateStorage(work.map((w) => w.slot).filter((slot) => slot.buffer === null));
    this.assertNoAliasing(work, storage);
    if (this.nonFinite !== 'allow') {
      for (const { slot, grad } of work) {
        // A float64 gradient for a float32 parameter is rounded to float32 first, so it must be
        // finite after rounding too (1e39 is finite but rounds to infinity). new Float32Array(typed
        // array) copies through the internal slots, calling no user code (Float32Array.from would
        // call the array's iterator).
        const bad =
          slot.param instanceof Float32Array && grad instanceof Float64Array
            ? firstNonFinite(new Float32Array(grad))
            : firstNonFinite(grad);
        if (bad < 0) continue;
        const value = Number.isFinite(grad[bad]) ? `${grad[bad]}, which overflows float32` : `${grad[bad]}`;
        return rejectNonFinite(this.nonFinite, slot.name, bad, value);
      }
    }
    const coefficients = this.groups.map((g) => fusedCoefficients(g.hyperparams));
    const touched = new Set<number>();
    for (const { slot, grad } of work) {
      const initialise = slot.buffer === null;
      if (initialise) slot.buffer = storage.get(slot)!;
      fusedUpdate(slot.param, grad, slot.buffer!, coefficients[slot.group]!, initialise);
      touched.add(slot.group);
    }
    for (const g of touched) this.groups[g]!.step++;
    return { applied: true };
  }

  /** The gradients, read once into (slot, gradient) pairs; AccSGDGradientError for a bad container. */
  private readGradients(grads: unknown): { slot: Slot; grad: FloatArray }[] {
    const work: { slot: Slot; grad: FloatArray }[] = [];
    const entries: [Slot, unknown][] = [];
    try {
      if (Array.isArray(grads)) {
        if (grads.length !== this.slots.length) {
          throw new AccSGDGradientError(
            undefined,
            `expected ${this.slots.length} gradients (one per parameter, null for none), got ${grads.length}`,
          );
        }
        for (let i = 0; i < this.slots.length; i++) entries.push([this.slots[i]!, grads[i]]);
      } else if (isPlainObject(grads)) {
        for (const name of Object.keys(grads)) {
          const slot = this.byName.get(name);
          if (!slot)
            throw new AccSGDGradientError(
              name,
              `no parameter has this name (parameters: ${listNames(this.paramNames)})`,
            );
          entries.push([slot, (grads as Record<string, unknown>)[name]]);
        }
      } else {
        throw new AccSGDGradientError(
          undefined,
          `expected an array of gradients aligned with the parameters or a plain object keyed by parameter name, got ${describe(grads)}`,
        );
      }
    } catch (error) {
      if (error instanceof AccSGDError) throw error;
      throw new AccSGDGradientError(undefined, `the gradients could not be read (${describeError(error)})`);
    }
    for (const [slot, grad] of entries) if (grad != null) work.push({ slot, grad: grad as FloatArray });
    return work;
  }

  /**
   * AccSGDConfigError unless every parameter in `slots` (and its momentum buffer, if any) still
   * views as many elements as at construction: `buffer.transfer()`, structuredClone with transfer,
   * or growing a WebAssembly memory detaches an array, leaving it empty.
   */
  private assertMemoryIntact(slots: readonly Slot[]): void {
    for (const slot of slots) {
      const length = typedLength(slot.param);
      if (length !== slot.length) {
        throw new AccSGDConfigError(
          `parameter "${slot.name}"`,
          slot.param,
          `${slot.length} elements, as at construction`,
          `now has ${length} elements where it had ${slot.length} (its buffer was detached or resized after construction)`,
        );
      }
      if (slot.buffer !== null && typedLength(slot.buffer) !== slot.length) {
        throw new AccSGDConfigError(
          `parameter "${slot.name}"`,
          slot.buffer,
          `a momentum buffer of ${slot.length} elements`,
          `has lost its momentum buffer's memory (the arena's memory was detached)`,
        );
      }
    }
  }

  /**
   * AccSGDGradientError if a gradient's memory overlaps any parameter's or momentum buffer's: the
   * fused update would read gradient values it has already overwritten. (PyTorch likewise never
   * lets p.grad alias p.) O((n + m) log(n + m)); gradients may overlap each other (they are only read).
   */
  private assertNoAliasing(
    work: readonly { slot: Slot; grad: FloatArray }[],
    storage: ReadonlyMap<Slot, FloatArray>,
  ): void {
    if (work.length === 0) return;
    const gradBuffers = new Set(work.map((w) => memoryOf(w.grad).buffer));
    // One sort of every range in a buffer that some gradient lives in (the rest cannot overlap),
    // then one sweep that remembers the furthest-reaching parameter/buffer and gradient so far.
    type Range = { id: number; begin: number; end: number; label: string; grad: Slot | null };
    const ids = new Map<ArrayBufferLike, number>();
    const ranges: Range[] = [];
    const add = (view: ArrayBufferView, label: string, grad: Slot | null) => {
      const m = memoryOf(view);
      if (m.end <= m.begin || !gradBuffers.has(m.buffer)) return;
      let id = ids.get(m.buffer);
      if (id === undefined) {
        id = ids.size;
        ids.set(m.buffer, id);
      }
      ranges.push({ id, begin: m.begin, end: m.end, label, grad });
    };
    for (const { slot, grad } of work) add(grad, '', slot);
    for (const slot of this.slots) {
      add(slot.param, `parameter "${slot.name}"`, null);
      const buffer = slot.buffer ?? storage.get(slot);
      if (buffer) add(buffer, `the momentum buffer of parameter "${slot.name}"`, null);
    }
    ranges.sort((a, b) => a.id - b.id || a.begin - b.begin);
    let owned: Range | undefined;
    let gradient: Range | undefined;
    for (const range of ranges) {
      if (owned && owned.id !== range.id) owned = undefined;
      if (gradient && gradient.id !== range.id) gradient = undefined;
      const other = range.grad ? owned : gradient;
      if (other && range.begin < other.end) {
        const [g, o] = range.grad ? [range, other] : [other, range];
        throw new AccSGDGradientError(
          g.grad!.name,
          `its memory overlaps ${o.label}; a gradient needs memory of its own`,
        );
      }
      if (range.grad) {
        if (!gradient || range.end > gradient.end) gradient = range;
      } else if (!owned || range.end > owned.end) owned = range;
    }
  }

  /** Momentum-buffer memory for `slots`, allocated before anything changes. */
  private allocateStorage(slots: readonly Slot[]): Map<Slot, FloatArray> {
    const storage = new Map<Slot, FloatArray>();
    for (const slot of slots) storage.set(slot, this.storageFor(slot));
    return storage;
  }

  /**
   * The state file (safetensors): buffers in their own precision, groups in the metadata. Throws
   * AccSGDStateError when the file would exceed `limits` (default: the reader's default limits, so
   * that importState reads back whatever exportState writes); pass the same limits to both.
   */
  exportState(limits?: SafetensorsLimits): Uint8Array {
    return encodeState(this.snapshot(), limits);
  }

  /**
   * Replaces buffers, hyperparameters and step counts from a state file, or changes nothing and
   * throws. `limits` bounds the file (as decodeState); see applyState for the rules on values.
   */
  importState(bytes: Uint8Array, limits?: SafetensorsLimits): void {
    const state = decodeState(bytes, limits);
    this.applyState(state);
  }

  /** The state as a record, for adapters that build on this class. */
  snapshot(): OptimizerState {
    const buffers = new Map<string, { shape: number[]; data: FloatArray }>();
    for (const slot of this.slots)
      if (slot.buffer) buffers.set(slot.name, { shape: [...slot.shape], data: slot.buffer });
    return {
      groups: this.groups.map((g) => ({
        hyperparams: { ...g.hyperparams },
        params: g.slots.map((s) => s.name),
        step: g.step,
      })),
      buffers,
    };
  }

  /**
   * Replaces buffers, hyperparameters and step counts from a state record (as decodeState returns),
   * or throws AccSGDStateError and changes nothing. The record must be valid (assertStateFits) and
   * fit this optimizer. Unless the nonFinite policy is 'allow', every buffer value must be finite,
   * after rounding to float32 when a float64 buffer goes into a float32 parameter (1e39 overflows):
   * a NaN or infinite buffer would poison every later step.
   */
  applyState(input: OptimizerState): void {
    const state = assertStateFits(input, {
      groups: this.groups.map((g) => ({ params: g.slots.map((s) => s.name) })),
      shapes: new Map(this.slots.map((s) => [s.name, s.shape])),
    });
    assertFloat32StateGroups(state.groups, (i) => precisionOf(this.groups[i]!) === 'float32'); // SPEC §1
    const incoming: { slot: Slot; data: FloatArray }[] = [];
    for (const slot of this.slots) {
      const stored = state.buffers.get(slot.name);
      if (stored) incoming.push({ slot, data: stored.data });
    }
    if (this.nonFinite !== 'allow') {
      for (const { slot, data } of incoming) {
        const narrowed = slot.param instanceof Float32Array && data instanceof Float64Array;
        const bad = narrowed ? firstNonFinite(new Float32Array(data)) : firstNonFinite(data);
        if (bad < 0) continue;
        const value = Number.isFinite(data[bad]) ? `${data[bad]}, which overflows float32` : `${data[bad]}`;
        throw new AccSGDStateError(
          `buffer "${slot.name}.momentum_buffer": element ${bad} is ${value} (non-finite buffers are rejected unless the nonFinite option is 'allow')`,
        );
      }
    }
    // (Buffer memory detached since, say by growing the arena's memory, is replaced here.)
    const storage = this.allocateStorage(incoming.map((i) => i.slot));
    // Everything is checked; from here on nothing can fail, so the import is all-or-nothing.
    state.groups.forEach((g, i) => {
      this.groups[i]!.hyperparams = { ...g.hyperparams };
      this.groups[i]!.step = g.step;
    });
    for (const slot of this.slots) slot.buffer = null;
    for (const { slot, data } of incoming) {
      slot.buffer = storage.get(slot)!;
      slot.buffer.set(data); // float64 into float32 rounds once
    }
  }

  /**
   * The slot's buffer memory: in the arena when there is room, else on the heap; never fails
   * (memory that was detached since is replaced).
   */
  private storageFor(slot: Slot): FloatArray {
    if (!slot.storage || typedLength(slot.storage) !== slot.length) {
      const n = slot.length;
      let storage: FloatArray | null = null;
      if (slot.param instanceof Float32Array && this.arena) {
        try {
          storage = this.arena.tryFloat32(n);
        } catch {
          storage = null;
        }
        if (storage !== null && (typedArrayName(storage) !== 'Float32Array' || typedLength(storage) !== n))
          storage = null;
      }
      slot.storage =
        storage ?? (slot.param instanceof Float64Array ? new Float64Array(n) : new Float32Array(n));
    }
    return slot.storage;
  }
}

/** What a value is, for a message: "Array", "Map", "Int8Array", "number"; never throws. */
function describe(value: unknown): string {
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

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Runs `read`; anything but an AccSGDError it throws (a getter, a Proxy trap) becomes AccSGDConfigError. */
function readInput<T>(field: string, read: () => T): T {
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
function readList(value: unknown): unknown[] | undefined {
  if (!Array.isArray(value)) return undefined;
  if (!(value.length <= MAX_ITEMS)) return undefined;
  const out: unknown[] = [];
  for (let i = 0; i < value.length; i++) out.push(value[i]);
  return out;
}

/** A prototype-free copy of an object's own enumerable properties; AccSGDConfigError for a non-object. */
function readRecord(field: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || ArrayBuffer.isView(value))
    throw new AccSGDConfigError(field, value, 'an object');
  const out: Record<string, unknown> = Object.create(null);
  for (const key of Object.keys(value)) out[key] = (value as Record<string, unknown>)[key];
  return out;
}

const OPTION_KEYS = ['nonFinite', 'arena'];

function readOptions(options: unknown): AccSGDOptions {
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
function readGroup(
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

const RESERVED_NAMES = ['__proto__', '__metadata__'];

/** Why `name` cannot name a parameter, or undefined when it can. */
function checkName(name: unknown): string | undefined {
  const expected = 'a non-empty string other than "__proto__" and "__metadata__"';
  if (typeof name !== 'string' || name.length === 0 || RESERVED_NAMES.includes(name)) return expected;
  return undefined;
}

/** float32 when the group holds a Float32Array: its multipliers must then fit float32 (SPEC §1). */
function precisionOf(group: Group): 'float32' | 'float64' {
  return group.slots.some((s) => s.param instanceof Float32Array) ? 'float32' : 'float64';
}
