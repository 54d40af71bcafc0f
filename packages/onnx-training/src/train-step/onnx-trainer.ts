import {
  AccSGDConfigError,
  AccSGDError,
  AccSGDGradientError,
  AccSGDStateError,
  assertFloat32Multipliers,
  decodeState,
  encodeState,
  type FusedCoefficients,
  firstNonFinite,
  float32Multipliers,
  fusedCoefficients,
  type Hyperparams,
  OrderedCalls,
  ParameterRegistry,
  resolveHyperparams,
} from '@accsgd/core';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType } from 'onnx-buf';
import { selectNames } from '../autodiff/forward-model.js';
import { AUTODIFF_OPTION_KEYS, assertKnownKeys } from '../autodiff/gradient.js';
import { buildFiniteCheckModel } from '../graphs/finite-check.js';
import { encodeModel, node, tensorInfo } from '../graphs/onnx-proto.js';
import { scaledMultiplier } from '../graphs/update-graph.js';
import {
  type ExecutionProvider,
  executionProvider,
  type OrtModule,
  type OrtSession,
  type OrtTensor,
  resolveOrt,
  scalar,
  sessionOptions,
  strictPlacement,
} from '../runtime.js';
import { toInferenceForm } from './inference-form.js';
import { buildTrainStepModel, type TrainStepModel, type TrainStepOptions } from './train-step-model.js';

/** A learning rate as a function of the step count (0 on the first step), as @accsgd/tfjs accepts. */
export type LearningRateSchedule = (step: number) => number;

/** AccSGD hyperparameters as OnnxTrainer takes them: lr a number or a schedule. */
export type TrainerHyperparams = Partial<Omit<Hyperparams, 'lr'>> & { lr: number | LearningRateSchedule };

/**
 * A parameter group: the trainable initializers it holds (names, RegExps or globs such as
 * "*.bias"; a parameter joins the first group that matches it) and the hyperparameters in which it
 * differs from `hyperparams`.
 */
export interface TrainerParamGroup extends Partial<Omit<Hyperparams, 'lr'>> {
  params: string | RegExp | readonly (string | RegExp)[];
  lr?: number | LearningRateSchedule;
}

export interface OnnxTrainerOptions extends TrainStepOptions {
  /**
   * AccSGD hyperparameters (lr required; kappa, xi, smallConst, weightDecay as in @accsgd/core) of
   * every parameter no group claims. lr may be a schedule: a function of the step count.
   */
  hyperparams: TrainerHyperparams;
  /**
   * Parameter groups with their own hyperparameters (a backbone at a lower lr than a new head;
   * weightDecay 0 for biases and norms), in the state file's group order. Parameters no group
   * claims form one more group, last, with `hyperparams`.
   */
  groups?: readonly TrainerParamGroup[];
  /** The ONNX Runtime module; default: globalThis[Symbol.for('onnxruntime')]. */
  ort?: OrtModule;
  /** 'cpu' (default) or 'webgpu' with onnxruntime-node; 'wasm' with onnxruntime-web. */
  executionProvider?: ExecutionProvider;
  /** Create the session with ORT's disable_cpu_ep_fallback: session creation fails if a node would run on the CPU. */
  strictPlacement?: boolean;
  /** Further ORT session options (intraOpNumThreads, ...); the execution provider and placement are this class's. */
  sessionOptions?: Readonly<Record<string, unknown>>;
  /** A step whose loss is NaN or infinite: 'error' (default; AccSGDGradientError, nothing changes) or 'allow'. */
  nonFiniteLoss?: 'error' | 'allow';
}

const TRAINER_OPTION_KEYS: readonly string[] = [
  ...AUTODIFF_OPTION_KEYS,
  'hyperparams',
  'groups',
  'ort',
  'executionProvider',
  'strictPlacement',
  'sessionOptions',
  'nonFiniteLoss',
];
const GROUP_KEYS = ['params', 'lr', 'kappa', 'xi', 'smallConst', 'weightDecay'];

/** A batch: per forward-model input, a Float32Array (float inputs) or a BigInt64Array (int64 inputs such as token ids). */
export type Batch = Readonly<Record<string, Float32Array | BigInt64Array>>;

/** The train step of one batch size and its session. */
interface Variant {
  trainStep: TrainStepModel;
  session: OrtSession;
}

/** The learning rate a schedule gives at `step`, or AccSGDConfigError naming `field`. */
function scheduledLr(schedule: LearningRateSchedule, step: number, field: string): number {
  let value: unknown;
  try {
    value = schedule(step);
  } catch (error) {
    if (error instanceof AccSGDError) throw error;
    throw new AccSGDConfigError(
      field,
      schedule,
      'a schedule returning a finite number >= 0',
      `schedule threw at step ${step} (${(error as Error)?.message ?? String(error)}); expected it to return a finite number >= 0`,
    );
  }
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
    throw new AccSGDConfigError(
      field,
      value,
      'a finite number >= 0',
      `schedule gave ${String(value)} at step ${step}; expected a finite number >= 0`,
    );
  return value;
}

