import {
  AccSGDConfigError,
  AccSGDError,
  AccSGDGradientError,
  AccSGDStateError,
  assertFloat32StateGroups,
  assertStateFits,
  decodeState,
  encodeState,
  fusedCoefficientArray,
  groupAt,
  type Hyperparams,
  type NonFinitePolicy,
  nonFinitePolicy,
  type OptimizerState,
  rejectNonFinite,
  resolveHyperparams,
  type StepResult,
  validateHyperparams,
} from '@accsgd/core';
import {
  engine,
  keep,
  type NamedTensorMap,
  Optimizer,
  reshape,
  scalar,
  serialization,
  Tensor,
  tensor,
  type Variable,
} from '@tensorflow/tfjs-core';
import {
  ACCSGD_UPDATE,
  type CoefficientArray,
  compositeFirstNonFinite,
  compositeFirstNonFiniteAsync,
  compositeUpdate,
  gpuScanners,
  hasFusedKernel,
  locateNonFinite,
  memoryScanners,
  registerAccSGDKernels,
} from './kernels/index.js';

/** tfjs-core's NamedTensor, which its index does not re-export. */
export interface NamedTensor {
  name: string;
  tensor: Tensor;
}

/** A learning rate as a function of the optimizer's iteration count (0 on the first step). */
export type LearningRateSchedule = (iteration: number) => number;

type OtherHyperparams = Partial<Omit<Hyperparams, 'lr'>>;

/** A parameter group: variables (by name) that share hyperparameters. Omitted ones are inherited. */
export interface AccSGDGroupConfig extends OtherHyperparams {
  /** Names of the tf.Variables in this group. */
  params: string[];
  /** Names these variables have in the state file and in getWeights(); default: the variable names. */
  names?: string[];
  lr?: number | LearningRateSchedule;
}

export interface AccSGDConfig extends OtherHyperparams {
  /** Short step, as for plain SGD; or a schedule giving it per iteration. */
  lr: number | LearningRateSchedule;
  /** NaN or infinity in a gradient: 'error' (default) rejects the step, 'skip-step' ignores it, 'allow' applies it. */
  nonFinite?: NonFinitePolicy;
  /**
   * Parameter groups. Without it, every variable the optimizer is given joins one group with the
   * top-level hyperparameters. With it, every variable must be listed in a group, and the
   * top-level hyperparameters are the defaults the groups inherit.
   */
  groups?: AccSGDGroupConfig[];
  /** Use the backend's fused 'AccSGDUpdate' kernel when it has one (default true); false: tfjs ops. */
  fused?: boolean;
}

/** Suffix of buffer names in getWeights(), after tfjs's `<variable>/momentum`, `<variable>/m`. */
export const BUFFER_WEIGHT_SUFFIX = '/momentum_buffer';

/** One momentum buffer, or the place for one. */
interface Entry {
  /** Name in the state file and in getWeights(). */
  stateName: string;
  /** The tf.Variable it belongs to; null while a restored buffer waits for its variable. */
  variableName: string | null;
  group: number;
  buffer: Variable | null;
}

/**
 * A call that takes effect in its turn (applyGradientsAsync, setWeights, exportState, getWeights).
 * Calls take effect in the order they are made: the queue runs one at a time, and a synchronous
 * call (applyGradients, setLearningRate, importState, dispose) first completes the queued ones.
 */
interface QueuedCall {
  /** Reads back what the call needs (asynchronously). */
  prepare(): Promise<unknown>;
  /** The same, synchronously; false where this platform cannot read back synchronously. */
  canPrepareSync(): boolean;
  prepareSync(): unknown;
  /** Takes effect; synchronous, and a typed error thrown here has changed nothing. */
  commit(prepared: unknown): unknown;
  /** Frees what the call kept (its clones of the caller's tensors). */
  release(): void;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

interface Group {
  hyperparams: Hyperparams;
  schedule: LearningRateSchedule | null;
  /** Steps in which at least one member had a gradient (the state file's step). */
  step: number;
}

const CONFIG_KEYS = ['lr', 'kappa', 'xi', 'smallConst', 'weightDecay', 'nonFinite', 'groups', 'fused'];
const GROUP_KEYS = ['lr', 'kappa', 'xi', 'smallConst', 'weightDecay', 'params', 'names'];

/**
 * AccSGD (Jain, Kakade, Kidambi, Netrapalli, Sidford 2017) as a tf.Optimizer.
 *
 * Per group, with largeLr = lr*kappa/smallConst, beta = smallConst^2*xi/kappa,
 * zeta = smallConst/(smallConst + beta), and for each variable p with gradient g:
 *
 *   g   <- g + weightDecay * p
 *   buf <- p                                  (first step of p only)
 *   buf <- beta * ((1/beta - 1) * buf - largeLr * g + p)
 *   p   <- zeta * (p - lr * g) + (1 - zeta) * buf
 *
 * The six multipliers of the fused form come from @accsgd/core in float64; each step is one
 * 'AccSGDUpdate' kernel per variable (fused on cpu, wasm, webgl, webgpu; tfjs ops elsewhere).
 * Buffers are non-trainable variables created on a variable's first step and tracked by variable
 * name. A step is atomic: every gradient is checked before any variable changes.
 */
export class AccSGDOptimizer extends Optimizer {
  /** The name tf.serialization and tfjs-layers know this class by. */
  static readonly className = 'AccSGD';

  readonly nonFinite: NonFinitePolicy;
  readonly fused: boolean;
  /** What the last applyGradients call did ('skip-step' reports skipped steps here). */
  lastStep: StepResult = { applied: true };

  private readonly defaults: Hyperparams;
  private readonly defaultSchedule: LearningRateSchedule | null;
  private readonly explicitGroups: boolean;
  private readonly groupConfigs: AccSGDGroupConfig[];
  private groups: Group[];
  /** In creation order, which is the order of getWeights() and of the state file. */
  private entries: Entry[] = [];
  private readonly byVariable = new Map<string, Entry>();
  /** Every entry by its state name (unique). */
  private readonly byState = new Map<string, Entry>();
  /** Calls waiting for their turn, in call order (see QueuedCall). */
  private readonly queue: QueuedCall[] = [];
  private driving = false;

