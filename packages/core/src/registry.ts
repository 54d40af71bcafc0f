import { assertFloat32StateGroups, type FusedCoefficients, fusedCoefficients } from './coefficients.js';
import {
  AccSGDConfigError,
  AccSGDError,
  AccSGDGradientError,
  AccSGDStateError,
  describeError,
} from './errors.js';
import {
  HYPERPARAM_NAMES,
  type Hyperparams,
  resolveHyperparams,
  validateHyperparams,
} from './hyperparams.js';
import { describeKind, isPlainObject, readInput, readList } from './input.js';
import { firstRangeOverlap, groupAt, listNames, type MemoryRange } from './lookup.js';
import { shapeProblem } from './safetensors.js';
import { assertStateFits, normalizeState, type OptimizerState, type StateLayout } from './state-file.js';

/** The precision a group computes in; float32 groups also check their float32 multipliers (SPEC §1). */
export type Precision = 'float32' | 'float64';

/** One parameter as an adapter declares it to the registry. */
export interface RegistryParam {
  /** Name in the state file: a non-empty string other than "__proto__" and "__metadata__", unique. Without the key: the parameter's index over all groups ("0", "1", ...); a key present but undefined is an error. */
  name?: unknown;
  /**
   * Shape (read once, validated). Without the key: `[length]`. `null`: not known yet (tfjs names a
   * variable that may not exist yet): set it with `setShape` before the parameter's first step;
   * an import takes a buffer of any shape for it, and the buffer's shape becomes its shape.
   */
  shape?: unknown;
  /** Element count, when the adapter knows it (a typed array's length): the shape must have this many elements. Default: the shape's product. */
  length?: number;
  /** Where the parameter's storage lies (a typed array's ArrayBuffer and byte range, a GPUBuffer and byte range); no two may overlap. Omit for storage the adapter alone owns. */
  storage?: MemoryRange;
  /** What the caller passed, shown in an overlap error ("got Float32Array(4)"). */
  value?: unknown;
}

/** One parameter group as an adapter declares it. */
export interface RegistryGroup {
  /** Complete hyperparameters (an adapter resolves defaults with resolveHyperparams first). */
  hyperparams: Hyperparams;
  /** Default 'float32'. */
  precision?: Precision;
  params: readonly RegistryParam[];
}

export interface RegistryOptions {
  /**
   * The field an AccSGDConfigError names for a parameter's name, shape or storage. Default, as the
   * CPU optimizer's argument: `params[g].names[k]`, `params[g].shapes[k]`, `params[g].params[k]`.
   */
  field?: (group: number, member: number, part: 'names' | 'shapes' | 'params') => string;
}

/** Gradients for one step: aligned with the parameters (an array) or keyed by name (a plain object); null, undefined or a hole means no gradient. */
export type KeyedGradients<G> =
  | readonly (G | null | undefined)[]
  | Readonly<Record<string, G | null | undefined>>;

/** One parameter that has a gradient this step. */
export interface StepWork<G> {
  index: number;
  name: string;
  group: number;
  grad: G;
  /** True on the parameter's first step: its buffer is created from the parameter (SPEC §2 rule 2). */
  first: boolean;
}

/** What a step will do; commit it with `registry.commitStep(plan)` once every value is checked and applied. */
export interface StepPlan<G> {
  /** In parameter order for an array of gradients, in key order for an object. */
  readonly work: readonly StepWork<G>[];
  /** The fused multipliers of every group (SPEC §2.1), in float64, from the hyperparameters at planning time. */
  readonly coefficients: readonly FusedCoefficients[];
  readonly generation: number;
}

/** A checked state import; apply it with `registry.commitImport(plan)`, which cannot fail. */
export interface ImportPlan {
  /** Per parameter index: the buffer to import (its shape checked), or null for none. */
  readonly buffers: readonly (Float32Array | Float64Array | null)[];
  /** Per group: the hyperparameters and step count to take. */
  readonly groups: readonly { hyperparams: Hyperparams; step: number }[];
  /** Per parameter index: the name it had in the state (differs from its own only with `renamed`). */
  readonly savedNames: readonly string[];
  /** Per parameter index: the shape of the buffer to import, or null for none. */
  readonly bufferShapes: readonly (readonly number[] | null)[];
}