/** Resolved hyperparameters (a schedule's value at step 0 stands for lr) and the schedule, if any. */
function readHyperparams(
  input: unknown,
  field: string,
  inherited?: Hyperparams,
  extraKeys: readonly string[] = [],
): { hyper: Hyperparams; schedule: LearningRateSchedule | null } {
  if (typeof input !== 'object' || input === null || Array.isArray(input))
    throw new AccSGDConfigError(field, input, '{ lr, kappa?, xi?, smallConst?, weightDecay? }');
  const { lr, ...rest } = input as Record<string, unknown>;
  for (const key of extraKeys) delete rest[key];
  const schedule = typeof lr === 'function' ? (lr as LearningRateSchedule) : null;
  const given = schedule ? scheduledLr(schedule, 0, `${field}.lr`) : lr;
  try {
    const hyper = resolveHyperparams(
      { ...rest, ...(given === undefined ? {} : { lr: given }) } as Partial<Hyperparams>,
      inherited,
    );
    return { hyper: assertFloat32Multipliers(hyper), schedule };
  } catch (error) {
    if (error instanceof AccSGDConfigError && !error.field.startsWith(field))
      throw new AccSGDConfigError(`${field}.${error.field}`, error.value, error.expected);
    throw error;
  }
}

/**
 * Trains an ONNX model with AccSGD, one session.run per step: the session runs the model built by
 * buildTrainStepModel (forward, loss, backward and fused update). The trainer keeps the parameters
 * and momentum buffers as ORT tensors between steps (on the GPU for 'webgpu'), feeds each group's
 * six float32 multipliers of @accsgd/core's fusedCoefficients (float32Multipliers, as OnnxAccSGD
 * does), initialises each buffer on its first step (buf = p, c0 = 0, c1 = bufFromBuf +
 * bufFromParam), and writes the trained weights back into the forward model (exportModel). The
 * running statistics of BatchNormalization nodes with training_mode=1 are kept the same way (not
 * trained: each step's BatchNormalization outputs replace them) and exported with the weights. Groups,
 * names, step counts and the state file are @accsgd/core's ParameterRegistry's, as in every
 * adapter, so exportState/importState move a run between OnnxTrainer, OnnxAccSGD, core, tfjs and
 * PyTorch. A batch of another batch size (a last partial batch) runs a train step built for that
 * size, sharing the same parameter and buffer tensors. A step is atomic: the new tensors replace
 * the old ones only after the run succeeded (and, by default, gave a finite loss). Calls take
 * effect in the order they are made (OrderedCalls).
 */
export class OnnxTrainer {
  readonly ort: OrtModule;
  readonly executionProvider: ExecutionProvider;
  private readonly forwardModel: Uint8Array;
  private readonly autodiff: TrainStepOptions;
  private readonly primary: Variant;
  private readonly variants = new Map<number, Promise<Variant>>();
  /** Per train step, its twin with scale inputs (buildTrainStepModel's `scaled`), built on first use. */
  private readonly scaledVariants = new Map<TrainStepModel, Promise<Variant>>();
  private readonly registry: ParameterRegistry;
  private readonly schedules: (LearningRateSchedule | null)[];
  /** Per train-step parameter (model order): its group, and its index in the registry. */
  private readonly groupOf: number[];
  private readonly strict: boolean;
  private readonly base: Readonly<Record<string, unknown>>;
  private readonly nonFiniteLoss: 'error' | 'allow';
  private readonly calls = new OrderedCalls();
  private readonly helpers = new Map<string, Promise<OrtSession>>();
  private params: OrtTensor[] = [];
  /**
   * Per running statistic of a training-mode BatchNormalization (trainStep.statistics' order, the
   * same in every variant): its current value. Not a parameter and not in the state file: it is
   * part of the model (exportModel), as PyTorch keeps it in the module's state_dict.
   */
  private statistics: OrtTensor[] = [];
  /** Per train-step parameter; null before its first step (or after importing a state without its buffer). */
  private buffers: (OrtTensor | null)[];
  private disposed = false;

  private constructor(init: {
    ort: OrtModule;
    ep: ExecutionProvider;
    forwardModel: Uint8Array;
    autodiff: TrainStepOptions;
    primary: Variant;
    registry: ParameterRegistry;
    schedules: (LearningRateSchedule | null)[];
    groupOf: number[];
    strict: boolean;
    base: Readonly<Record<string, unknown>>;
    nonFiniteLoss: 'error' | 'allow';
  }) {
    this.ort = init.ort;
    this.executionProvider = init.ep;
    this.forwardModel = init.forwardModel;
    this.autodiff = init.autodiff;
    this.primary = init.primary;
    this.registry = init.registry;
    this.schedules = init.schedules;
    this.groupOf = init.groupOf;
    this.strict = init.strict;
    this.base = init.base;
    this.nonFiniteLoss = init.nonFiniteLoss;
    this.buffers = new Array(init.groupOf.length).fill(null);
    this.variants.set(this.batchSize, Promise.resolve(init.primary));
  }