  constructor(config: AccSGDConfig) {
    super();
    // A plain copy, read once: a getter or Proxy trap that throws is an AccSGDConfigError.
    config = readConfig(config) as AccSGDConfig;
    if (typeof config !== 'object' || config === null)
      throw new AccSGDConfigError('config', config, 'an object { lr, ... }');
    for (const key of Object.keys(config)) {
      if (!CONFIG_KEYS.includes(key))
        throw new AccSGDConfigError(
          key,
          (config as unknown as Record<string, unknown>)[key],
          `one of ${CONFIG_KEYS.join(', ')}`,
          `is not an AccSGD option (expected one of ${CONFIG_KEYS.join(', ')})`,
        );
    }
    const { lr, nonFinite, groups, fused = true, ...others } = config;
    this.nonFinite = nonFinitePolicy(nonFinite);
    if (typeof fused !== 'boolean') throw new AccSGDConfigError('fused', fused, 'true or false');
    this.fused = fused;
    this.defaultSchedule = typeof lr === 'function' ? lr : null;
    this.defaults = resolveHyperparams({ ...others, lr: scheduledLr(lr, 0, 'lr') });
    this.explicitGroups = groups !== undefined;
    this.groupConfigs = groups ?? [];
    if (!this.explicitGroups) {
      // tfjs variables are float32: the multipliers must fit float32 (SPEC §1).
      this.groups = [
        {
          hyperparams: validateHyperparams({ ...this.defaults }, F32),
          schedule: this.defaultSchedule,
          step: 0,
        },
      ];
    } else {
      if (!Array.isArray(groups) || groups.length === 0)
        throw new AccSGDConfigError('groups', groups, 'a non-empty array of { params: [...names] }');
      const stateNames = new Set<string>();
      this.groups = groups.map((group, g) => {
        if (typeof group !== 'object' || group === null || !Array.isArray(group.params)) {
          throw new AccSGDConfigError(`groups[${g}]`, group, '{ params: [variable names], ... }');
        }
        const { params, names, lr: groupLr, ...hyper } = group;
        const schedule =
          typeof groupLr === 'function' ? groupLr : groupLr === undefined ? this.defaultSchedule : null;
        const lrNow = groupLr === undefined ? this.defaults.lr : scheduledLr(groupLr, 0, `groups[${g}].lr`);
        const hyperparams = validateHyperparams(
          resolveHyperparams({ ...hyper, lr: lrNow }, this.defaults, GROUP_KEYS),
          F32,
        );
        if (names !== undefined && (!Array.isArray(names) || names.length !== params.length)) {
          throw new AccSGDConfigError(
            `groups[${g}].names`,
            names,
            `an array of ${params.length} names, one per variable`,
          );
        }
        params.forEach((variableName, k) => {
          const stateName = names?.[k] ?? variableName;
          if (typeof variableName !== 'string')
            throw new AccSGDConfigError(`groups[${g}].params[${k}]`, variableName, 'a variable name');
          if (typeof stateName !== 'string')
            throw new AccSGDConfigError(`groups[${g}].names[${k}]`, stateName, 'a string');
          if (this.byVariable.has(variableName))
            throw new AccSGDConfigError(
              `groups[${g}].params[${k}]`,
              variableName,
              'each variable in one group only',
              'is listed twice',
            );
          if (stateNames.has(stateName))
            throw new AccSGDConfigError(`groups[${g}].names[${k}]`, stateName, 'a unique name');
          stateNames.add(stateName);
          const entry: Entry = { stateName, variableName, group: g, buffer: null };
          this.entries.push(entry);
          this.byVariable.set(variableName, entry);
        });
        return { hyperparams, schedule, step: 0 };
      });
    }
    this.reindex();
    registerAccSGDKernels();
  }

  /** Rebuilds the name lookups from `entries`. */
  private reindex(): void {
    this.byVariable.clear();
    this.byState.clear();
    for (const e of this.entries) {
      if (e.variableName !== null) this.byVariable.set(e.variableName, e);
      this.byState.set(e.stateName, e);
    }
  }

  /** The resolved hyperparameters, member names and step count of each group (copies). */
  get paramGroups(): { hyperparams: Hyperparams; params: string[]; step: number }[] {
    return this.groups.map((g, i) => ({
      hyperparams: { ...g.hyperparams },
      params: this.entries.filter((e) => e.group === i).map((e) => e.stateName),
      step: g.step,
    }));
  }

  /**
   * Sets the learning rate of one group, or of every group when `group` is omitted: a number, or
   * a schedule called with the iteration count before each step. Takes effect next step.
   */
  setLearningRate(lr: number | LearningRateSchedule, group?: number): void {
    const targets = group === undefined ? this.groups : [groupAt(this.groups, group)];
    // Checked first (no queued call changes kappa, xi or smallConst); then the calls made before
    // this one take effect, so that a step called earlier uses the learning rate it was called with.
    const updated =
      typeof lr === 'function'
        ? null
        : targets.map((g) => validateHyperparams({ ...g.hyperparams, lr }, F32));
    this.drain('setLearningRate');
    if (updated === null) {
      for (const g of targets) g.schedule = lr as LearningRateSchedule;
      return;
    }
    targets.forEach((g, i) => {
      g.hyperparams = updated[i]!;
      g.schedule = null;
    });
  }

  /** The momentum buffer of a variable, or null before its first step. */
  momentumBuffer(variableName: string): Variable | null {
    return this.byVariable.get(variableName)?.buffer ?? null;
  }

  /**
   * One step (tfjs's synchronous optimizer API, used by minimize() and model.fit()). With the
   * default nonFinite policy the gradients are checked for NaN/infinity first: a direct scan on
   * cpu and wasm, one WGSL dispatch per gradient on webgpu, tfjs ops elsewhere, then one
   * synchronous read-back. Where the platform has no
   * synchronous GPU read-back (tfjs-backend-webgpu in Node), use applyGradientsAsync() or
   * nonFinite: 'allow'.
   */
  override applyGradients(variableGradients: NamedTensorMap | NamedTensor[]): void {
    this.drain('applyGradients');
    const work = this.readGradients(variableGradients, true);
    const found = this.nonFinite === 'allow' ? null : findNonFinite(work.map((w) => w.grad));
    const bad = found && { ...found, value: work[found.tensor]!.grad.dataSync()[found.element]! };
    this.settle(this.plan(work), bad);
  }