export interface ImportOptions {
  /**
   * tfjs-layers' renaming fallback. A parameter whose name has no exact match in its group of the
   * state takes an unmatched saved name of that group with the same base name (the name without a
   * trailing `_<n>`: `dense/kernel_1` matches `dense/kernel`) and the same shape (a saved name
   * without a buffer has no shape and matches on the name alone). Deterministic: parameters in
   * order of their suffix (none, then `_1`, `_2`, ...; then by name), each taking the first such
   * saved name in saved order. O(n log n). A parameter whose shape is not known yet takes only a
   * saved name without a buffer.
   */
  renamed?: boolean;
  /**
   * The shape each parameter's buffer must have, by parameter index, when it is not the registered
   * one (tfjs checks against the variable as it is now); null: any shape. Default: the registered
   * shape, or any shape for a parameter whose shape is not known yet.
   */
  shapes?: (index: number) => readonly number[] | null;
}

/** Stands for a buffer in a plan that restore() builds (commitImport reads only whether there is one). */
const EMPTY = new Float32Array(0);
const RESERVED_NAMES = ['__proto__', '__metadata__'];
const NAME_EXPECTED = 'a non-empty string other than "__proto__" and "__metadata__"';

interface GroupState {
  hyperparams: Hyperparams;
  precision: Precision;
  members: number[];
  step: number;
}

/**
 * The bookkeeping every AccSGD adapter needs, in one place: parameter groups (hyperparameters,
 * precision, step counts), parameters (names, shapes, group membership, which have a momentum
 * buffer), the storage-overlap check, step plans, state export snapshots and import matching.
 * The adapter keeps only its storage and kernels.
 *
 * Every change is planned, then committed: `planStep` / `planImport` check everything they can
 * and change nothing; the adapter then checks its values (lengths, dtypes, finiteness), applies
 * them, and calls `commitStep` / `commitImport`. Calls take effect in the order they are made;
 * adapters with asynchronous steps serialise them with `OrderedCalls`.
 *
 * Parameters discovered lazily (tfjs without `groups`: a variable joins the group on its first
 * gradient) join an existing group with `addParams`, validated as at construction, all or
 * nothing; existing indices and plans stay valid. A parameter whose shape is not known yet (tfjs
 * names variables that may not exist yet, and a restored state can list names whose variables do
 * not exist) is declared with `shape: null`: it waits in the registry, by name, with no buffer,
 * until `setShape` (before its first step) or an import (the buffer's shape) gives it one. A
 * parameter is never removed: an adapter whose set of parameters a state import replaces (tfjs
 * without `groups`) builds a new registry of the state's names, and `restore` takes a state the
 * adapter checked itself (tfjs's getWeights layout).
 */
export class ParameterRegistry {
  private readonly groups: GroupState[] = [];
  private readonly names: string[] = [];
  /** null: not known yet. */
  private readonly shapes: (number[] | null)[] = [];
  private readonly lengths: number[] = [];
  private readonly groupIndex: number[] = [];
  private readonly byName = new Map<string, number>();
  private generation = 0;

  private present: Uint8Array;
  private layout: StateLayout;
  private readonly field: NonNullable<RegistryOptions['field']>;
  /** Every declared storage range, and whose it is (for the overlap check of addParams). */
  private readonly storages: MemoryRange[] = [];
  private readonly owners: { g: number; k: number; value: unknown }[] = [];

  constructor(groups: readonly RegistryGroup[], options: RegistryOptions = {}) {
    this.field = options.field ?? ((g: number, k: number, part: string) => `params[${g}].${part}[${k}]`);
    groups.forEach((input, g) => {
      const precision = input.precision ?? 'float32';
      const read = this.readParams(g, 0, input.params);
      const hyperparams = pickHyperparams(validateHyperparams(input.hyperparams, { precision }));
      this.groups.push({ hyperparams, precision, members: [], step: 0 });
      this.add(g, read);
      for (const p of read) {
        if (p.storage) {
          this.storages.push(p.storage.range);
          this.owners.push(p.storage.owner);
        }
      }
    });
    this.checkOverlap();
    this.present = new Uint8Array(this.names.length);
    this.layout = this.makeLayout();
  }

