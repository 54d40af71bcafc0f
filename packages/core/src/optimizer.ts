import { ParameterArena } from './arena.js';
import { fusedCoefficients } from './coefficients.js';
import { AccSGDConfigError, AccSGDGradientError } from './errors.js';
import { type FloatArray, firstNonFinite, fusedUpdate } from './fused-update.js';
import {
  type Hyperparams,
  type HyperparamsInput,
  resolveHyperparams,
  validateHyperparams,
} from './hyperparams.js';
import { groupAt, paramAt } from './lookup.js';
import { type NonFinitePolicy, nonFinitePolicy, rejectNonFinite } from './non-finite.js';
import { product } from './safetensors.js';
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
    this.nonFinite = nonFinitePolicy(options.nonFinite);
    if (options.arena !== undefined && !(options.arena instanceof ParameterArena)) {
      throw new AccSGDConfigError('arena', options.arena, 'a ParameterArena');
    }
    this.arena = options.arena;
    const base = resolveHyperparams(defaults);
    if (!Array.isArray(params) || params.length === 0) {
      throw new AccSGDConfigError(
        'params',
        params,
        'a non-empty array of Float32Array/Float64Array or of parameter groups',
      );
    }
    const groupInputs: ParamGroupInput[] = isFloatArray(params[0])
      ? [{ params: params as FloatArray[] }]
      : (params as ParamGroupInput[]);
    this.groups = [];
    this.slots = [];
    this.byName = new Map();
    const seen = new Set<FloatArray>();
    groupInputs.forEach((input, g) => {
      if (typeof input !== 'object' || input === null || !Array.isArray(input.params)) {
        throw new AccSGDConfigError(
          `params[${g}]`,
          input,
          'a Float32Array/Float64Array or a group { params: [...] }',
        );
      }
      const { params: members, names, shapes, ...hyper } = input;
      const hyperparams = resolveHyperparams(hyper, base, GROUP_EXTRA_KEYS);
      const group: Group = { hyperparams, slots: [], step: 0 };
      members.forEach((param, k) => {
        if (!isFloatArray(param)) {
          throw new AccSGDConfigError(`params[${g}].params[${k}]`, param, 'a Float32Array or Float64Array');
        }
        if (seen.has(param))
          throw new AccSGDConfigError(
            `params[${g}].params[${k}]`,
            'the same array',
            'each parameter once',
            'appears in more than one place',
          );
        seen.add(param);
        const name = names?.[k] ?? String(this.slots.length);
        if (this.byName.has(name))
          throw new AccSGDConfigError(`params[${g}].names[${k}]`, name, 'a unique name');
        const shape = shapes?.[k] ?? [param.length];
        if (product(shape) !== param.length) {
          throw new AccSGDConfigError(
            `params[${g}].shapes[${k}]`,
            shape,
            `a shape of ${param.length} elements`,
          );
        }
        const slot: Slot = { name, shape: [...shape], param, buffer: null, storage: null, group: g };
        group.slots.push(slot);
        this.slots.push(slot);
        this.byName.set(name, slot);
      });
      this.groups.push(group);
    });
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
    const updated = targets.map((g) => validateHyperparams({ ...g.hyperparams, lr }));
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
   * One optimizer step. `grads` is aligned with the parameters (array) or keyed by name (record);
   * a null or missing gradient skips that parameter, leaving its buffer untouched.
   */
  step(grads: Gradients): StepResult {
    const work: { slot: Slot; grad: FloatArray }[] = [];
    if (Array.isArray(grads)) {
      if (grads.length !== this.slots.length) {
        throw new AccSGDGradientError(
          undefined,
          `expected ${this.slots.length} gradients (one per parameter, null for none), got ${grads.length}`,
        );
      }
      grads.forEach((grad, i) => {
        if (grad != null) work.push({ slot: this.slots[i]!, grad });
      });
    } else if (typeof grads === 'object' && grads !== null) {
      for (const [name, grad] of Object.entries(grads as Record<string, FloatArray | null | undefined>)) {
        const slot = this.byName.get(name);
        if (!slot)
          throw new AccSGDGradientError(
            name,
            `no parameter has this name (parameters: ${this.paramNames.join(', ')})`,
          );
        if (grad != null) work.push({ slot, grad });
      }
    } else {
      throw new AccSGDGradientError(
        undefined,
        `expected an array or a record of gradients, got ${typeof grads}`,
      );
    }
    for (const { slot, grad } of work) {
      if (!isFloatArray(grad))
        throw new AccSGDGradientError(
          slot.name,
          `expected a Float32Array or Float64Array, got ${describe(grad)}`,
        );
      if (grad.length !== slot.param.length) {
        throw new AccSGDGradientError(
          slot.name,
          `has ${grad.length} elements; the parameter has ${slot.param.length}`,
        );
      }
    }
    if (this.nonFinite !== 'allow') {
      for (const { slot, grad } of work) {
        // A float64 gradient for a float32 parameter is rounded to float32 first, so it must be
        // finite after rounding too (1e39 is finite but rounds to infinity).
        const bad =
          slot.param instanceof Float32Array && grad instanceof Float64Array
            ? firstNonFinite(Float32Array.from(grad))
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
      if (initialise) slot.buffer = this.storageFor(slot);
      fusedUpdate(slot.param, grad, slot.buffer!, coefficients[slot.group]!, initialise);
      touched.add(slot.group);
    }
    for (const g of touched) this.groups[g]!.step++;
    return { applied: true };
  }

  /** The state file (safetensors): buffers in their own precision, groups in the metadata. */
  exportState(): Uint8Array {
    return encodeState(this.snapshot());
  }

  /** Replaces buffers, hyperparameters and step counts from a state file, or changes nothing and throws. */
  importState(bytes: Uint8Array): void {
    const state = decodeState(bytes);
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

  applyState(state: OptimizerState): void {
    assertStateFits(state, {
      groups: this.groups.map((g) => ({ params: g.slots.map((s) => s.name) })),
      shapes: new Map(this.slots.map((s) => [s.name, s.shape])),
    });
    // Everything is checked; from here on nothing can fail, so the import is all-or-nothing.
    state.groups.forEach((g, i) => {
      this.groups[i]!.hyperparams = { ...g.hyperparams };
      this.groups[i]!.step = g.step;
    });
    for (const slot of this.slots) {
      const stored = state.buffers.get(slot.name);
      slot.buffer = stored ? this.storageFor(slot) : null;
      slot.buffer?.set(stored!.data); // float64 into float32 rounds once
    }
  }

  /** The slot's buffer memory: in the arena when there is room, else on the heap; never fails. */
  private storageFor(slot: Slot): FloatArray {
    if (!slot.storage) {
      const n = slot.param.length;
      slot.storage =
        slot.param instanceof Float64Array
          ? new Float64Array(n)
          : (this.arena?.tryFloat32(n) ?? new Float32Array(n));
    }
    return slot.storage;
  }
}

function isFloatArray(value: unknown): value is FloatArray {
  return value instanceof Float32Array || value instanceof Float64Array;
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'object') return (value as object).constructor?.name ?? 'object';
  return typeof value;
}