  /**
   * The same step as applyGradients(), with the non-finite check read back asynchronously: the
   * way to step on GPU backends without stalling, and the only way to check gradients on
   * tfjs-backend-webgpu in Node.
   *
   * The step takes effect in call order: after the optimizer calls made before it, before those
   * made after it (a setLearningRate() made while it is pending applies from the next step on).
   * Its hyperparameters (and a schedule's learning rate) are those in force when it takes effect.
   * A call that was accepted completes: it keeps its gradients (aliases sharing their storage), so
   * disposing them while it is pending changes nothing, as with a PyTorch step, which has read
   * `.grad` by the time it returns.
   */
  async applyGradientsAsync(variableGradients: NamedTensorMap | NamedTensor[]): Promise<void> {
    if (this.queue.length === 0 && (this.nonFinite === 'allow' || memoryScanners[engine().backendName])) {
      // Nothing pending and no read-back to wait for: the step takes effect now, as
      // applyGradients() would, with no need to keep the gradients alive past this call.
      this.applyGradients(variableGradients);
      return;
    }
    // Checked now, so that a bad call is rejected at once and takes no turn; checked again in its
    // turn, against the buffers then (an earlier setWeights may restore some).
    const checked = this.readGradients(variableGradients, this.queue.length === 0);
    const kept: NamedTensor[] = checked.map(({ variable, grad }) => ({
      name: variable.name,
      tensor: keep(alias(grad)),
    }));
    const grads = kept.map((k) => k.tensor);
    const allow = this.nonFinite === 'allow';
    return this.enqueue<void>({
      prepare: async () => {
        const found = allow ? null : await findNonFiniteAsync(grads);
        return found && { ...found, value: (await grads[found.tensor]!.data())[found.element]! };
      },
      canPrepareSync: () => allow || canReadBackSync(),
      prepareSync: () => {
        const found = allow ? null : findNonFinite(grads);
        return found && { ...found, value: grads[found.tensor]!.dataSync()[found.element]! };
      },
      commit: (bad) => {
        this.settle(this.plan(this.checkGradients(kept)), bad as NonFiniteElement | null);
      },
      release: () => {
        for (const g of grads) g.dispose();
      },
    });
  }

  /** Everything that can fail, before anything changes: this step's hyperparameters, from the state now. */
  private plan(work: { variable: Variable; grad: Tensor }[]): {
    work: { variable: Variable; grad: Tensor }[];
    hyperparams: Hyperparams[];
  } {
    const hyperparams = this.groups.map((g, i) =>
      g.schedule
        ? validateHyperparams(
            {
              ...g.hyperparams,
              lr: scheduledLr(g.schedule, this.iterations, `learning rate of group ${i}`),
            },
            F32,
          )
        : g.hyperparams,
    );
    return { work, hyperparams };
  }

  /** Commits a planned step, or reports its non-finite element under the nonFinite policy. */
  private settle(
    plan: { work: { variable: Variable; grad: Tensor }[]; hyperparams: Hyperparams[] },
    bad: NonFiniteElement | null,
  ): void {
    if (bad) {
      this.reject(plan.work[bad.tensor]!.variable.name, bad.element, bad.value);
      return;
    }
    this.commit(plan);
  }

  private reject(variableName: string, element: number, value: number): void {
    this.lastStep = rejectNonFinite(this.nonFinite, variableName, element, value);
  }

  /** Applies a checked step; nothing here can fail part-way. */
  private commit({
    work,
    hyperparams,
  }: {
    work: { variable: Variable; grad: Tensor }[];
    hyperparams: Hyperparams[];
  }): void {
    hyperparams.forEach((h, i) => {
      this.groups[i]!.hyperparams = h;
    });
    const coefficients = hyperparams.map((h) => fusedCoefficientArray(h));
    const fused = this.fused && hasFusedKernel(engine().backendName);
    const touched = new Set<number>();
    const entries = this.bindEntries(work.map((w) => w.variable));
    work.forEach(({ variable, grad }, k) => {
      const entry = entries[k]!;
      this.update(entry, variable, grad, coefficients[entry.group]!, fused);
      touched.add(entry.group);
    });
    for (const g of touched) this.groups[g]!.step++;
    this.incrementIterations();
    this.lastStep = { applied: true };
  }