  /**
   * Builds and checks the train step (AccSGDConfigError for an unsupported model, an unknown option
   * or a bad value, before any session exists), creates its session and uploads the initial parameters.
   */
  static async create(forwardModel: Uint8Array, options: OnnxTrainerOptions): Promise<OnnxTrainer> {
    if (typeof options !== 'object' || options === null)
      throw new AccSGDConfigError('options', options, '{ loss, hyperparams, ... }');
    assertKnownKeys(options, TRAINER_OPTION_KEYS);
    const base = readHyperparams(options.hyperparams, 'hyperparams');
    const nonFiniteLoss = options.nonFiniteLoss ?? 'error';
    if (nonFiniteLoss !== 'error' && nonFiniteLoss !== 'allow')
      throw new AccSGDConfigError('nonFiniteLoss', nonFiniteLoss, "'error' or 'allow'");
    if (options.groups !== undefined && !Array.isArray(options.groups))
      throw new AccSGDConfigError('groups', options.groups, 'an array of { params, lr?, ... }');
    if (
      options.sessionOptions !== undefined &&
      (typeof options.sessionOptions !== 'object' || options.sessionOptions === null)
    )
      throw new AccSGDConfigError(
        'sessionOptions',
        options.sessionOptions,
        'an object of ORT session options',
      );
    const ort = resolveOrt(options.ort);
    const ep = executionProvider(options.executionProvider);
    const strict = strictPlacement(options.strictPlacement, ep);
    const given = options as unknown as Record<string, unknown>;
    const autodiff = Object.fromEntries(
      AUTODIFF_OPTION_KEYS.filter((k) => given[k] !== undefined).map((k) => [k, given[k]]),
    ) as unknown as TrainStepOptions;
    // Which parameters are trained decides the groups: build once to learn them (cheap next to a session).
    const probe = buildTrainStepModel(forwardModel, autodiff).params;
    const names = probe.map((p) => p.name);
    const declared: { hyperparams: Hyperparams; schedule: LearningRateSchedule | null; members: string[] }[] =
      [];
    const claimed = new Set<string>();
    (options.groups ?? []).forEach((group: TrainerParamGroup, g) => {
      const field = `groups[${g}]`;
      if (typeof group !== 'object' || group === null)
        throw new AccSGDConfigError(field, group, '{ params, lr?, kappa?, xi?, smallConst?, weightDecay? }');
      assertKnownKeys(group, GROUP_KEYS, field);
      const matched = selectNames(names, group.params, `${field}.params`, 'trained parameter');
      const members = matched.filter((n) => !claimed.has(n));
      if (members.length === 0)
        throw new AccSGDConfigError(
          `${field}.params`,
          group.params,
          'a pattern matching a parameter no earlier group holds',
          `holds only parameters of earlier groups (${matched.join(', ')}); a parameter joins the first group that matches it`,
        );
      for (const n of members) claimed.add(n);
      const { hyper, schedule } = readHyperparams(
        { lr: base.schedule ?? base.hyper.lr, ...group },
        field,
        base.hyper,
        ['params'],
      );
      declared.push({ hyperparams: hyper, schedule, members });
    });
    const rest = names.filter((n) => !claimed.has(n));
    if (rest.length > 0) declared.push({ hyperparams: base.hyper, schedule: base.schedule, members: rest });
    const registry = new ParameterRegistry(
      declared.map((d) => ({
        hyperparams: d.hyperparams,
        precision: 'float32' as const,
        params: d.members.map((name) => ({ name, shape: probe.find((p) => p.name === name)!.shape })),
      })),
    );
    const groupOf = names.map((n) => declared.findIndex((d) => d.members.includes(n)));
    const trainStep = buildTrainStepModel(forwardModel, autodiff, groupOf);
    const sessionBase = { ...options.sessionOptions };
    const session = await OnnxTrainer.createSession(ort, trainStep, ep, strict, sessionBase);
    const trainer = new OnnxTrainer({
      ort,
      ep,
      forwardModel: forwardModel.slice(),
      autodiff,
      primary: { trainStep, session },
      registry,
      schedules: declared.map((d) => d.schedule),
      groupOf,
      strict,
      base: sessionBase,
      nonFiniteLoss,
    });
    try {
      trainer.params = await trainer.upload(
        trainStep.params.map((p) => ({ data: p.initial, shape: p.shape })),
      );
      trainer.statistics = await trainer.upload(
        trainStep.statistics.map((s) => ({ data: s.initial, shape: s.shape })),
      );
    } catch (error) {
      await trainer.dispose();
      throw error;
    }
    return trainer;
  }