  /**
   * Adds parameters to an existing group after construction, after its current members (their
   * indices follow every existing parameter's; existing indices, and plans made before, stay
   * valid). For adapters that discover parameters lazily (tfjs without `groups`: a variable joins
   * the group on its first gradient). Validated as the constructor validates: names (unique over
   * every group, default: the parameter's index), shapes, and storage that overlaps no other
   * parameter's; the error's field names member `members(group).length + k` of the group. All or
   * nothing: AccSGDConfigError and nothing added. The new parameters have no buffer yet. Returns
   * their indices.
   */
  addParams(group: number, params: readonly RegistryParam[]): number[] {
    const members = groupAt(this.groups, group).members;
    const read = this.readParams(group, members.length, params);
    const before = this.storages.length;
    try {
      for (const p of read) {
        if (p.storage) {
          this.storages.push(p.storage.range);
          this.owners.push(p.storage.owner);
        }
      }
      this.checkOverlap();
    } catch (error) {
      this.storages.length = before;
      this.owners.length = before;
      throw error;
    }
    const first = this.names.length;
    this.add(group, read);
    const present = new Uint8Array(this.names.length);
    present.set(this.present);
    this.present = present;
    this.layout = this.makeLayout();
    return read.map((_, k) => first + k);
  }

  /** Validates parameters for group `g`, their member positions from `k0`; changes nothing. */
  private readParams(g: number, k0: number, params: readonly RegistryParam[]) {
    const field = this.field;
    const taken = new Set<string>();
    return params.map((param, j) => {
      const k = k0 + j;
      const index = this.names.length + j;
      const name = Object.hasOwn(param, 'name') ? param.name : String(index);
      if (typeof name !== 'string' || name.length === 0 || RESERVED_NAMES.includes(name))
        throw new AccSGDConfigError(field(g, k, 'names'), name, NAME_EXPECTED);
      if (this.byName.has(name) || taken.has(name))
        throw new AccSGDConfigError(field(g, k, 'names'), name, 'a unique name');
      taken.add(name);
      const shapeField = field(g, k, 'shapes');
      const length = param.length;
      if (length === undefined && Object.hasOwn(param, 'shape') && param.shape === null)
        return { name, shape: null, elements: Number.NaN, storage: this.storageOf(param, g, k) };
      const shape =
        !Object.hasOwn(param, 'shape') && length !== undefined
          ? [length]
          : readInput(shapeField, () => readList(param.shape));
      const whose = length === undefined ? '' : ` whose product is ${length}`;
      if (shape === undefined || shapeProblem(shape, undefined) !== undefined)
        throw new AccSGDConfigError(shapeField, param.shape, `an array of integers >= 0${whose}`);
      const elements = (shape as number[]).reduce((a, b) => a * b, 1);
      if (length !== undefined && elements !== length)
        throw new AccSGDConfigError(shapeField, shape, `a shape of ${length} elements`);
      return {
        name,
        shape: [...(shape as number[])] as number[] | null,
        elements,
        storage: this.storageOf(param, g, k),
      };
    });
  }

  private storageOf(param: RegistryParam, g: number, k: number) {
    return param.storage ? { range: param.storage, owner: { g, k, value: param.value } } : undefined;
  }

  /** Records validated parameters as members of group `g`. */
  private add(g: number, read: ReturnType<ParameterRegistry['readParams']>): void {
    for (const p of read) {
      const index = this.names.length;
      this.names.push(p.name);
      this.shapes.push(p.shape);
      this.lengths.push(p.elements);
      this.groupIndex.push(g);
      this.byName.set(p.name, index);
      this.groups[g]!.members.push(index);
    }
  }

  /** Two views of the same memory would be updated twice per step, each reading the other's half-written values. */
  private checkOverlap(): void {
    const overlap = firstRangeOverlap(this.storages);
    if (!overlap) return;
    const field = this.field;
    const [a, b] = [this.owners[overlap[0]]!, this.owners[overlap[1]]!];
    throw new AccSGDConfigError(
      field(b.g, b.k, 'params'),
      b.value,
      'memory of its own',
      `overlaps the memory of ${field(a.g, a.k, 'params')} (two views of the same buffer); each parameter needs memory of its own`,
    );
  }

  /** The member names of each group (the shapes are filled in per import). */
  private makeLayout(): StateLayout {
    return {
      groups: this.groups.map((g) => ({ params: g.members.map((i) => this.names[i]!) })),
      shapes: new Map(),
    };
  }