  /** Queues a call (see QueuedCall); it settles in its turn. */
  private enqueue<T>(call: Omit<QueuedCall, 'resolve' | 'reject'>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ ...call, resolve: resolve as (value: unknown) => void, reject });
      if (!this.driving) void this.drive();
    });
  }

  /** Runs the queue, one call at a time, in call order. */
  private async drive(): Promise<void> {
    this.driving = true;
    try {
      while (this.queue.length > 0) {
        const call = this.queue[0]!;
        let prepared: unknown = null;
        let failure: { error: unknown } | null = null;
        try {
          prepared = await call.prepare();
        } catch (error) {
          failure = { error };
        }
        // A synchronous call may have completed it meanwhile (drain).
        if (this.queue[0] !== call) continue;
        this.queue.shift();
        settleCall(call, prepared, failure);
      }
    } finally {
      this.driving = false;
    }
  }

  /**
   * Completes every queued call now, in order: a synchronous call takes effect after the calls made
   * before it. Where one of them needs a read-back this platform cannot do synchronously, throws
   * AccSGDStateError and changes nothing.
   */
  private drain(caller: string): void {
    if (this.queue.length === 0) return;
    if (this.queue.some((c) => !c.canPrepareSync())) {
      throw new AccSGDStateError(
        `${caller}() was called while ${this.queue.length} earlier asynchronous call(s) (applyGradientsAsync, setWeights, getWeights, exportState) are pending, and the ${engine().backendName} backend cannot read back synchronously to let them take effect first; expected them to be awaited before ${caller}() (calls take effect in the order they are made)`,
      );
    }
    while (this.queue.length > 0) {
      const call = this.queue.shift()!;
      let prepared: unknown = null;
      let failure: { error: unknown } | null = null;
      try {
        prepared = call.prepareSync();
      } catch (error) {
        failure = { error };
      }
      settleCall(call, prepared, failure);
    }
  }

  /** checkGradients() on the caller's gradients: a getter or Proxy trap that throws is an AccSGDGradientError. */
  private readGradients(
    variableGradients: NamedTensorMap | NamedTensor[],
    checkBuffers: boolean,
  ): { variable: Variable; grad: Tensor }[] {
    return readInput(
      () => this.checkGradients(variableGradients, checkBuffers),
      (message) =>
        new AccSGDGradientError(
          undefined,
          `the gradients could not be read (${message}); expected a NamedTensorMap or a NamedTensor[] of plain data`,
        ),
    );
  }

  /** Validates names, shapes and dtypes of every gradient; returns those that are not null. */
  private checkGradients(
    variableGradients: NamedTensorMap | NamedTensor[],
    checkBuffers = true,
  ): { variable: Variable; grad: Tensor }[] {
    let pairs: [string, Tensor | null | undefined][];
    if (Array.isArray(variableGradients)) {
      pairs = variableGradients.map((item, i) => {
        if (typeof item !== 'object' || item === null || typeof item.name !== 'string') {
          throw new AccSGDGradientError(
            undefined,
            `item ${i} of the gradient list is not a { name, tensor } pair`,
          );
        }
        return [item.name, item.tensor];
      });
    } else if (isPlainObject(variableGradients)) {
      pairs = Object.entries(variableGradients);
    } else {
      // A Map, a Tensor or another class instance has no own entries to read as gradients: tfjs
      // would take it for an empty step.
      throw new AccSGDGradientError(
        undefined,
        `expected a NamedTensorMap (a plain object { [variableName]: tf.Tensor }) or a NamedTensor[], got ${describe(variableGradients)}`,
      );
    }
    const seen = new Set<string>();
    const work: { variable: Variable; grad: Tensor }[] = [];
    const registered = engine().registeredVariables;
    for (const [name, grad] of pairs) {
      if (seen.has(name)) throw new AccSGDGradientError(name, 'is given twice in one step');
      seen.add(name);
      const variable = registered[name];
      if (!variable) throw new AccSGDGradientError(name, 'no tf.Variable has this name');
      if (this.explicitGroups && !this.byVariable.has(name)) {
        throw new AccSGDGradientError(
          name,
          `the variable is in no parameter group of this optimizer (groups: ${this.groupConfigs.map((g) => `[${g.params.join(', ')}]`).join(' ')})`,
        );
      }
      if (grad == null) continue;
      if (!(grad instanceof Tensor))
        throw new AccSGDGradientError(name, `expected a tf.Tensor, got ${typeof grad}`);
      if (grad.isDisposed) throw new AccSGDGradientError(name, 'the gradient tensor is disposed');
      if (variable.dtype !== 'float32')
        throw new AccSGDGradientError(
          name,
          `AccSGD updates float32 variables; this one is ${variable.dtype}`,
        );
      if (grad.dtype !== 'float32')
        throw new AccSGDGradientError(name, `dtype is ${grad.dtype}; the variable is float32`);
      if (grad.shape.length !== variable.shape.length || grad.shape.some((d, i) => d !== variable.shape[i])) {
        throw new AccSGDGradientError(
          name,
          `shape is [${grad.shape.join(', ')}]; the variable's is [${variable.shape.join(', ')}]`,
        );
      }
      // A restored buffer of another shape (importState/setWeights before this variable existed, or a
      // variable disposed and re-created under its name) would fail inside commit, part-way.
      const buffer = checkBuffers ? this.entryOf(name)?.buffer : null;
      if (buffer && !sameShape(buffer.shape, variable.shape)) {
        throw new AccSGDStateError(
          `the momentum buffer of variable "${name}" has shape [${buffer.shape.join(', ')}]; the variable has shape [${variable.shape.join(', ')}] (restore a state that fits, or dispose() the optimizer)`,
        );
      }
      work.push({ variable, grad });
    }
    return work;
  }

  /** The entry a variable has, or the restored one waiting for it under its exact name. */
  private entryOf(variableName: string): Entry | undefined {
    const known = this.byVariable.get(variableName);
    if (known) return known;
    const waiting = this.byState.get(variableName);
    return waiting?.variableName === null ? waiting : undefined;
  }

  /**
   * The entries of a step's variables: those they have; else, for every variable of the step
   * first, a restored entry waiting under the exact name (with or without a buffer); else a
   * restored buffer waiting under tfjs-layers' renaming (a model loaded into a process that already
   * has one gets `dense_Dense1/kernel_1` for `dense_Dense1/kernel`), with the same shape, first in
   * saved order, the variables taken by name (`_1` before `_2`); else a new entry.
   */
  private bindEntries(variables: Variable[]): Entry[] {
    const result: (Entry | undefined)[] = variables.map((v) => this.entryOf(v.name));
    const bind = (k: number, entry: Entry) => {
      const variable = variables[k]!;
      entry.variableName = variable.name;
      this.byVariable.set(variable.name, entry);
      result[k] = entry;
    };
    // Exact names, for all variables, before any fallback.
    result.forEach((entry, k) => {
      if (entry && entry.variableName === null) bind(k, entry);
    });
    const unbound = variables.map((_, k) => k).filter((k) => result[k] === undefined);
    if (unbound.length === 0) return result as Entry[];
    // Waiting buffers by base name, in saved order.
    const waiting = new Map<string, Entry[]>();
    for (const e of this.entries) {
      if (e.variableName !== null || e.buffer === null) continue;
      const base = layersBaseName(e.stateName);
      const list = waiting.get(base);
      if (list) list.push(e);
      else waiting.set(base, [e]);
    }
    const byName = [...unbound].sort((a, b) => compareVariableNames(variables[a]!.name, variables[b]!.name));
    for (const k of byName) {
      const variable = variables[k]!;
      const list = waiting.get(layersBaseName(variable.name));
      const at = list ? list.findIndex((e) => sameShape(e.buffer!.shape, variable.shape)) : -1;
      if (at >= 0) bind(k, list!.splice(at, 1)[0]!);
    }
    // New entries in gradient order (the creation order of getWeights() and of the state file).
    for (const k of unbound) {
      if (result[k] !== undefined) continue;
      const variable = variables[k]!;
      // A new entry, under the variable's name (or, should a renamed variable hold that name in
      // the state file, the first free `<name>_<n>`, so that every state name stays unique).
      let stateName = variable.name;
      for (let n = 1; this.byState.has(stateName); n++) stateName = `${variable.name}_${n}`;
      const entry: Entry = { stateName, variableName: null, group: 0, buffer: null };
      this.entries.push(entry);
      this.byState.set(stateName, entry);
      bind(k, entry);
    }
    return result as Entry[];
  }

  private update(
    entry: Entry,
    variable: Variable,
    grad: Tensor,
    coefficients: CoefficientArray,
    fused: boolean,
  ): void {
    const buffer = entry.buffer ?? variable;
    let newParam: Tensor;
    let newBuffer: Tensor;
    if (fused) {
      [newParam, newBuffer] = engine().runKernel<Tensor[]>(
        ACCSGD_UPDATE,
        { param: variable, grad, buffer },
        { coefficients: [...coefficients], inPlace: true },
      ) as [Tensor, Tensor];
    } else {
      [newParam, newBuffer] = compositeUpdate(variable, grad, buffer, coefficients);
    }
    // A kernel that updated in place hands back the variable's own storage (and has told the
    // backend to drop what it cached for it); assign only what is new.
    if (newParam.dataId !== variable.dataId) variable.assign(newParam);
    newParam.dispose();
    if (entry.buffer === null) entry.buffer = makeBufferVariable(newBuffer, entry.stateName);
    else if (newBuffer.dataId !== entry.buffer.dataId) entry.buffer.assign(newBuffer);
    newBuffer.dispose();
  }

  /** Frees every tensor the optimizer made, after the calls made before it have taken effect. */
  override dispose(): void {
    try {
      this.drain('dispose');
    } catch {
      // They cannot complete synchronously here: they are rejected, having changed nothing.
      for (const call of this.queue.splice(0)) {
        settleCall(call, null, {
          error: new AccSGDStateError(
            'the optimizer was disposed before this call took effect; expected the call to be awaited before dispose()',
          ),
        });
      }
    }
    for (const entry of this.entries) entry.buffer?.dispose();
    this.entries = this.explicitGroups ? this.entries.map((e) => ({ ...e, buffer: null })) : [];
    this.reindex();
    super.dispose();
  }

  /**
   * `iter` (int32 scalar) first, then `<name>/momentum_buffer` for each buffer in creation order,
   * as they are once the calls made before this one have taken effect.
   */
  override async getWeights(): Promise<NamedTensor[]> {
    return this.enqueue<NamedTensor[]>({
      ...NO_READ_BACK,
      commit: () => [
        { name: 'iter', tensor: keep(scalar(this.iterations, 'int32')) },
        ...this.entries
          .filter((e): e is Entry & { buffer: Variable } => e.buffer !== null)
          .map((e) => ({ name: e.stateName + BUFFER_WEIGHT_SUFFIX, tensor: e.buffer as Tensor })),
      ],
    });
  }

  /**
   * Restores what getWeights() gave (tfjs-layers calls this when loading a model saved with
   * includeOptimizer). Replaces every buffer; checks everything before changing anything. The
   * groups' step counts, which tfjs's layout has no place for, are set to the iteration count
   * (exact when every step had a gradient for some member of every group, as in model.fit).
   * Takes effect in call order; the weights are kept (cloned) when it is called, so the caller may
   * dispose them at once.
   */
  override async setWeights(weightValues: NamedTensor[]): Promise<void> {
    const { iter, buffers } = readInput(
      () => checkWeights(weightValues),
      (message) =>
        new AccSGDStateError(
          `the weights could not be read (${message}); expected the plain layout of getWeights()`,
        ),
    );
    const iterTensor = keep(alias(iter));
    const restored = new Map(buffers.map(([stateName, t]) => [stateName, keep(alias(t))]));
    return this.enqueue<void>({
      prepare: () => iterTensor.data(),
      canPrepareSync: canReadBackSync,
      prepareSync: () => iterTensor.dataSync(),
      commit: (iterValues) => this.restoreWeights(iterTensor, iterValues as ArrayLike<unknown>, restored),
      release: () => {
        iterTensor.dispose();
        for (const t of restored.values()) t.dispose();
      },
    });
  }

  private restoreWeights(
    iterTensor: Tensor,
    iterValues: ArrayLike<unknown>,
    restored: Map<string, Tensor>,
  ): void {
    const iterations = iterValues[0];
    if (iterTensor.size !== 1 || !Number.isSafeInteger(iterations) || (iterations as number) < 0) {
      throw new AccSGDStateError(
        `optimizer weight "iter" must be a scalar integer >= 0; got ${iterTensor.size === 1 ? String(iterations) : `shape [${iterTensor.shape}]`}`,
      );
    }
    const missing = this.entries.filter(
      (e) => e.variableName !== null && e.buffer !== null && !restored.has(e.stateName),
    );
    if (missing.length > 0) {
      throw new AccSGDStateError(
        `the weights have no buffer for ${missing.map((e) => `"${e.stateName}"`).join(', ')}, which this optimizer has: they were not saved from it (restore them into a fresh optimizer)`,
      );
    }
    this.checkRestoredShapes(new Map([...restored].map(([n, t]) => [n, t.shape])));
    this.replaceBuffers(new Map([...restored].map(([n, t]) => [n, { shape: t.shape, tensor: t }])), [
      [...restored.keys()],
    ]);
    this.iterations_ = iterations as number;
    for (const g of this.groups) g.step = iterations as number;
  }

  /**
   * The state file of @accsgd/core (safetensors, buffers named `<name>.momentum_buffer`): a
   * consistent snapshot of the state once the calls made before this one have taken effect (the
   * buffers are cloned in one go, then read back), whatever is called while it reads.
   */
  async exportState(): Promise<Uint8Array> {
    const snapshot = await this.enqueue<{ groups: OptimizerState['groups']; buffers: [string, Tensor][] }>({
      ...NO_READ_BACK,
      commit: () => ({
        groups: this.stateGroups(),
        buffers: this.entries
          .filter((e) => e.buffer !== null)
          .map((e): [string, Tensor] => [e.stateName, keep(alias(e.buffer!))]),
      }),
    });
    try {
      const buffers = new Map<string, { shape: number[]; data: Float32Array }>();
      for (const [stateName, t] of snapshot.buffers) {
        buffers.set(stateName, {
          shape: [...t.shape],
          data: Float32Array.from((await t.data()) as Float32Array),
        });
      }
      return encodeState({ groups: snapshot.groups, buffers });
    } finally {
      for (const [, t] of snapshot.buffers) t.dispose();
    }
  }

  /**
   * Replaces buffers, hyperparameters and step counts from a state file, or changes nothing and
   * throws AccSGDStateError. The iteration count becomes the largest group step. A learning-rate
   * schedule, if set, still decides the learning rate of the next steps.
   */
  importState(bytes: Uint8Array): void {
    const state = decodeState(bytes);
    // Checked against the state once the calls made before this one have taken effect.
    this.drain('importState');
    assertFloat32StateGroups(state.groups);
    if (state.groups.length !== this.groups.length) {
      throw new AccSGDStateError(
        `state has ${state.groups.length} parameter group(s); the optimizer has ${this.groups.length}`,
      );
    }
    const shapes = new Map([...state.buffers].map(([n, b]) => [n, b.shape]));
    if (this.explicitGroups) {
      assertStateFits(state as OptimizerState, {
        groups: this.paramGroups,
        // A variable that does not exist yet has no shape to check against: its buffer is taken
        // as it is here and checked against the variable on the variable's first step
        // (checkGradients), before anything changes.
        shapes: new Map(
          this.entries.map((e) => [
            e.stateName,
            registeredShape(e.variableName) ?? state.buffers.get(e.stateName)?.shape ?? [],
          ]),
        ),
      });
    } else {
      // One group that grows as variables are seen: the file must name every variable this
      // optimizer has stepped (it may name more, which wait for their variables). Buffers from an
      // earlier import that still wait for their variable are state, not parameters: replaced.
      const members = new Set(state.groups[0]!.params);
      const missing = this.entries
        .filter((e) => e.variableName !== null && !members.has(e.stateName))
        .map((e) => e.stateName);
      if (missing.length > 0) {
        throw new AccSGDStateError(
          `state has parameters [${state.groups[0]!.params.join(', ')}]; the optimizer also has [${missing.join(', ')}] (a state file of other parameters, or from before these were stepped: import it into a fresh optimizer)`,
        );
      }
    }
    this.checkRestoredShapes(shapes);
    this.replaceBuffers(
      new Map([...state.buffers].map(([n, b]) => [n, { shape: b.shape, tensor: null, data: b.data }])),
      state.groups.map((g) => g.params),
    );
    state.groups.forEach((g, i) => {
      this.groups[i]!.hyperparams = { ...g.hyperparams };
      this.groups[i]!.step = g.step;
    });
    this.iterations_ = Math.max(0, ...state.groups.map((g) => g.step));
  }

  /** Restored buffers must fit the variables they belong to, where those are known. */
  private checkRestoredShapes(shapes: Map<string, readonly number[]>): void {
    for (const [stateName, shape] of shapes) {
      const entry = this.byState.get(stateName);
      if (this.explicitGroups && !entry)
        throw new AccSGDStateError(`buffer "${stateName}" belongs to no variable of this optimizer's groups`);
      const expected = registeredShape(entry ? entry.variableName : stateName);
      if (expected && !sameShape(expected, shape)) {
        throw new AccSGDStateError(
          `buffer "${stateName}" has shape [${shape.join(', ')}]; the variable has shape [${expected.join(', ')}]`,
        );
      }
    }
  }

  /** Disposes every buffer and installs the restored ones (nothing here can fail). */
  private replaceBuffers(
    restored: Map<string, { shape: number[]; tensor: Tensor | null; data?: Float32Array | Float64Array }>,
    groupMembers: string[][],
  ): void {
    // The values first (an alias shares the caller's storage, and keeps it alive should the caller
    // have passed our own buffers, as in setWeights(await getWeights())); then the old buffers go,
    // so that the new ones get the names `<name>/momentum_buffer` back.
    const values = new Map(
      [...restored].map(([stateName, r]) => [
        stateName,
        r.tensor ? alias(r.tensor) : tensor(Float32Array.from(r.data!), r.shape, 'float32'),
      ]),
    );
    const old = this.entries;
    for (const e of old) e.buffer?.dispose();
    const make = (stateName: string): Variable | null => {
      const value = values.get(stateName);
      return value ? makeBufferVariable(value, stateName) : null;
    };
    if (this.explicitGroups) {
      this.entries = old.map((e) => ({ ...e, buffer: make(e.stateName) }));
    } else {
      // One group: its members are the restored names, bound to the variables already seen under
      // those names; the others wait for their variable (see adoptRestoredBuffer).
      const bound = new Map(
        old.filter((e) => e.variableName !== null).map((e) => [e.stateName, e.variableName]),
      );
      this.entries = groupMembers.flat().map((stateName) => ({
        stateName,
        variableName: bound.get(stateName) ?? null,
        group: 0,
        buffer: make(stateName),
      }));
    }
    for (const value of values.values()) value.dispose();
    this.reindex();
  }

  private stateGroups(): OptimizerState['groups'] {
    return this.paramGroups;
  }

  override getConfig(): serialization.ConfigDict {
    const hyper = (h: Hyperparams) => ({
      lr: h.lr,
      kappa: h.kappa,
      xi: h.xi,
      smallConst: h.smallConst,
      weightDecay: h.weightDecay,
    });
    const config: serialization.ConfigDict = {
      ...hyper(this.explicitGroups ? this.defaults : this.groups[0]!.hyperparams),
      nonFinite: this.nonFinite,
      fused: this.fused,
    };
    if (this.explicitGroups) {
      // tfjs-layers camel-cases every string in a saved config except values keyed 'name', so
      // variable names (dense_Dense1/kernel) travel as { name }.
      config.groups = this.groups.map((g, i) => ({
        ...hyper(g.hyperparams),
        params: this.entries.filter((e) => e.group === i).map((e) => ({ name: e.variableName! })),
        names: this.entries.filter((e) => e.group === i).map((e) => ({ name: e.stateName })),
      }));
    }
    return config;
  }

  static override fromConfig<T extends serialization.Serializable>(
    cls: serialization.SerializableConstructor<T>,
    config: serialization.ConfigDict,
  ): T {
    const read = readConfig(config);
    // Not an object: the constructor says so.
    if (typeof read !== 'object' || read === null) return new cls(read as never);
    // Only our keys: tfjs-layers adds its own (customObjects) to a config it deserialises.
    const { groups, ...rest } = Object.fromEntries(
      Object.entries(read).filter(([k]) => CONFIG_KEYS.includes(k)),
    ) as Record<string, unknown>;
    const unwrap = (list: unknown) =>
      Array.isArray(list)
        ? list.map((x) => (typeof x === 'object' && x !== null ? (x as { name: string }).name : x))
        : list;
    const restored = { ...rest } as unknown as AccSGDConfig;
    if (groups !== undefined) {
      // Anything but an array (a string, an object, null) goes to the constructor as it is, which
      // rejects it, as it rejects a group that is not an object.
      restored.groups = (
        Array.isArray(groups)
          ? groups.map((g: unknown) =>
              typeof g === 'object' && g !== null && !Array.isArray(g)
                ? {
                    ...g,
                    params: unwrap((g as Record<string, unknown>).params),
                    names: unwrap((g as Record<string, unknown>).names),
                  }
                : g,
            )
          : groups
      ) as AccSGDGroupConfig[];
    }
    return new cls(restored);
  }
}