  private static createSession(
    ort: OrtModule,
    trainStep: TrainStepModel,
    ep: ExecutionProvider,
    strict: boolean,
    base: Readonly<Record<string, unknown>>,
  ): Promise<OrtSession> {
    return ort.InferenceSession.create(
      trainStep.model,
      sessionOptions({
        executionProvider: ep,
        strictPlacement: strict,
        base,
        gpuOutputs: [
          ...trainStep.params.flatMap((p) => [p.newParam, p.newBuffer]),
          ...trainStep.statistics.map((s) => s.newValue),
        ],
      }),
    );
  }

  /** The train step of the batch size the trainer was created for. */
  get trainStep(): TrainStepModel {
    return this.primary.trainStep;
  }

  /** The batch size the trainer was created for (batchSize, or the model's leading input dimension). */
  get batchSize(): number {
    return this.primary.trainStep.batchInputs[0]?.shape[0] ?? 1;
  }

  /** Names of the trained parameters (the forward model's initializers), in the model's order. */
  get paramNames(): string[] {
    return this.trainStep.params.map((p) => p.name);
  }

  /**
   * The running statistics of training-mode BatchNormalization nodes that each step updates (not
   * trained; exportModel writes their values), in the model's node order.
   */
  get runningStatisticNames(): string[] {
    return this.trainStep.statistics.map((s) => s.name);
  }

  /** Steps taken so far (restored by importState). */
  get stepCount(): number {
    let steps = 0;
    for (let g = 0; g < this.registry.groupCount; g++) steps = Math.max(steps, this.registry.step(g));
    return steps;
  }

  /** The hyperparameters of the last group (the parameters no group claims, or the only group). */
  get hyperparams(): Hyperparams {
    return this.registry.hyperparams(this.registry.groupCount - 1);
  }

  /** Each group's hyperparameters (lr: the last step's, for a schedule), member names and step count. */
  get groups(): { hyperparams: Hyperparams; params: string[]; step: number }[] {
    return this.registry.paramGroups;
  }

  /**
   * Sets the learning rate (or a schedule of the step count) of one group, or of every group.
   * Takes effect at the next step; the same session is used (the multipliers are inputs). Throws
   * AccSGDStateError while a step is still pending: await it first (as OnnxAccSGD).
   */
  setLearningRate(lr: number | LearningRateSchedule, group?: number): void {
    this.assertOpen();
    this.calls.now('setLearningRate', () => {
      const targets = group === undefined ? this.schedules.map((_, g) => g) : [group];
      if (typeof lr === 'function') {
        for (const g of targets)
          this.registry.setLearningRate(scheduledLr(lr, this.registry.step(this.groupAt(g)), 'lr'), g);
        for (const g of targets) this.schedules[g] = lr;
        return;
      }
      for (const g of targets)
        assertFloat32Multipliers({ ...this.registry.hyperparams(this.groupAt(g)), lr });
      this.registry.setLearningRate(lr, group);
      for (const g of targets) this.schedules[g] = null;
    });
  }