  /** Number of parameters (over all groups). */
  get size(): number {
    return this.names.length;
  }

  /** Number of groups. */
  get groupCount(): number {
    return this.groups.length;
  }

  /** Parameter names in index order (the order gradients are aligned to). */
  get paramNames(): string[] {
    return [...this.names];
  }

  /** The groups' hyperparameters, member names and step counts (copies). */
  get paramGroups(): { hyperparams: Hyperparams; params: string[]; step: number }[] {
    return this.groups.map((g) => ({
      hyperparams: { ...g.hyperparams },
      params: g.members.map((i) => this.names[i]!),
      step: g.step,
    }));
  }

  /** A parameter's index, by index or name; AccSGDConfigError listing what exists. */
  indexOf(param: number | string): number {
    const found =
      typeof param === 'string'
        ? this.byName.get(param)
        : Number.isInteger(param) && param >= 0 && param < this.names.length
          ? param
          : undefined;
    if (found === undefined) {
      throw new AccSGDConfigError(
        'param',
        param,
        `an index in [0, ${this.names.length - 1}] or one of the names ${listNames(this.names)}`,
      );
    }
    return found;
  }

  /** A parameter's index by name, or undefined where no parameter has it (indexOf throws instead). */
  find(name: string): number | undefined {
    return this.byName.get(name);
  }

  name(index: number): string {
    return this.names[index]!;
  }

  /** The parameter's shape (a copy); `[]` for one declared with `shape: null` whose shape is not known yet (see hasShape). */
  shape(index: number): number[] {
    return [...(this.shapes[index] ?? [])];
  }

  /** Whether the parameter's shape is known: declared, set with setShape, or taken from an imported buffer. */
  hasShape(index: number): boolean {
    return this.shapes[index] !== null;
  }

  /** The parameter's element count (the shape's product); NaN while its shape is not known. */
  length(index: number): number {
    return this.lengths[index]!;
  }

  /**
   * Sets the shape of a parameter (one declared with `shape: null` once it exists, or one an
   * adapter re-created with another shape): AccSGDConfigError for an invalid shape, and
   * AccSGDStateError, changing nothing, where the parameter has a buffer of another shape.
   */
  setShape(index: number, shape: readonly number[]): void {
    const i = this.indexOf(index);
    const read = readInput('shape', () => readList(shape));
    if (read === undefined || shapeProblem(read, undefined) !== undefined)
      throw new AccSGDConfigError('shape', shape, 'an array of integers >= 0');
    const known = this.shapes[i] ?? null;
    const same = known !== null && known.length === read.length && known.every((d, j) => d === read[j]);
    if (same) return;
    if (this.present[i] === 1)
      throw new AccSGDStateError(
        `parameter "${this.names[i]}" has a momentum buffer of shape [${known?.join(', ')}]; its shape cannot become [${read.join(', ')}]`,
      );
    this.shapes[i] = [...(read as number[])];
    this.lengths[i] = (read as number[]).reduce((a, b) => a * b, 1);
  }

  /** Forgets every momentum buffer (an adapter that freed them); hyperparameters and step counts stay. */
  clearBuffers(): void {
    this.generation++;
    this.present.fill(0);
  }

  /** The group the parameter belongs to. */
  groupOf(index: number): number {
    return this.groupIndex[index]!;
  }

  /** Whether the parameter has a momentum buffer (it has had a gradient, or an import gave it one). */
  hasBuffer(index: number): boolean {
    return this.present[index] === 1;
  }

  /** The member indices of a group (a copy); AccSGDConfigError for a bad group index. */
  members(group: number): number[] {
    return [...groupAt(this.groups, group).members];
  }

  /** A group's hyperparameters (a copy). */
  hyperparams(group: number): Hyperparams {
    return { ...groupAt(this.groups, group).hyperparams };
  }

  precision(group: number): Precision {
    return groupAt(this.groups, group).precision;
  }

  /** A group's step count: the applied steps in which at least one member had a gradient. */
  step(group: number): number {
    return groupAt(this.groups, group).step;
  }