serialization.registerClass(AccSGDOptimizer);

/** `accsgd({ lr: 0.1, kappa: 1000, xi: 10 })`, in the style of `tf.train.momentum`. */
export function accsgd(config: AccSGDConfig): AccSGDOptimizer {
  return new AccSGDOptimizer(config);
}

/** Variables are float32, so every accepted set of hyperparameters must fit float32 (SPEC §1). */
const F32 = { precision: 'float32' } as const;

function scheduledLr(lr: number | LearningRateSchedule, iteration: number, field: string): number {
  if (typeof lr !== 'function') return lr;
  const value = readInput(
    () => lr(iteration),
    (message) =>
      new AccSGDConfigError(
        field,
        lr,
        'a schedule returning a finite number >= 0',
        `schedule threw at iteration ${iteration} (${message}); expected it to return a finite number >= 0`,
      ),
  );
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new AccSGDConfigError(
      field,
      value,
      'a finite number >= 0',
      `schedule gave ${describeValue(value)} at iteration ${iteration}; expected a finite number >= 0`,
    );
  }
  return value;
}

type FindNonFinite = (grads: Tensor[]) => { tensor: number; element: number } | null;

/** First non-finite gradient element: direct scans of cpu/wasm memory, tfjs ops elsewhere. */
const findNonFinite: FindNonFinite = (grads) => {
  const scan = memoryScanners[engine().backendName];
  if (!scan) {
    if (
      engine().backendName === 'webgpu' &&
      typeof (globalThis as { OffscreenCanvas?: unknown }).OffscreenCanvas === 'undefined'
    ) {
      throw new AccSGDConfigError(
        'nonFinite',
        'error',
        '"allow" here, or applyGradientsAsync()',
        'checking gradients for NaN/infinity needs a read-back, and tfjs-backend-webgpu cannot read back synchronously on this platform (no OffscreenCanvas): call applyGradientsAsync(), or pass nonFinite: "allow"',
      );
    }
    const gpuScan = gpuScanners[engine().backendName];
    if (!gpuScan || grads.length === 0) return compositeFirstNonFinite(grads);
    const firstBad = gpuScan(engine().backend, grads);
    try {
      return locateNonFinite(firstBad.dataSync());
    } finally {
      firstBad.dispose();
    }
  }
  const backend = engine().backend;
  for (let t = 0; t < grads.length; t++) {
    const element = scan(backend, grads[t]!);
    if (element === null) return compositeFirstNonFinite(grads);
    if (element >= 0) return { tensor: t, element };
  }
  return null;
};