  /**
   * One training step on a batch: runs forward, loss, backward and the AccSGD update in one
   * session.run and returns the batch's loss (before the update). `batch` holds a Float32Array per
   * forward-model input and `labels` the float labels ('mse': targets; 'softmax-cross-entropy':
   * one-hot or soft class probabilities; 'binary-cross-entropy': targets in [0, 1]), row-major in
   * the shapes of trainStep.batchInputs / trainStep.labels, or of another batch size: a batch of n
   * rows (a last partial batch) runs the train step built for n, with the same parameters and
   * buffers (built on first use). Keep the arrays unchanged until the promise settles.
   */
  step(batch: Batch, labels?: Float32Array): Promise<number> {
    return this.queue(async () => {
      let { trainStep: t, session } = await this.variantFor(batch, labels);
      const feeds: Record<string, OrtTensor> = {};
      const expect = (
        name: string,
        where: string,
        value: unknown,
        shape: number[],
        type: 'float32' | 'int64' = 'float32',
      ) => {
        const n = shape.reduce((a, b) => a * b, 1);
        const kind = type === 'int64' ? BigInt64Array : Float32Array;
        if (!(value instanceof kind) || value.length !== n)
          throw new AccSGDConfigError(where, value, `a ${kind.name} of ${n} elements (shape [${shape}])`);
        // ORT's Tensor refuses a view of a SharedArrayBuffer (untyped): feed a copy.
        const data =
          typeof SharedArrayBuffer !== 'undefined' && value.buffer instanceof SharedArrayBuffer
            ? value.slice()
            : value;
        feeds[name] =
          data instanceof BigInt64Array
            ? new this.ort.Tensor('int64', data, shape)
            : new this.ort.Tensor('float32', data as Float32Array, shape);
      };
      for (const input of t.batchInputs)
        expect(input.name, `batch.${input.name}`, batch[input.name], input.shape, input.type);
      const host = t.hostFeeds(batch);
      for (const { input, size } of t.indexLimits) {
        // ORT would fail inside Gather with an untyped error (or ScatterND write out of bounds; on
        // WebGPU, read garbage rows). Ids computed from the batch (Identity, Reshape, Add(ids, 0))
        // are checked as computed, at the Gather.
        const direct = t.batchInputs.some((i) => i.name === input);
        const ids = (direct ? batch[input] : host[input]) as ArrayLike<bigint | number> | undefined;
        if (!ids) continue;
        let bad = -1;
        for (let k = 0; k < ids.length && bad < 0; k++) {
          const v = Number(ids[k]);
          if (!(v >= -size && v < size)) bad = k;
        }
        if (bad >= 0)
          throw new AccSGDConfigError(
            direct
              ? `batch.${input}[${bad}]`
              : `value "${input}"[${bad}] (computed from the batch's int64 inputs)`,
            ids[bad],
            `an index in [${-size}, ${size - 1}] (it selects from an axis of ${size})`,
          );
      }
      for (const h of t.hostInputs) {
        const data = host[h.name]!;
        feeds[h.name] =
          data instanceof BigInt64Array
            ? new this.ort.Tensor('int64', data, h.shape)
            : data instanceof Uint8Array
              ? new this.ort.Tensor('bool', data, h.shape)
              : new this.ort.Tensor('float32', data as Float32Array, h.shape);
      }
      if (t.labels) expect(t.labels.name, 'labels', labels, t.labels.shape);
      // Everything that can fail is checked before anything changes: scheduled learning rates too.
      const plan = this.registry.planStep(Object.fromEntries(t.params.map((p) => [p.name, true])));
      const scheduled = this.schedules.map((schedule, g) =>
        schedule ? scheduledLr(schedule, this.registry.step(g), `learning rate of group ${g}`) : undefined,
      );
      const coefficients: FusedCoefficients[] = scheduled.map((lr, g) =>
        lr === undefined
          ? plan.coefficients[g]!
          : fusedCoefficients(assertFloat32Multipliers({ ...this.registry.hyperparams(g), lr })),
      );
      const multipliers = t.coefficients.map((_, g) => {
        // A group whose members all start their buffer now takes core's first-step multipliers.
        const first = t.params.every((p, i) => p.group !== g || this.buffers[i] === null);
        return float32Multipliers(coefficients[g]!, first);
      });
      // ORT's WebGPU EP flushes subnormal multipliers (lr = 1e-40's gradient ones) to zero: the
      // train step's twin with scale inputs keeps them (scaledMultiplier); same inputs otherwise.
      const scaled =
        this.executionProvider === 'webgpu' &&
        multipliers.some((m) => m.some((v) => scaledMultiplier(v)[1] !== 1));
      if (scaled) ({ trainStep: t, session } = await this.scaledVariant(t));
      t.coefficients.forEach((names, g) => {
        names.forEach((name, k) => {
          const [c, scale] = scaled ? scaledMultiplier(multipliers[g]![k]!) : [multipliers[g]![k]!, 1];
          feeds[name] = scalar(this.ort, c);
          if (scaled) feeds[t.scales[g]![k]!] = scalar(this.ort, scale);
        });
      });
      t.params.forEach((p, i) => {
        feeds[p.name] = this.params[i]!;
        // A first step: buf = p (with c0 = 0 the buffer term vanishes; SPEC §2.1 first step).
        feeds[p.buffer] = this.buffers[i] ?? this.params[i]!;
      });
      t.statistics.forEach((s, i) => {
        feeds[s.name] = this.statistics[i]!;
      });
      const outputs = await session.run(feeds);
      const loss = (outputs[t.loss]!.data as Float32Array)[0]!;
      const fresh = [
        ...t.params.flatMap((p) => [outputs[p.newParam]!, outputs[p.newBuffer]!]),
        ...t.statistics.map((s) => outputs[s.newValue]!),
      ];
      const unchanged =
        t.statistics.length > 0 ? 'parameters, buffers and running statistics' : 'parameters and buffers';
      if (!Number.isFinite(loss) && this.nonFiniteLoss === 'error') {
        for (const tensor of fresh) tensor.dispose();
        throw new AccSGDGradientError(
          undefined,
          `the loss of step ${this.stepCount + 1} is ${loss}; ${unchanged} are unchanged (nonFiniteLoss: 'allow' applies such steps)`,
        );
      }
      if (this.nonFiniteLoss === 'error') {
        // A finite loss does not make a finite step (Sum(Sqrt(x * W)) at x = 0: loss 0, gradient
        // NaN): the new parameters and buffers are checked too, as every other adapter checks.
        let bad: Awaited<ReturnType<OnnxTrainer['firstNonFinite']>>;
        try {
          bad = await this.firstNonFinite(t.params, t.statistics, outputs);
        } catch (error) {
          for (const tensor of fresh) tensor.dispose();
          throw error;
        }
        if (bad) {
          for (const tensor of fresh) tensor.dispose();
          // A running statistic is not a parameter: no "gradient for parameter" prefix, its name in the text.
          const statistic = bad.what === 'running statistic';
          throw new AccSGDGradientError(
            statistic ? undefined : bad.param,
            `step ${this.stepCount + 1} would make its ${bad.what}${statistic ? ` "${bad.param}"` : ''} non-finite (element ${bad.element} is ${bad.value}) with a loss of ${loss}; ${unchanged} are unchanged (nonFiniteLoss: 'allow' applies such steps)`,
          );
        }
      }
      // The run succeeded: replace and dispose the previous tensors.
      for (const old of [...this.params, ...this.buffers, ...this.statistics]) old?.dispose();
      this.params = t.params.map((p) => outputs[p.newParam]!);
      this.buffers = t.params.map((p) => outputs[p.newBuffer]!);
      this.statistics = t.statistics.map((s) => outputs[s.newValue]!);
      scheduled.forEach((lr, g) => {
        // The state file records the learning rate of the last step.
        if (lr !== undefined) this.registry.setLearningRate(lr, g);
      });
      this.registry.commitStep(plan);
      return loss;
    });
  }

