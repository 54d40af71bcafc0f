import {
  AccSGDConfigError,
  AccSGDGradientError,
  AccSGDStateError,
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
  type NamedTensorMap,
  Optimizer,
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

  constructor(config: AccSGDConfig) {
    super();
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
      this.groups = [{ hyperparams: { ...this.defaults }, schedule: this.defaultSchedule, step: 0 }];
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
        const hyperparams = resolveHyperparams({ ...hyper, lr: lrNow }, this.defaults, GROUP_KEYS);
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
    registerAccSGDKernels();
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
    if (typeof lr === 'function') {
      for (const g of targets) g.schedule = lr;
      return;
    }
    const updated = targets.map((g) => validateHyperparams({ ...g.hyperparams, lr }));
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
    const plan = this.plan(variableGradients);
    const bad = this.nonFinite === 'allow' ? null : findNonFinite(plan.work.map((w) => w.grad));
    if (bad) {
      const value = plan.work[bad.tensor]!.grad.dataSync()[bad.element]!;
      this.reject(plan.work[bad.tensor]!.variable.name, bad.element, value);
      return;
    }
    this.commit(plan);
  }

  /**
   * The same step as applyGradients(), with the non-finite check read back asynchronously: the
   * way to step on GPU backends without stalling, and the only way to check gradients on
   * tfjs-backend-webgpu in Node.
   */
  async applyGradientsAsync(variableGradients: NamedTensorMap | NamedTensor[]): Promise<void> {
    const plan = this.plan(variableGradients);
    const grads = plan.work.map((w) => w.grad);
    const bad = this.nonFinite === 'allow' ? null : await findNonFiniteAsync(grads);
    if (bad) {
      const value = (await plan.work[bad.tensor]!.grad.data())[bad.element]!;
      this.reject(plan.work[bad.tensor]!.variable.name, bad.element, value);
      return;
    }
    this.commit(plan);
  }

  /** Everything that can fail, before anything changes: gradients, and this step's hyperparameters. */
  private plan(variableGradients: NamedTensorMap | NamedTensor[]): {
    work: { variable: Variable; grad: Tensor }[];
    hyperparams: Hyperparams[];
  } {
    const work = this.checkGradients(variableGradients);
    const hyperparams = this.groups.map((g, i) =>
      g.schedule
        ? validateHyperparams({
            ...g.hyperparams,
            lr: scheduledLr(g.schedule, this.iterations, `learning rate of group ${i}`),
          })
        : g.hyperparams,
    );
    return { work, hyperparams };
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
    for (const { variable, grad } of work) {
      const entry = this.entryFor(variable);
      this.update(entry, variable, grad, coefficients[entry.group]!, fused);
      touched.add(entry.group);
    }
    for (const g of touched) this.groups[g]!.step++;
    this.incrementIterations();
    this.lastStep = { applied: true };
  }

  /** Validates names, shapes and dtypes of every gradient; returns those that are not null. */
  private checkGradients(
    variableGradients: NamedTensorMap | NamedTensor[],
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
    } else if (typeof variableGradients === 'object' && variableGradients !== null) {
      pairs = Object.entries(variableGradients);
    } else {
      throw new AccSGDGradientError(
        undefined,
        `expected a NamedTensorMap or a NamedTensor[], got ${typeof variableGradients}`,
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
      const buffer = (
        this.byVariable.get(name) ?? this.entries.find((e) => e.variableName === null && e.stateName === name)
      )?.buffer;
      if (buffer && !sameShape(buffer.shape, variable.shape)) {
        throw new AccSGDStateError(
          `the momentum buffer of variable "${name}" has shape [${buffer.shape.join(', ')}]; the variable has shape [${variable.shape.join(', ')}] (restore a state that fits, or dispose() the optimizer)`,
        );
      }
      work.push({ variable, grad });
    }
    return work;
  }

  /** The entry of a variable, created on first sight (or bound to a restored buffer waiting for it). */
  private entryFor(variable: Variable): Entry {
    const known = this.byVariable.get(variable.name);
    if (known) return known;
    const waiting = this.adoptRestoredBuffer(variable);
    const entry: Entry = waiting ?? {
      stateName: variable.name,
      variableName: variable.name,
      group: 0,
      buffer: null,
    };
    entry.variableName = variable.name;
    if (!waiting) this.entries.push(entry);
    this.byVariable.set(variable.name, entry);
    return entry;
  }

  /**
   * A buffer restored by setWeights()/importState() before its variable was seen. Matched by name;
   * failing that, by tfjs-layers' renaming (a model loaded into a process that already has one gets
   * `dense_Dense1/kernel_1` for `dense_Dense1/kernel`), with the same shape, first in saved order.
   */
  private adoptRestoredBuffer(variable: Variable): Entry | null {
    const waiting = this.entries.filter((e) => e.variableName === null);
    const fits = (e: Entry) => e.buffer !== null && sameShape(e.buffer.shape, variable.shape);
    const exact = waiting.find((e) => e.stateName === variable.name && fits(e));
    if (exact) return exact;
    const base = layersBaseName(variable.name);
    return waiting.find((e) => layersBaseName(e.stateName) === base && fits(e)) ?? null;
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
        {
          coefficients: [...coefficients],
          inPlace: true,
        },
      ) as [Tensor, Tensor];
    } else {
      [newParam, newBuffer] = compositeUpdate(variable, grad, buffer, coefficients);
    }
    // An in-place kernel hands back the variable's own storage; assign only what is new.
    if (newParam.dataId !== variable.dataId) variable.assign(newParam);
    newParam.dispose();
    if (entry.buffer === null) entry.buffer = makeBufferVariable(newBuffer, entry.stateName);
    else if (newBuffer.dataId !== entry.buffer.dataId) entry.buffer.assign(newBuffer);
    newBuffer.dispose();
  }

  override dispose(): void {
    for (const entry of this.entries) entry.buffer?.dispose();
    this.entries = this.explicitGroups ? this.entries.map((e) => ({ ...e, buffer: null })) : [];
    this.byVariable.clear();
    for (const entry of this.entries)
      if (entry.variableName !== null) this.byVariable.set(entry.variableName, entry);
    super.dispose();
  }

  /** `iter` (int32 scalar) first, then `<name>/momentum_buffer` for each buffer in creation order. */
  override async getWeights(): Promise<NamedTensor[]> {
    const buffers = this.entries
      .filter((e): e is Entry & { buffer: Variable } => e.buffer !== null)
      .map((e) => ({ name: e.stateName + BUFFER_WEIGHT_SUFFIX, tensor: e.buffer }));
    return [await this.saveIterations(), ...buffers];
  }

  /**
   * Restores what getWeights() gave (tfjs-layers calls this when loading a model saved with
   * includeOptimizer). Replaces every buffer; checks everything before changing anything. The
   * groups' step counts, which tfjs's layout has no place for, are set to the iteration count
   * (exact when every step had a gradient for some member of every group, as in model.fit).
   */
  override async setWeights(weightValues: NamedTensor[]): Promise<void> {
    if (!Array.isArray(weightValues) || weightValues.length === 0 || weightValues[0]!.name !== 'iter') {
      throw new AccSGDStateError(
        'AccSGD weights must start with the int32 scalar "iter" (the layout of getWeights())',
      );
    }
    // Read "iter" before any check: nothing may await between the checks and the commit, or a step
    // taken meanwhile could be undone by a replacement checked against an older state.
    const iterTensor = weightValues[0]!.tensor;
    const iterValues = await iterTensor.data();
    const iterations = iterValues[0]!;
    if (iterTensor.size !== 1 || !Number.isSafeInteger(iterations) || iterations < 0) {
      throw new AccSGDStateError(
        `optimizer weight "iter" must be a scalar integer >= 0; got ${iterTensor.size === 1 ? iterations : `shape [${iterTensor.shape}]`}`,
      );
    }
    const restored = new Map<string, Tensor>();
    for (const { name, tensor: value } of weightValues.slice(1)) {
      if (!name.endsWith(BUFFER_WEIGHT_SUFFIX))
        throw new AccSGDStateError(
          `optimizer weight "${name}" is not named "<variable>${BUFFER_WEIGHT_SUFFIX}"`,
        );
      if (value.dtype !== 'float32')
        throw new AccSGDStateError(
          `optimizer weight "${name}" is ${value.dtype}; AccSGD buffers are float32`,
        );
      const stateName = name.slice(0, -BUFFER_WEIGHT_SUFFIX.length);
      if (restored.has(stateName)) throw new AccSGDStateError(`optimizer weight "${name}" appears twice`);
      restored.set(stateName, value);
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
    this.iterations_ = iterations;
    for (const g of this.groups) g.step = iterations;
  }

  /** The state file of @accsgd/core (safetensors, buffers named `<name>.momentum_buffer`). */
  async exportState(): Promise<Uint8Array> {
    const buffers = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const e of this.entries) {
      if (e.buffer)
        buffers.set(e.stateName, {
          shape: [...e.buffer.shape],
          data: Float32Array.from((await e.buffer.data()) as Float32Array),
        });
    }
    return encodeState({ groups: this.stateGroups(), buffers });
  }

  /**
   * Replaces buffers, hyperparameters and step counts from a state file, or changes nothing and
   * throws AccSGDStateError. The iteration count becomes the largest group step. A learning-rate
   * schedule, if set, still decides the learning rate of the next steps.
   */
  importState(bytes: Uint8Array): void {
    const state = decodeState(bytes);
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
      const entry = this.entries.find((e) => e.stateName === stateName);
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
    // The values first (a clone shares the caller's storage, and keeps it alive should the caller
    // have passed our own buffers, as in setWeights(await getWeights())); then the old buffers go,
    // so that the new ones get the names `<name>/momentum_buffer` back.
    const values = new Map(
      [...restored].map(([stateName, r]) => [
        stateName,
        r.tensor ? r.tensor.clone() : tensor(Float32Array.from(r.data!), r.shape, 'float32'),
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
    this.byVariable.clear();
    for (const e of this.entries) if (e.variableName !== null) this.byVariable.set(e.variableName, e);
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
    // Only our keys: tfjs-layers adds its own (customObjects) to a config it deserialises.
    const { groups, ...rest } = Object.fromEntries(
      Object.entries(config).filter(([k]) => CONFIG_KEYS.includes(k)),
    ) as Record<string, unknown>;
    const unwrap = (list: unknown) =>
      Array.isArray(list)
        ? list.map((x) => (typeof x === 'object' && x !== null ? (x as { name: string }).name : x))
        : list;
    const restored = { ...rest } as unknown as AccSGDConfig;
    if (Array.isArray(groups)) {
      restored.groups = groups.map(
        (g: Record<string, unknown>) =>
          ({ ...g, params: unwrap(g.params), names: unwrap(g.names) }) as AccSGDGroupConfig,
      );
    }
    return new cls(restored);
  }
}

serialization.registerClass(AccSGDOptimizer);

/** `accsgd({ lr: 0.1, kappa: 1000, xi: 10 })`, in the style of `tf.train.momentum`. */
export function accsgd(config: AccSGDConfig): AccSGDOptimizer {
  return new AccSGDOptimizer(config);
}

function scheduledLr(lr: number | LearningRateSchedule, iteration: number, field: string): number {
  if (typeof lr !== 'function') return lr;
  const value = lr(iteration);
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new AccSGDConfigError(
      field,
      value,
      'a finite number >= 0',
      `schedule gave ${value} at iteration ${iteration}; expected a finite number >= 0`,
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
    const found = locateNonFinite(firstBad.dataSync());
    firstBad.dispose();
    return found;
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