/** The same, read back asynchronously where the backend's memory is not directly readable. */
async function findNonFiniteAsync(grads: Tensor[]): Promise<{ tensor: number; element: number } | null> {
  if (grads.length === 0) return null;
  const name = engine().backendName;
  if (memoryScanners[name]) return findNonFinite(grads);
  const gpuScan = gpuScanners[name];
  if (!gpuScan) return compositeFirstNonFiniteAsync(grads);
  const firstBad = gpuScan(engine().backend, grads);
  try {
    return locateNonFinite(await firstBad.data());
  } finally {
    firstBad.dispose();
  }
}

/**
 * Another tensor over the same storage, kept alive until it is disposed. Not clone(): on the wasm
 * backend clone() copies the data. Shared storage also keeps the wasm kernel from updating it in
 * place (it writes in place only where it is the storage's sole owner), so a pending export or
 * step sees the values of its turn.
 */
function alias(t: Tensor): Tensor {
  return reshape(t, t.shape);
}

function makeBufferVariable(value: Tensor, stateName: string): Variable {
  const name = stateName + BUFFER_WEIGHT_SUFFIX;
  // Variable names are global in tfjs; a second optimizer over the same variable gets a generated one.
  return value.variable(false, engine().registeredVariables[name] ? undefined : name);
}