  /** The train step for this batch's size: the primary one, or one built (once) for another size. */
  private async variantFor(batch: Batch, labels: Float32Array | undefined): Promise<Variant> {
    const t = this.primary.trainStep;
    if (typeof batch !== 'object' || batch === null)
      throw new AccSGDConfigError('batch', batch, `{ ${t.batchInputs.map((i) => i.name).join(', ')} }`);
    for (const key of Object.keys(batch))
      if (!t.batchInputs.some((i) => i.name === key))
        throw new AccSGDConfigError(
          `batch.${key}`,
          'an array',
          `one of the model's inputs (${t.batchInputs.map((i) => i.name).join(', ')})`,
        );
    // The batch size the arrays imply, if they agree on one; otherwise the primary step reports them.
    const rows = (shape: number[], value: unknown): number | undefined => {
      const perRow = shape.slice(1).reduce((a, b) => a * b, 1);
      const length = (value as { length?: unknown } | undefined)?.length;
      if (shape.length === 0 || typeof length !== 'number' || length === 0 || length % perRow !== 0)
        return undefined;
      return length / perRow;
    };
    const sizes = [
      ...t.batchInputs.map((i) => rows(i.shape, batch[i.name])),
      ...(t.labels ? [rows(t.labels.shape, labels)] : []),
    ];
    const n = sizes[0];
    if (n === undefined || n === this.batchSize || sizes.some((s) => s !== n)) return this.primary;
    return this.cachedVariant(this.variants, n, { ...this.autodiff, batchSize: n });
  }

  /** The twin of train step `t` with scale inputs, for subnormal multipliers on WebGPU. */
  private scaledVariant(t: TrainStepModel): Promise<Variant> {
    const n = t.batchInputs[0]?.shape[0];
    const options =
      n === undefined || n === this.batchSize ? this.autodiff : { ...this.autodiff, batchSize: n };
    return this.cachedVariant(this.scaledVariants, t, options, { scaled: true });
  }

  /**
   * The train step built with these options and its session, built once per key; a build that
   * fails leaves the cache, so a later step tries again.
   */
  private cachedVariant<K>(
    cache: Map<K, Promise<Variant>>,
    key: K,
    options: Parameters<typeof buildTrainStepModel>[1],
    extra?: Parameters<typeof buildTrainStepModel>[3],
  ): Promise<Variant> {
    let variant = cache.get(key);
    if (!variant) {
      variant = (async () => {
        const trainStep = buildTrainStepModel(this.forwardModel, options, this.groupOf, extra);
        const session = await OnnxTrainer.createSession(
          this.ort,
          trainStep,
          this.executionProvider,
          this.strict,
          this.base,
        );
        return { trainStep, session };
      })();
      cache.set(key, variant);
      variant.catch(() => cache.delete(key));
    }
    return variant;
  }

  private groupAt(group: number): number {
    if (!Number.isInteger(group) || group < 0 || group >= this.registry.groupCount)
      throw new AccSGDConfigError('group', group, `a group index from 0 to ${this.registry.groupCount - 1}`);
    return group;
  }

  /**
   * The state file of SPEC §4 (@accsgd/core's encodeState: the momentum buffers, named
   * `<param>.momentum_buffer`, and the groups' hyperparameters and step counts), which
   * OnnxAccSGD, core's AccSGD, @accsgd/tfjs and the PyTorch reference import. The parameters
   * themselves are in exportModel(): resume a run with a trainer created from exportModel()'s
   * bytes, then importState().
   */
  exportState(): Promise<Uint8Array> {
    return this.queue(async () => {
      const copies = new Map<string, Float32Array>();
      for (const [i, p] of this.trainStep.params.entries()) {
        const buffer = this.buffers[i];
        if (buffer) copies.set(p.name, await this.download(buffer));
      }
      return encodeState(this.registry.snapshot((index) => copies.get(this.registry.name(index))!));
    });
  }