  /** Sets the learning rate of one group, or of every group; all or nothing. Takes effect next step. */
  setLearningRate(lr: number, group?: number): void {
    const targets = group === undefined ? this.groups : [groupAt(this.groups, group)];
    const updated = targets.map((g) =>
      validateHyperparams({ ...g.hyperparams, lr }, { precision: g.precision }),
    );
    targets.forEach((g, i) => {
      g.hyperparams = pickHyperparams(updated[i]!);
    });
  }

  /**
   * Changes any hyperparameters of one group, or of every group (a schedule, say); unknown keys
   * and invalid values are AccSGDConfigError, all or nothing. Takes effect next step.
   */
  setHyperparams(changes: Partial<Hyperparams>, group?: number): void {
    const targets = group === undefined ? this.groups : [groupAt(this.groups, group)];
    const updated = targets.map((g) =>
      validateHyperparams(resolveHyperparams(changes, g.hyperparams), { precision: g.precision }),
    );
    targets.forEach((g, i) => {
      g.hyperparams = pickHyperparams(updated[i]!);
    });
  }

  /**
   * Reads the gradients' container once and plans the step: AccSGDGradientError for an array of
   * the wrong length, a name no parameter has, anything but an array or a plain object, or a
   * getter or Proxy trap that throws. Changes nothing. The adapter then checks each gradient's
   * value (length or shape, dtype, finiteness), applies the update, and commits.
   */
  planStep<G>(grads: KeyedGradients<G>): StepPlan<G> {
    const work: StepWork<G>[] = [];
    const add = (index: number, grad: unknown) => {
      if (grad == null) return;
      work.push({
        index,
        name: this.names[index]!,
        group: this.groupIndex[index]!,
        grad: grad as G,
        first: this.present[index] === 0,
      });
    };
    try {
      if (Array.isArray(grads)) {
        if (grads.length !== this.names.length) {
          throw new AccSGDGradientError(
            undefined,
            `expected ${this.names.length} gradients (one per parameter, null for none), got ${grads.length}`,
          );
        }
        for (let i = 0; i < this.names.length; i++) add(i, grads[i]);
      } else if (isPlainObject(grads)) {
        // Keys usually come in parameter order: the parameter after the last one found is tried
        // before the name map (names are unique, so a match is the index the map would give).
        let next = 0;
        for (const name of Object.keys(grads)) {
          const index = this.names[next] === name ? next : this.byName.get(name);
          if (index === undefined)
            throw new AccSGDGradientError(
              name,
              `no parameter has this name (parameters: ${listNames(this.names)})`,
            );
          next = index + 1;
          add(index, (grads as Record<string, unknown>)[name]);
        }
      } else {
        throw new AccSGDGradientError(
          undefined,
          `expected an array of gradients aligned with the parameters or a plain object keyed by parameter name, got ${describeKind(grads)}`,
        );
      }
    } catch (error) {
      if (error instanceof AccSGDError) throw error;
      throw new AccSGDGradientError(undefined, `the gradients could not be read (${describeError(error)})`);
    }
    // A step count past 2^53 - 1 is no longer exact, and no state file could record it: refuse
    // the step that would take a group there, before the adapter changes anything.
    for (const { group } of work)
      if (this.groups[group]!.step >= Number.MAX_SAFE_INTEGER)
        throw new AccSGDStateError(
          `group ${group} has taken ${this.groups[group]!.step} steps, the most a step count can hold exactly (Number.MAX_SAFE_INTEGER = 2^53 - 1) and a state file can record; expected a group with fewer steps (import a state with a smaller step count)`,
        );
    const coefficients = this.groups.map((g) => fusedCoefficients(g.hyperparams));
    return { work, coefficients, generation: this.generation };
  }

  /**
   * Records an applied step: every parameter in the plan has a buffer now, and each group with
   * at least one of them counts one more step. Throws AccSGDStateError, changing nothing, for a
   * plan made before another step or import was committed (the adapter did not serialise them).
   */
  commitStep(plan: StepPlan<unknown>): void {
    if (plan.generation !== this.generation)
      throw new AccSGDStateError(
        'a step was committed after another step or state import took effect since it was planned; calls must take effect in the order they are made',
      );
    for (const { index, name } of plan.work)
      if (this.shapes[index] === null)
        throw new AccSGDStateError(
          `parameter "${name}" has no shape yet (declared with shape: null); expected setShape() before its first step`,
        );
    this.generation++;
    const touched = new Set<number>();
    for (const { index, group } of plan.work) {
      this.present[index] = 1;
      touched.add(group);
    }
    for (const g of touched) this.groups[g]!.step++;
  }

