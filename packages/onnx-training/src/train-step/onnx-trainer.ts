import {
  AccSGDConfigError,
  AccSGDGradientError,
  AccSGDStateError,
  assertFloat32Multipliers,
  float32Multipliers,
  fusedCoefficients,
  type Hyperparams,
  type HyperparamsInput,
  OrderedCalls,
  resolveHyperparams,
} from '@accsgd/core';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType } from 'onnx-buf';
import { encodeModel, node, tensorInfo } from '../graphs/onnx-proto.js';
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
import { buildTrainStepModel, type TrainStepModel, type TrainStepOptions } from './train-step-model.js';

export interface OnnxTrainerOptions extends TrainStepOptions {
  /** AccSGD hyperparameters (lr required; kappa, xi, smallConst, weightDecay as in @accsgd/core). */
  hyperparams: HyperparamsInput;
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

/** A batch: per forward-model input, a Float32Array (float inputs) or a BigInt64Array (int64 inputs such as token ids). */
export type Batch = Readonly<Record<string, Float32Array | BigInt64Array>>;

/**
 * Trains an ONNX model with AccSGD, one session.run per step: the session runs the model built by
 * buildTrainStepModel (forward, loss, backward and fused update). The trainer keeps the parameters
 * and momentum buffers as ORT tensors between steps (on the GPU for 'webgpu'), feeds the six
 * float32 multipliers of @accsgd/core's fusedCoefficients (float32Multipliers, as OnnxAccSGD does),
 * initialises each buffer on the first step (buf = p, c0 = 0, c1 = bufFromBuf + bufFromParam), and
 * writes the trained weights back into the forward model (exportModel). A step is atomic: the new
 * tensors replace the old ones only after the run succeeded (and, by default, gave a finite loss).
 * Calls take effect in the order they are made (OrderedCalls).
 */
export class OnnxTrainer {
  readonly ort: OrtModule;
  readonly executionProvider: ExecutionProvider;
  readonly trainStep: TrainStepModel;
  private readonly forwardModel: Uint8Array;
  private readonly session: OrtSession;
  private readonly strict: boolean;
  private readonly base: Readonly<Record<string, unknown>>;
  private readonly nonFiniteLoss: 'error' | 'allow';
  private readonly calls = new OrderedCalls();
  private readonly helpers = new Map<string, Promise<OrtSession>>();
  private hyper: Hyperparams;
  private params: OrtTensor[] = [];
  private buffers: OrtTensor[] | null = null;
  private steps = 0;
  private disposed = false;

  private constructor(init: {
    ort: OrtModule;
    ep: ExecutionProvider;
    trainStep: TrainStepModel;
    forwardModel: Uint8Array;
    session: OrtSession;
    strict: boolean;
    base: Readonly<Record<string, unknown>>;
    hyper: Hyperparams;
    nonFiniteLoss: 'error' | 'allow';
  }) {
    this.ort = init.ort;
    this.executionProvider = init.ep;
    this.trainStep = init.trainStep;
    this.forwardModel = init.forwardModel;
    this.session = init.session;
    this.strict = init.strict;
    this.base = init.base;
    this.hyper = init.hyper;
    this.nonFiniteLoss = init.nonFiniteLoss;
  }

  /**
   * Builds and checks the train step (AccSGDConfigError for an unsupported model, before any
   * session exists), creates its session and uploads the initial parameters.
   */
  static async create(forwardModel: Uint8Array, options: OnnxTrainerOptions): Promise<OnnxTrainer> {
    if (typeof options !== 'object' || options === null)
      throw new AccSGDConfigError('options', options, '{ loss, hyperparams, ... }');
    const hyper = assertFloat32Multipliers(resolveHyperparams(options.hyperparams as Partial<Hyperparams>));
    const nonFiniteLoss = options.nonFiniteLoss ?? 'error';
    if (nonFiniteLoss !== 'error' && nonFiniteLoss !== 'allow')
      throw new AccSGDConfigError('nonFiniteLoss', nonFiniteLoss, "'error' or 'allow'");
    const ort = resolveOrt(options.ort);
    const ep = executionProvider(options.executionProvider);
    const strict = strictPlacement(options.strictPlacement, ep);
    const trainStep = buildTrainStepModel(forwardModel, options);
    const base = { ...options.sessionOptions };
    const session = await ort.InferenceSession.create(
      trainStep.model,
      sessionOptions({
        executionProvider: ep,
        strictPlacement: strict,
        base,
        gpuOutputs: trainStep.params.flatMap((p) => [p.newParam, p.newBuffer]),
      }),
    );
    const trainer = new OnnxTrainer({
      ort,
      ep,
      trainStep,
      forwardModel: forwardModel.slice(),
      session,
      strict,
      base,
      hyper,
      nonFiniteLoss,
    });
    try {
      trainer.params = await trainer.upload(
        trainStep.params.map((p) => ({ data: p.initial, shape: p.shape })),
      );
    } catch (error) {
      await trainer.dispose();
      throw error;
    }
    return trainer;
  }

  /** Names of the trained parameters (the forward model's initializers), in the model's order. */
  get paramNames(): string[] {
    return this.trainStep.params.map((p) => p.name);
  }

  /** Steps taken so far. */
  get stepCount(): number {
    return this.steps;
  }

  get hyperparams(): Hyperparams {
    return { ...this.hyper };
  }

  /**
   * Takes effect at the next step; the same session is used (the multipliers are inputs). Throws
   * AccSGDStateError while a step is still pending: await it first (as OnnxAccSGD).
   */
  setLearningRate(lr: number): void {
    this.assertOpen();
    this.calls.now('setLearningRate', () => {
      this.hyper = assertFloat32Multipliers(resolveHyperparams({ ...this.hyper, lr }));
    });
  }