  /**
   * Replaces buffers, hyperparameters and step counts from a state file (same groups, same member
   * names, buffer shapes equal to the parameters'), or throws AccSGDStateError and changes
   * nothing. A schedule set on a group keeps deciding its learning rate, from the restored step count.
   */
  importState(bytes: Uint8Array): Promise<void> {
    return this.queue(async () => {
      const plan = this.registry.planImport(decodeState(bytes));
      const incoming: { index: number; data: Float32Array }[] = [];
      for (const [i, p] of this.trainStep.params.entries()) {
        const stored = plan.buffers[this.registry.indexOf(p.name)];
        if (!stored) continue;
        const data = new Float32Array(stored); // float64 rounds once
        if (this.nonFiniteLoss === 'error') {
          const bad = data.findIndex((v) => !Number.isFinite(v));
          if (bad >= 0)
            throw new AccSGDStateError(
              `buffer "${p.name}.momentum_buffer": element ${bad} is ${stored[bad]} (non-finite buffers are rejected unless nonFiniteLoss is 'allow')`,
            );
        }
        incoming.push({ index: i, data });
      }
      const uploaded = await this.upload(
        incoming.map(({ index, data }) => ({ data, shape: this.trainStep.params[index]!.shape })),
      );
      // Everything is checked and uploaded: from here nothing can fail.
      this.registry.commitImport(plan);
      for (const b of this.buffers) b?.dispose();
      this.buffers = this.buffers.map(() => null);
      incoming.forEach(({ index }, k) => {
        this.buffers[index] = uploaded[k]!;
      });
    });
  }

  /**
   * Copies of every parameter and buffer (buffers null before the first step), and of every running
   * statistic of a training-mode BatchNormalization, keyed by name.
   */
  read(): Promise<{
    params: Map<string, Float32Array>;
    buffers: Map<string, Float32Array | null>;
    statistics: Map<string, Float32Array>;
  }> {
    return this.queue(async () => {
      const { params, statistics } = await this.readNow();
      const buffers = new Map<string, Float32Array | null>();
      for (const [i, p] of this.trainStep.params.entries()) {
        const buffer = this.buffers[i];
        buffers.set(p.name, buffer ? await this.download(buffer) : null);
      }
      return { params, buffers, statistics };
    });
  }

  /**
   * The forward model with the trained values in place of its initializers, running statistics
   * included: a plain model (same inputs, outputs, nodes and opset) for any ONNX runtime, and the
   * model to resume from. `{ inference: true }` also turns each BatchNormalization with
   * training_mode=1 into its inference form, which normalises with the running statistics (as
   * PyTorch's model.eval()); as exported, ONNX Runtime normalises with the batch's statistics.
   */
  exportModel(options: { inference?: boolean } = {}): Promise<Uint8Array> {
    if (typeof options !== 'object' || options === null)
      return Promise.reject(new AccSGDConfigError('options', options, '{ inference?: boolean }'));
    try {
      assertKnownKeys(options, ['inference']);
    } catch (error) {
      return Promise.reject(error);
    }
    const inference = options.inference ?? false;
    if (typeof inference !== 'boolean')
      return Promise.reject(new AccSGDConfigError('inference', inference, 'true or false'));
    return this.queue(async () => {
      const { params, statistics } = await this.readNow();
      const model = fromBinary(ModelProtoSchema, this.forwardModel.slice());
      if (inference) toInferenceForm(model);
      for (const t of model.graph!.initializer) {
        const values = params.get(t.name) ?? statistics.get(t.name);
        if (!values) continue;
        t.dataType = TensorProto_DataType.FLOAT;
        t.floatData = [];
        t.rawData = new Uint8Array(Float32Array.from(values).buffer);
      }
      return toBinary(ModelProtoSchema, model);
    });
  }