function registeredShape(variableName: string | null): number[] | null {
  if (variableName === null) return null;
  return engine().registeredVariables[variableName]?.shape ?? null;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** tfjs-layers makes a variable name unique by appending `_<n>`; this strips it. */
function layersBaseName(name: string): string {
  return name.replace(/_\d+$/, '');
}

/** Where the tensors of the current backend can be read back synchronously. */
function canReadBackSync(): boolean {
  return !(
    engine().backendName === 'webgpu' &&
    typeof (globalThis as { OffscreenCanvas?: unknown }).OffscreenCanvas === 'undefined'
  );
}

/** The first non-finite gradient element, and its value. */
interface NonFiniteElement {
  tensor: number;
  element: number;
  value: number;
}

/** The read-back part of a queued call that reads nothing back. */
const NO_READ_BACK = {
  prepare: async () => null,
  canPrepareSync: () => true,
  prepareSync: () => null,
  release: () => {},
};

/** Commits a queued call whose read-back is done (or failed), and settles its promise. */
function settleCall(call: QueuedCall, prepared: unknown, failure: { error: unknown } | null): void {
  try {
    if (failure) throw failure.error;
    call.resolve(call.commit(prepared));
  } catch (error) {
    call.reject(error);
  } finally {
    call.release();
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** A short description of a value for error messages. */
function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value !== 'object') return typeof value;
  if (Array.isArray(value)) return 'an array';
  const name = (Object.getPrototypeOf(value) as { constructor?: { name?: unknown } } | null)?.constructor
    ?.name;
  return typeof name === 'string' && name !== '' ? `a ${name}` : 'an object';
}

/** Sorts `kernel_1` before `kernel_2` before `kernel_10`, then by name. */
function compareVariableNames(a: string, b: string): number {
  const suffix = (name: string) => Number(/_(\d+)$/.exec(name)?.[1] ?? -1);
  return suffix(a) - suffix(b) || (a < b ? -1 : a > b ? 1 : 0);
}

/**
 * The structure of setWeights()'s argument (the layout of getWeights()), checked before anything
 * is read or kept: AccSGDStateError saying what is wrong.
 */
function checkWeights(weightValues: unknown): { iter: Tensor; buffers: [string, Tensor][] } {
  const layout = `expected the layout of getWeights(): [{ name: 'iter', tensor: <int32 scalar> }, { name: '<variable>${BUFFER_WEIGHT_SUFFIX}', tensor: <float32 tensor> }, ...]`;
  if (!Array.isArray(weightValues) || weightValues.length === 0) {
    throw new AccSGDStateError(
      `AccSGD weights must be a non-empty array, got ${describe(weightValues)}; ${layout}`,
    );
  }
  const items = weightValues.map((item: unknown, i): NamedTensor => {
    if (typeof item !== 'object' || item === null)
      throw new AccSGDStateError(
        `optimizer weight ${i} is ${describe(item)}, not a { name, tensor } pair; ${layout}`,
      );
    const { name, tensor: value } = item as { name?: unknown; tensor?: unknown };
    if (typeof name !== 'string')
      throw new AccSGDStateError(
        `optimizer weight ${i} has a name of type ${typeof name}; expected a string`,
      );
    if (!(value instanceof Tensor))
      throw new AccSGDStateError(`optimizer weight "${name}" is ${describe(value)}; expected a tf.Tensor`);
    if (value.isDisposed) throw new AccSGDStateError(`optimizer weight "${name}" is a disposed tensor`);
    return { name, tensor: value };
  });
  const [iter, ...rest] = items;
  if (iter!.name !== 'iter') {
    throw new AccSGDStateError(
      `AccSGD weights must start with the int32 scalar "iter" (the layout of getWeights()); the first is "${iter!.name}"`,
    );
  }
  if (iter!.tensor.dtype !== 'int32' && iter!.tensor.dtype !== 'float32') {
    throw new AccSGDStateError(`optimizer weight "iter" is ${iter!.tensor.dtype}; expected an int32 scalar`);
  }
  const seen = new Set<string>();
  const buffers = rest.map(({ name, tensor: value }): [string, Tensor] => {
    if (!name.endsWith(BUFFER_WEIGHT_SUFFIX))
      throw new AccSGDStateError(
        `optimizer weight "${name}" is not named "<variable>${BUFFER_WEIGHT_SUFFIX}"`,
      );
    if (value.dtype !== 'float32')
      throw new AccSGDStateError(`optimizer weight "${name}" is ${value.dtype}; AccSGD buffers are float32`);
    const stateName = name.slice(0, -BUFFER_WEIGHT_SUFFIX.length);
    if (seen.has(stateName)) throw new AccSGDStateError(`optimizer weight "${name}" appears twice`);
    seen.add(stateName);
    return [stateName, value];
  });
  return { iter: iter!.tensor, buffers };
}

/**
 * Runs `read` over caller-supplied values; an untyped error from them (a getter or Proxy trap that
 * throws, a schedule that throws) becomes the typed error `fail` makes.
 */
function readInput<T>(read: () => T, fail: (message: string) => AccSGDError): T {
  try {
    return read();
  } catch (error) {
    if (error instanceof AccSGDError) throw error;
    throw fail(describeError(error));
  }
}

function describeError(error: unknown): string {
  try {
    return error instanceof Error ? error.message : String(error);
  } catch {
    return 'an unprintable value was thrown';
  }
}

function describeValue(value: unknown): string {
  try {
    return typeof value === 'object' && value !== null ? describe(value) : String(value);
  } catch {
    return typeof value;
  }
}

/** A copy of a config's plain objects and arrays (to a bounded depth), read once. */
function readConfig(config: unknown): unknown {
  const copy = (value: unknown, depth: number): unknown => {
    if (depth === 0 || typeof value !== 'object' || value === null) return value;
    if (Array.isArray(value)) return Array.from(value as unknown[], (x) => copy(x, depth - 1));
    if (!isPlainObject(value)) return value;
    return Object.fromEntries(Object.keys(value).map((k) => [k, copy(value[k], depth - 1)]));
  };
  return readInput(
    () => copy(config, 6),
    (message) =>
      new AccSGDConfigError(
        'config',
        '(unreadable)',
        'plain data',
        `could not be read (${message}); expected plain data { lr, ... }`,
      ),
  );
}