  /**
   * One training step on a batch: runs forward, loss, backward and the AccSGD update in one
   * session.run and returns the batch's loss (before the update). `batch` holds a Float32Array per
   * forward-model input and `labels` the float labels ('mse': targets; 'softmax-cross-entropy':
   * one-hot or soft class probabilities), row-major in the shapes of trainStep.batchInputs /
   * trainStep.labels. Keep the arrays unchanged until the promise settles.
   */
  step(batch: Batch, labels?: Float32Array): Promise<number> {
    return this.calls.run(async () => {
      this.assertOpen();
      const t = this.trainStep;
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
        feeds[name] =
          value instanceof BigInt64Array
            ? new this.ort.Tensor('int64', value, shape)
            : new this.ort.Tensor('float32', value as Float32Array, shape);
      };
      if (typeof batch !== 'object' || batch === null)
        throw new AccSGDConfigError('batch', batch, `{ ${t.batchInputs.map((i) => i.name).join(', ')} }`);
      for (const input of t.batchInputs)
        expect(input.name, `batch.${input.name}`, batch[input.name], input.shape, input.type);
      for (const key of Object.keys(batch))
        if (!t.batchInputs.some((i) => i.name === key))
          throw new AccSGDConfigError(
            `batch.${key}`,
            'an array',
            `one of the model's inputs (${t.batchInputs.map((i) => i.name).join(', ')})`,
          );
      for (const { input, size } of t.indexLimits) {
        // ORT would fail inside Gather with an untyped error (or ScatterND write out of bounds).
        const ids = batch[input] as BigInt64Array;
        const bad = ids.findIndex((v) => v < -size || v >= size);
        if (bad >= 0)
          throw new AccSGDConfigError(
            `batch.${input}[${bad}]`,
            ids[bad],
            `an index in [${-size}, ${size - 1}] (it selects from an axis of ${size})`,
          );
      }
      const host = t.hostFeeds(batch);
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
      const first = this.buffers === null;
      const multipliers = float32Multipliers(fusedCoefficients(this.hyper), first);
      t.coefficients.forEach((name, k) => {
        feeds[name] = scalar(this.ort, multipliers[k]!);
      });
      t.params.forEach((p, i) => {
        feeds[p.name] = this.params[i]!;
        // First step: buf = p (with c0 = 0 the buffer term vanishes; SPEC §2.1 first step).
        feeds[p.buffer] = first ? this.params[i]! : this.buffers![i]!;
      });
      const outputs = await this.session.run(feeds);
      const loss = (outputs[t.loss]!.data as Float32Array)[0]!;
      const fresh = t.params.flatMap((p) => [outputs[p.newParam]!, outputs[p.newBuffer]!]);
      if (!Number.isFinite(loss) && this.nonFiniteLoss === 'error') {
        for (const tensor of fresh) tensor.dispose();
        throw new AccSGDGradientError(
          undefined,
          `the loss of step ${this.steps + 1} is ${loss}; parameters and buffers are unchanged (nonFiniteLoss: 'allow' applies such steps)`,
        );
      }
      // The run succeeded: replace and dispose the previous tensors.
      for (const old of [...this.params, ...(this.buffers ?? [])]) old.dispose();
      this.params = t.params.map((p) => outputs[p.newParam]!);
      this.buffers = t.params.map((p) => outputs[p.newBuffer]!);
      this.steps++;
      return loss;
    });
  }

  /** Copies of every parameter and buffer (buffers null before the first step), keyed by name. */
  read(): Promise<{ params: Map<string, Float32Array>; buffers: Map<string, Float32Array | null> }> {
    return this.calls.run(async () => {
      this.assertOpen();
      const params = new Map<string, Float32Array>();
      const buffers = new Map<string, Float32Array | null>();
      for (const [i, p] of this.trainStep.params.entries()) {
        params.set(p.name, await this.download(this.params[i]!));
        buffers.set(p.name, this.buffers ? await this.download(this.buffers[i]!) : null);
      }
      return { params, buffers };
    });
  }

  /**
   * The forward model with the trained values in place of its initializers: a plain inference
   * model (same inputs, outputs, nodes and opset) for any ONNX runtime.
   */
  exportModel(): Promise<Uint8Array> {
    return this.calls.run(async () => {
      const { params } = await this.readNow();
      const model = fromBinary(ModelProtoSchema, this.forwardModel.slice());
      for (const t of model.graph!.initializer) {
        const values = params.get(t.name);
        if (!values) continue;
        t.dataType = TensorProto_DataType.FLOAT;
        t.floatData = [];
        t.rawData = new Uint8Array(Float32Array.from(values).buffer);
      }
      return toBinary(ModelProtoSchema, model);
    });
  }

  /** Releases the sessions and tensors after pending calls settle; later calls throw. Safe to call twice. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.calls.idle();
    for (const t of [...this.params, ...(this.buffers ?? [])]) t.dispose();
    this.params = [];
    this.buffers = null;
    const helpers = [...this.helpers.values()];
    this.helpers.clear();
    await Promise.all([
      this.session.release().catch(() => undefined),
      ...helpers.map((s) => s.then((x) => x.release()).catch(() => undefined)),
    ]);
  }

  private async readNow(): Promise<{ params: Map<string, Float32Array> }> {
    this.assertOpen();
    const params = new Map<string, Float32Array>();
    for (const [i, p] of this.trainStep.params.entries())
      params.set(p.name, await this.download(this.params[i]!));
    return { params };
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

  private assertOpen(): void {
    if (this.disposed) throw new AccSGDStateError('this OnnxTrainer has been disposed');
  }
}