  /**
   * Releases the sessions and tensors once the calls made before it have taken effect (a step made
   * just before dispose() still applies); calls made after it throw. Safe to call twice.
   */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.calls.idle();
    for (const t of [...this.params, ...this.buffers, ...this.statistics]) t?.dispose();
    this.params = [];
    this.buffers = [];
    this.statistics = [];
    const helpers = [...this.helpers.values()];
    this.helpers.clear();
    const variants = [...this.variants.values(), ...this.scaledVariants.values()];
    this.variants.clear();
    this.scaledVariants.clear();
    await Promise.all([
      ...variants.map((v) => v.then((x) => x.session.release()).catch(() => undefined)),
      ...helpers.map((s) => s.then((x) => x.release()).catch(() => undefined)),
    ]);
  }

  private async readNow(): Promise<{
    params: Map<string, Float32Array>;
    statistics: Map<string, Float32Array>;
  }> {
    const params = new Map<string, Float32Array>();
    for (const [i, p] of this.trainStep.params.entries())
      params.set(p.name, await this.download(this.params[i]!));
    const statistics = new Map<string, Float32Array>();
    for (const [i, s] of this.trainStep.statistics.entries())
      statistics.set(s.name, await this.download(this.statistics[i]!));
    return { params, statistics };
  }

  /** An Identity session for tensors of `rank` axes; outputs on the GPU when `toGpu`. */
  private identity(rank: number, toGpu: boolean): Promise<OrtSession> {
    const key = `${rank}:${toGpu}`;
    let session = this.helpers.get(key);
    if (!session) {
      const dims = Array.from({ length: rank }, (_, k) => `d${k}`);
      const model = encodeModel({
        name: 'accsgd_identity',
        nodes: [node('Identity', ['x'], ['y'])],
        inputs: [tensorInfo('x', dims)],
        outputs: [tensorInfo('y', dims)],
      });
      session = this.ort.InferenceSession.create(
        model,
        sessionOptions({
          executionProvider: this.executionProvider,
          strictPlacement: this.strict,
          base: this.base,
          gpuOutputs: toGpu ? ['y'] : [],
        }),
      );
      this.helpers.set(key, session);
      session.catch(() => this.helpers.delete(key));
    }
    return session;
  }

  private async upload(values: { data: Float32Array; shape: number[] }[]): Promise<OrtTensor[]> {
    const cpu = values.map((v) => new this.ort.Tensor('float32', Float32Array.from(v.data), v.shape));
    if (this.executionProvider !== 'webgpu') return cpu;
    const out: OrtTensor[] = [];
    try {
      for (const t of cpu) out.push((await (await this.identity(t.dims.length, true)).run({ x: t })).y!);
    } catch (error) {
      for (const t of out) t.dispose();
      throw error;
    }
    return out;
  }

  private async download(tensor: OrtTensor): Promise<Float32Array> {
    if (tensor.location === 'cpu') return Float32Array.from(tensor.data as Float32Array);
    // Never getData() on a GPU tensor (in Node that aborts the process): copy through Identity.
    const { y } = await (await this.identity(tensor.dims.length, false)).run({ x: tensor });
    try {
      return Float32Array.from(y!.data as Float32Array);
    } finally {
      y!.dispose();
    }
  }

  /**
   * The first new parameter or buffer of a step that holds a NaN or an infinity: CPU tensors are
   * scanned here; GPU tensors are checked on the GPU (buildFiniteCheckModel, one number read back
   * per tensor) and only a flagged one is read back whole.
   */
  private async firstNonFinite(
    params: readonly { name: string; newParam: string; newBuffer: string; shape: number[] }[],
    statistics: readonly { name: string; newValue: string; shape: number[] }[],
    outputs: Record<string, OrtTensor>,
  ): Promise<{ param: string; what: string; element: number; value: number } | undefined> {
    const tensors = [
      ...params.flatMap((p) => [
        { param: p.name, what: 'parameter', tensor: outputs[p.newParam]!, shape: p.shape },
        { param: p.name, what: 'momentum buffer', tensor: outputs[p.newBuffer]!, shape: p.shape },
      ]),
      ...statistics.map((s) => ({
        param: s.name,
        what: 'running statistic',
        tensor: outputs[s.newValue]!,
        shape: s.shape,
      })),
    ];
    const onGpu = tensors.filter((x) => x.tensor.location !== 'cpu');
    let flagged = tensors.filter((x) => x.tensor.location === 'cpu');
    if (onGpu.length > 0) {
      const key = `finite:${onGpu.map((x) => x.shape.join('x')).join(',')}`;
      let session = this.helpers.get(key);
      if (!session) {
        session = this.ort.InferenceSession.create(
          buildFiniteCheckModel(onGpu.map((x) => x.shape)),
          sessionOptions({
            executionProvider: this.executionProvider,
            strictPlacement: this.strict,
            base: this.base,
          }),
        );
        this.helpers.set(key, session);
        session.catch(() => this.helpers.delete(key));
      }
      const flags = await (await session).run(Object.fromEntries(onGpu.map((x, k) => [`x${k}`, x.tensor])));
      const values = onGpu.map((_, k) => {
        const flag = flags[`finite${k}`]!;
        const value = (flag.data as Float32Array)[0]!;
        flag.dispose();
        return value;
      });
      flagged = [...flagged, ...onGpu.filter((_, k) => !Number.isFinite(values[k]))];
    }
    for (const x of flagged) {
      const data =
        x.tensor.location === 'cpu' ? (x.tensor.data as Float32Array) : await this.download(x.tensor);
      const element = firstNonFinite(data);
      if (element >= 0) return { param: x.param, what: x.what, element, value: data[element]! };
    }
    return undefined;
  }

  private assertOpen(): void {
    if (this.disposed) throw new AccSGDStateError('this OnnxTrainer has been disposed');
  }

  /**
   * Queues a call if the trainer is open when the call is made (not when it starts): dispose()
   * waits for the calls made before it, so `p = trainer.step(b); trainer.dispose()` applies the step.
   */
  private queue<T>(call: () => Promise<T>): Promise<T> {
    if (this.disposed) return Promise.reject(new AccSGDStateError('this OnnxTrainer has been disposed'));
    return this.calls.run(call);
  }
}