  /**
   * The state as a record (for encodeState): groups with their hyperparameters, member names and
   * step counts; a buffer for every parameter that has one, read with `readBuffer(index)` (its
   * data is not copied). Take it between steps (see OrderedCalls) for a consistent snapshot.
   */
  snapshot(readBuffer: (index: number) => Float32Array | Float64Array): OptimizerState {
    const buffers = new Map<string, { shape: number[]; data: Float32Array | Float64Array }>();
    for (let i = 0; i < this.names.length; i++)
      if (this.present[i] === 1) buffers.set(this.names[i]!, { shape: this.shape(i), data: readBuffer(i) });
    return { groups: this.paramGroups, buffers };
  }

  /**
   * Checks a state record against the registry and plans the import, or throws AccSGDStateError
   * and changes nothing: the record must be valid (normalizeState), have as many groups, the same
   * member names per group (after the `renamed` fallback), buffer shapes equal to the parameters'
   * shapes, and, for float32 groups, hyperparameters whose float32 multipliers fit (SPEC §1).
   * The adapter then checks the buffers' values (finiteness) and copies them, and commits.
   */
  planImport(input: OptimizerState, options: ImportOptions = {}): ImportPlan {
    let state = normalizeState(input);
    let saved: Map<string, string> | undefined;
    if (options.renamed === true && state.groups.length === this.groups.length) {
      saved = this.matchRenamed(state);
      state = renameState(state, saved);
    }
    const shapes = new Map<string, number[]>();
    this.names.forEach((name, i) => {
      const expected = options.shapes ? options.shapes(i) : this.shapes[i]!;
      const shape = expected ?? state.buffers.get(name)?.shape;
      if (shape) shapes.set(name, [...shape]);
    });
    state = assertStateFits(state, { groups: this.layout.groups, shapes });
    assertFloat32StateGroups(state.groups, (i) => this.groups[i]!.precision === 'float32');
    const savedOf = new Map<string, string>();
    if (saved) for (const [from, to] of saved) savedOf.set(to, from);
    return {
      buffers: this.names.map((name) => state.buffers.get(name)?.data ?? null),
      groups: state.groups.map((g) => ({ hyperparams: pickHyperparams(g.hyperparams), step: g.step })),
      savedNames: this.names.map((name) => savedOf.get(name) ?? name),
      bufferShapes: this.names.map((name) => state.buffers.get(name)?.shape ?? null),
    };
  }

  /**
   * Applies a planned import: hyperparameters, step counts, which parameters have a buffer, and
   * the shape of each imported buffer as its parameter's shape. Cannot fail.
   */
  commitImport(plan: ImportPlan): void {
    this.generation++;
    plan.bufferShapes.forEach((shape, i) => {
      if (shape === null) return;
      this.shapes[i] = [...shape];
      this.lengths[i] = shape.reduce((a, b) => a * b, 1);
    });
    plan.groups.forEach((g, i) => {
      this.groups[i]!.hyperparams = { ...g.hyperparams };
      this.groups[i]!.step = g.step;
    });
    plan.buffers.forEach((b, i) => {
      this.present[i] = b === null ? 0 : 1;
    });
  }

  /**
   * Takes a state the adapter has checked itself and has no state file to plan from (tfjs's
   * getWeights layout): per group its hyperparameters and step count, per parameter the shape of
   * its buffer or null for none (the adapter has checked it against the parameter as it is now;
   * it becomes the parameter's shape). Checked first, all or nothing: AccSGDStateError for a wrong
   * number of groups or parameters, a step that is not an integer >= 0, hyperparameters invalid
   * for the group's precision, or an invalid shape. Then applied as commitImport applies a plan.
   */
  restore(
    groups: readonly { hyperparams: Hyperparams; step: number }[],
    bufferShapes: readonly (readonly number[] | null)[],
  ): void {
    if (groups.length !== this.groups.length || bufferShapes.length !== this.names.length)
      throw new AccSGDStateError(
        `expected ${this.groups.length} group(s) and ${this.names.length} buffer shape(s), got ${groups.length} and ${bufferShapes.length}`,
      );
    const checked = groups.map((g, i) => {
      if (!Number.isSafeInteger(g.step) || g.step < 0)
        throw new AccSGDStateError(`group ${i}: step must be an integer >= 0, got ${String(g.step)}`);
      try {
        const hyperparams = validateHyperparams(g.hyperparams, { precision: this.groups[i]!.precision });
        return { hyperparams: pickHyperparams(hyperparams), step: g.step };
      } catch (error) {
        if (error instanceof AccSGDConfigError) throw new AccSGDStateError(`group ${i}: ${error.message}`);
        throw error;
      }
    });
    bufferShapes.forEach((shape, i) => {
      if (shape !== null && shapeProblem(shape, undefined) !== undefined)
        throw new AccSGDStateError(`buffer "${this.names[i]}": shape [${shape.join(', ')}] is not a shape`);
    });
    this.commitImport({
      buffers: bufferShapes.map((shape) => (shape === null ? null : EMPTY)),
      groups: checked,
      savedNames: [...this.names],
      bufferShapes,
    });
  }

  /** Saved name -> parameter name, for the saved names that match a parameter only under renaming. */
  private matchRenamed(state: OptimizerState): Map<string, string> {
    const result = new Map<string, string>();
    state.groups.forEach((savedGroup, g) => {
      const members = this.groups[g]!.members;
      const mine = new Set(members.map((i) => this.names[i]!));
      const savedSet = new Set(savedGroup.params);
      const unmatched = members.filter((i) => !savedSet.has(this.names[i]!));
      if (unmatched.length === 0) return;
      // Unmatched saved names by (base name, shape), each list in saved order.
      const queues = new Map<string, { names: string[]; at: number; order: number[] }>();
      savedGroup.params.forEach((name, order) => {
        if (mine.has(name)) return;
        const buffer = state.buffers.get(name);
        const key = matchKey(baseName(name), buffer ? buffer.shape : null);
        let queue = queues.get(key);
        if (!queue) {
          queue = { names: [], at: 0, order: [] };
          queues.set(key, queue);
        }
        queue.names.push(name);
        queue.order.push(order);
      });
      const ordered = unmatched
        .map((i) => ({ i, suffix: suffixOf(this.names[i]!), name: this.names[i]! }))
        .sort((a, b) => a.suffix - b.suffix || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const { i, name } of ordered) {
        const base = baseName(name);
        const withShape = queues.get(matchKey(base, this.shapes[i] ?? null));
        const unshaped = queues.get(matchKey(base, null));
        const head = (q: typeof withShape) => (q && q.at < q.names.length ? q.order[q.at]! : Infinity);
        const queue = head(withShape) <= head(unshaped) ? withShape : unshaped;
        if (!queue || head(queue) === Infinity) continue;
        result.set(queue.names[queue.at]!, name);
        queue.at++;
      }
    });
    return result;
  }
}

/** The five hyperparameters alone (a caller's object may carry more keys). */
function pickHyperparams(h: Hyperparams): Hyperparams {
  const out = {} as Hyperparams;
  for (const name of HYPERPARAM_NAMES) out[name] = h[name];
  return out;
}

/** tfjs-layers makes a variable name unique by appending `_<n>`; this strips it. */
function baseName(name: string): string {
  return name.replace(/_\d+$/, '');
}

/** The `<n>` of a trailing `_<n>`, or -1 without one. */
function suffixOf(name: string): number {
  const match = /_(\d+)$/.exec(name);
  return match ? Number(match[1]) : -1;
}

function matchKey(base: string, shape: readonly number[] | null): string {
  return `${shape === null ? '*' : shape.join(',')}\u0000${base}`;
}

/** The state with saved names replaced as `rename` says (group members and buffer keys). */
function renameState(state: OptimizerState, rename: ReadonlyMap<string, string>): OptimizerState {
  if (rename.size === 0) return state;
  const to = (name: string) => rename.get(name) ?? name;
  const buffers = new Map<string, { shape: number[]; data: Float32Array | Float64Array }>();
  for (const [name, buffer] of state.buffers) buffers.set(to(name), buffer);
  return {
    groups: state.groups.map((g) => ({ hyperparams: g.hyperparams, params: g.params.map(to), step: g.step })),
    buffers,
  };
}
