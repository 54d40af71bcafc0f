import {
  AccSGDConfigError,
  AccSGDGradientError,
  AccSGDStateError,
  decodeState,
  encodeState,
  firstNonFinite,
  float32Multipliers,
  type Hyperparams,
  type HyperparamsInput,
  type NonFinitePolicy,
  nonFinitePolicy,
  OrderedCalls,
  ParameterRegistry,
  rejectNonFinite,
  resolveHyperparams,
  type StepResult,
} from '@accsgd/core';
import {
  buildFlatUpdateGraph,
  buildSliceSplitModel,
  FLAT_SEGMENT_ELEMENTS,
  type FlatUpdateMode,
  flatSegments,
  flatUpdateNames,
  splitWidthAfterRefusal,
} from './graphs/flat-update-graph.js';
import { scaledMultiplier } from './graphs/update-graph.js';
import { buildIdentityModel } from './graphs/utility-graphs.js';
import { CpuParameterStore, type CpuStepWork } from './kernels/cpu-update.js';
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
} from './runtime.js';

export interface ParamInput {
  /** Default: the parameter's index over all groups ("0", "1", ...), as in a PyTorch state_dict. */
  name?: string;
  /** Default: [data.length]. */
  shape?: readonly number[];
  /** Initial values, copied (float64 rounded once to float32). */
  data: Float32Array | Float64Array | readonly number[];
}

export interface ParamGroupInput extends Partial<Hyperparams> {
  params: readonly ParamInput[];
}

export interface OnnxAccSGDOptions {
  /** The ONNX Runtime module; default: globalThis[Symbol.for('onnxruntime')] (how transformers.js shares its ORT). */
  ort?: OrtModule;
  /** 'cpu' (default) or 'webgpu' with onnxruntime-node; 'wasm' with onnxruntime-web ('webgpu' with onnxruntime-web/webgpu in a browser). */
  executionProvider?: ExecutionProvider;
  /** What a step does with a NaN or infinite gradient (default 'error'); see @accsgd/core. */
  nonFinite?: NonFinitePolicy;
  /**
   * Create every session with ORT's disable_cpu_ep_fallback, so a node the execution provider
   * cannot run fails session creation instead of running on the CPU. Default false.
   */
  strictPlacement?: boolean;
  /** Update sessions kept on the graph path (one per mode: first step, later steps, mixed); default 8. */
  maxCachedSessions?: number;
  /**
   * Run the update as the ONNX graph on 'cpu' and 'wasm' too (default false). There, parameters and
   * buffers are CPU memory that JavaScript reaches, and by default @accsgd/core's fused SIMD kernel
   * updates them in place: one pass over memory instead of ORT's ten, no session to build. On
   * 'webgpu' the graph always runs. Both give the same bits.
   */
  updateGraph?: boolean;
  /**
   * Further ORT session options for every session, e.g. { intraOpNumThreads: 1 }. The execution
   * provider, output locations and strict placement are this class's and override these.
   */
  sessionOptions?: Readonly<Record<string, unknown>>;
}

type Gradient = Float32Array | Float64Array;

const OPTION_KEYS = [
  'ort',
  'executionProvider',
  'nonFinite',
  'strictPlacement',
  'maxCachedSessions',
  'updateGraph',
  'sessionOptions',
] as const satisfies readonly (keyof OnnxAccSGDOptions)[];

/** ORT's Tensor refuses views of a SharedArrayBuffer (untyped); a copy is what the caller meant. */
const unshared = (a: Float32Array): Float32Array =>
  typeof SharedArrayBuffer !== 'undefined' && a.buffer instanceof SharedArrayBuffer ? a.slice() : a;

/**
 * AccSGD on ONNX Runtime, the fused form of SPEC §2.1 in @accsgd/core's float32 order:
 *
 *   buf' = (c0 * buf + c1 * p) + c2 * g            c0..c5: fusedCoefficients, rounded once
 *   p'   = (c3 * p + c4 * g) + c5 * buf'           first step: buf' = (bufFromBuf + bufFromParam) p + c2 g
 *
 * On 'cpu' and 'wasm' the parameters and buffers live in a CpuParameterStore and core's fused
 * kernel updates them in place (no session). On 'webgpu' (or with updateGraph) each step runs,
 * per group, one ONNX graph of standard ai.onnx Mul, Add and Where nodes over the group's flat
 * tensors (buildFlatUpdateGraph), with the multipliers fed as inputs, so learning-rate changes and
 * patterns of missing gradients reuse the session; each parameter's own tensor is then cut from
 * the flat one. Groups, names, shapes, step counts, buffer presence, import matching and export
 * snapshots are @accsgd/core's ParameterRegistry. On 'webgpu' parameters and buffers stay on the
 * GPU between steps (ORT output tensors with preferredOutputLocation 'gpu-buffer'), read back
 * through a tiny Identity session. A step is atomic: every gradient is checked before anything
 * changes, and the new tensors replace the old ones only after every run succeeds. Asynchronous calls take effect in the order they are made
 * (OrderedCalls); setLearningRate while one is pending is an AccSGDStateError.
 */
export class OnnxAccSGD {
  readonly executionProvider: ExecutionProvider;
  readonly nonFinite: NonFinitePolicy;
  readonly ort: OrtModule;
  private readonly registry: ParameterRegistry;
  private readonly calls = new OrderedCalls();
  private readonly strictPlacement: boolean;
  private readonly maxCachedSessions: number;
  private readonly baseSessionOptions: Readonly<Record<string, unknown>>;
  /**
   * The graph path ('webgpu', or updateGraph): each group's parameters concatenated in member
   * order (flat, float32; a group over FLAT_SEGMENT_ELEMENTS in several segments, indexed here), and their momentum buffers at the same offsets (zeros until a member's
   * first step; the registry says which members have one). One update run per group, from one
   * session per mode, whatever the parameter count.
   */
  private readonly flatParams: OrtTensor[] = [];
  private readonly flatBuffers: OrtTensor[] = [];
  /**
   * Graph path: each parameter's own tensor, cut from its group's flat tensor after every step
   * that updates the group (the flat tensor itself for a group of one), for paramTensor().
   */
  private readonly params: OrtTensor[] = [];
  /** Per flat segment, its parameter indices (consecutive); per parameter, its offset and segment. */
  private readonly members: number[][] = [];
  private readonly offsets: number[] = [];
  private readonly segmentOf: number[] = [];
  /** Per flat segment, the group whose hyperparameters it takes. */
  private readonly segmentGroup: number[] = [];
  /**
   * On 'cpu' and 'wasm' (unless updateGraph): the parameters and buffers themselves, updated by
   * core's kernel; `params` and `buffers` then stay empty, and `cpuTensors` holds the ORT tensors
   * handed out by paramTensor(), views of the store made on demand and retired by the next step.
   */
  private readonly cpu: CpuParameterStore | null;
  private readonly cpuTensors: (OrtTensor | null)[];
  private readonly sessions = new Map<string, Promise<OrtSession>>();
  private readonly helpers = new Map<string, Promise<OrtSession>>();
  /** Parameters one Slice + Split run of cut() hands out, once known (see splitWidth()). */
  private splitWidthFound: Promise<number> | null = null;
  private disposed = false;
  /**
   * Tensors this optimizer has disposed (replaced by a step, freed by dispose): a handle kept from
   * paramTensor() past its step is refused by download() with a typed error; reading a disposed
   * GPU tensor would throw a RangeError in ORT and can crash the process.
   */
  private readonly retired = new WeakSet<OrtTensor>();

  private constructor(
    registry: ParameterRegistry,
    ort: OrtModule,
    options: Required<Omit<OnnxAccSGDOptions, 'ort' | 'updateGraph'>>,
    cpu: CpuParameterStore | null,
  ) {
    this.registry = registry;
    this.ort = ort;
    this.executionProvider = options.executionProvider;
    this.nonFinite = options.nonFinite;
    this.strictPlacement = options.strictPlacement;
    this.maxCachedSessions = options.maxCachedSessions;
    this.baseSessionOptions = options.sessionOptions;
    const lengths = Array.from({ length: registry.size }, (_, i) => registry.length(i));
    const groupSizes = registry.paramGroups.map((g) => g.params.length);
    for (const segment of flatSegments(lengths, groupSizes, FLAT_SEGMENT_ELEMENTS)) {
      let offset = 0;
      for (const i of segment.members) {
        this.offsets.push(offset);
        this.segmentOf.push(this.members.length);
        offset += lengths[i]!;
      }
      this.members.push(segment.members);
      this.segmentGroup.push(segment.group);
    }
    this.cpu = cpu;
    this.cpuTensors = new Array(registry.size).fill(null);
  }

  /**
   * Checks the groups (AccSGDConfigError naming what is wrong) and copies the initial values into
   * ORT tensors (uploaded to the GPU on 'webgpu').
   */
  static async create(
    groups: readonly ParamGroupInput[],
    defaults: HyperparamsInput,
    options: OnnxAccSGDOptions = {},
  ): Promise<OnnxAccSGD> {
    if (typeof options !== 'object' || options === null || Array.isArray(options))
      throw new AccSGDConfigError('options', options, `an object of options (${OPTION_KEYS.join(', ')})`);
    for (const key of Object.keys(options))
      if (!(OPTION_KEYS as readonly string[]).includes(key))
        throw new AccSGDConfigError(
          `options.${key}`,
          (options as Record<string, unknown>)[key],
          `one of ${OPTION_KEYS.join(', ')}`,
          `is not an OnnxAccSGD option (expected one of ${OPTION_KEYS.join(', ')})`,
        );
    const ort = resolveOrt(options.ort);
    const ep = executionProvider(options.executionProvider);
    const maxCachedSessions = options.maxCachedSessions ?? 8;
    // NaN or a string would make the eviction test (size > max) always false: no eviction at all.
    if (!Number.isSafeInteger(maxCachedSessions) || maxCachedSessions < 1)
      throw new AccSGDConfigError('maxCachedSessions', maxCachedSessions, 'an integer >= 1');
    const extra = options.sessionOptions;
    if (extra !== undefined && (typeof extra !== 'object' || extra === null || Array.isArray(extra)))
      throw new AccSGDConfigError('sessionOptions', extra, 'an object of ONNX Runtime session options');
    const updateGraph = options.updateGraph ?? false;
    if (typeof updateGraph !== 'boolean')
      throw new AccSGDConfigError('updateGraph', updateGraph, 'true or false');
    const resolved = {
      executionProvider: ep,
      nonFinite: nonFinitePolicy(options.nonFinite),
      strictPlacement: strictPlacement(options.strictPlacement, ep),
      maxCachedSessions,
      sessionOptions: { ...extra },
    };
    const { registry, initial } = readGroups(groups, defaults);
    const cpu = ep !== 'webgpu' && !updateGraph ? new CpuParameterStore(initial) : null;
    const optimizer = new OnnxAccSGD(registry, ort, resolved, cpu);
    if (cpu) return optimizer;
    try {
      const flat = optimizer.members.map((members) => {
        const values = new Float32Array(optimizer.groupLength(members));
        for (const i of members) values.set(initial[i]!, optimizer.offsets[i]);
        return values;
      });
      optimizer.flatParams.push(...(await optimizer.upload(flat)));
      optimizer.flatBuffers.push(...(await optimizer.upload(flat.map((v) => new Float32Array(v.length)))));
      for (let g = 0; g < flat.length; g++)
        optimizer.params.push(...(await optimizer.cut(g, optimizer.flatParams[g]!)));
    } catch (error) {
      await optimizer.dispose();
      throw error;
    }
    return optimizer;
  }

  get paramNames(): string[] {
    return this.registry.paramNames;
  }

  /** Each group's hyperparameters, member names and step count (copies). */
  get groups(): { hyperparams: Hyperparams; params: string[]; step: number }[] {
    return this.registry.paramGroups;
  }

  /**
   * The live ORT tensor of a parameter (flat, float32; on the GPU for 'webgpu'), to feed to a model.
   * It belongs to the optimizer and is disposed by the next step that updates it: do not keep it.
   */
  paramTensor(name: string): OrtTensor {
    this.assertOpen();
    const index = this.registry.indexOf(name);
    if (!this.cpu) return this.params[index]!;
    let tensor = this.cpuTensors[index];
    if (!tensor) {
      const view = this.cpu.param(index);
      tensor = new this.ort.Tensor('float32', view, [view.length]);
      this.cpuTensors[index] = tensor;
    }
    return tensor;
  }

  /** Sets the learning rate of one group, or of every group; takes effect at the next step, same session. */
  setLearningRate(lr: number, group?: number): void {
    this.assertOpen();
    this.calls.now('setLearningRate', () => this.registry.setLearningRate(lr, group));
  }

  /**
   * One step. `grads` is keyed by parameter name (or aligned with the parameters, an array); null
   * or absent: no gradient this step (the parameter and its buffer are untouched). Each gradient is
   * a Float32Array or Float64Array (rounded to float32) with the parameter's element count. Keep the
   * arrays unchanged until the returned promise settles.
   */
  step(
    grads: Readonly<Record<string, Gradient | null | undefined>> | readonly (Gradient | null | undefined)[],
  ): Promise<StepResult> {
    return this.queue(async () => {
      const plan = this.registry.planStep<unknown>(grads);
      const cpu = this.cpu;
      const work: CpuStepWork[] = [];
      for (const item of plan.work) {
        const { index, grad } = item;
        const isFloat32 = grad instanceof Float32Array;
        if (!(isFloat32 || grad instanceof Float64Array))
          throw new AccSGDGradientError(
            item.name,
            `expected a Float32Array or Float64Array, got ${Object.prototype.toString.call(grad)}`,
          );
        const size = this.registry.length(index);
        if (grad.length !== size)
          throw new AccSGDGradientError(item.name, `has ${grad.length} elements; the parameter has ${size}`);
        // The common case, a float32 gradient the CPU store reads as it is: the plan's own entry
        // serves (it has every CpuStepWork field), so thousands of parameters allocate nothing here.
        if (isFloat32 && cpu && !cpu.owns(grad)) {
          work.push(item as CpuStepWork);
          continue;
        }
        // A float64 gradient is rounded to float32 first (1e39 is finite but overflows). A float32
        // one viewing the store's memory is copied, as the store writes that memory while it reads
        // gradients; ORT's Tensor (the graph path) takes no SharedArrayBuffer view.
        work.push({
          index,
          group: item.group,
          first: item.first,
          grad: isFloat32 ? (cpu ? grad.slice() : unshared(grad)) : new Float32Array(grad),
        });
      }
      // On the CPU store, one SIMD scan over staged gradients says whether any fails; only then
      // does the loop below look through each, in the order given, for the first bad one.
      if (this.nonFinite !== 'allow' && (!this.cpu || this.cpu.firstNonFinite(work))) {
        for (const { index, grad } of work) {
          const bad = firstNonFinite(grad);
          if (bad < 0) continue;
          const raw = plan.work.find((w) => w.index === index)!.grad as Gradient;
          const value = Number.isFinite(raw[bad]) ? `${raw[bad]}, which overflows float32` : `${raw[bad]}`;
          return rejectNonFinite(this.nonFinite, this.registry.name(index), bad, value);
        }
      }
      if (work.length === 0) {
        this.registry.commitStep(plan);
        return { applied: true };
      }
      if (this.cpu) {
        this.cpu.update(work, plan.coefficients);
        for (const { index } of work) {
          const tensor = this.cpuTensors[index];
          if (!tensor) continue;
          this.retire(tensor);
          this.cpuTensors[index] = null;
        }
        this.registry.commitStep(plan);
        return { applied: true };
      }
      // By flat segment (a group, or a part of a large one): one update run each.
      const byGroup = new Map<number, typeof work>();
      for (const w of work) {
        const segment = this.segmentOf[w.index]!;
        const list = byGroup.get(segment);
        if (list) list.push(w);
        else byGroup.set(segment, [w]);
      }
      const used = [...byGroup.keys()].map((g) => {
        const c = plan.coefficients[this.segmentGroup[g]!]!;
        return { g, later: float32Multipliers(c, false), first: float32Multipliers(c, true)[1] };
      });
      // WebGPU flushes subnormal multipliers (lr = 1e-40's gradient ones) to zero: then a graph
      // with scale inputs keeps them (scaledMultiplier). Elsewhere the plain graph computes the same.
      const scaled =
        this.executionProvider === 'webgpu' &&
        used.some(({ later, first }) => [...later, first].some((v) => scaledMultiplier(v)[1] !== 1));
      const n = flatUpdateNames;
      const results: { g: number; param: OrtTensor; buffer: OrtTensor; tensors: OrtTensor[] }[] = [];
      try {
        for (const { g, later, first } of used) {
          const items = byGroup.get(g)!;
          const members = this.members[g]!;
          const length = this.groupLength(members);
          const grad = new Float32Array(length);
          for (const w of items) grad.set(w.grad, this.offsets[w.index]);
          const firsts = items.filter((w) => w.first).length;
          const mode: FlatUpdateMode =
            items.length < members.length || (firsts > 0 && firsts < items.length)
              ? 'masked'
              : firsts > 0
                ? 'first'
                : 'later';
          const session = await this.updateSession(mode, scaled);
          const feeds: Record<string, OrtTensor> = {
            [n.param]: this.flatParams[g]!,
            [n.grad]: new this.ort.Tensor('float32', grad, [length]),
            [n.buffer]: this.flatBuffers[g]!,
          };
          if (mode === 'masked') {
            const present = new Uint8Array(length);
            const isFirst = new Uint8Array(length);
            for (const w of items) {
              const at = this.offsets[w.index]!;
              present.fill(1, at, at + w.grad.length);
              if (w.first) isFirst.fill(1, at, at + w.grad.length);
            }
            feeds[n.present] = new this.ort.Tensor('bool', present, [length]);
            feeds[n.first] = new this.ort.Tensor('bool', isFirst, [length]);
          }
          const feed = (coefficient: string, scale: string, value: number) => {
            const [c, s] = scaled ? scaledMultiplier(value) : [value, 1];
            feeds[coefficient] = scalar(this.ort, c);
            if (scaled) feeds[scale] = scalar(this.ort, s);
          };
          for (let k = 0; k < 6; k++) feed(n.coefficient(k), n.scale(k), later[k]!);
          feed(n.firstStepCoefficient, n.firstStepScale, first);
          // Only the inputs this mode's graph declares.
          const inputs: Record<string, OrtTensor> = {};
          for (const name of session.inputNames) inputs[name] = feeds[name]!;
          const outputs = await session.run(inputs);
          const result = {
            g,
            param: outputs[n.newParam]!,
            buffer: outputs[n.newBuffer]!,
            tensors: [] as OrtTensor[],
          };
          results.push(result);
          result.tensors = await this.cut(g, result.param);
        }
      } catch (error) {
        for (const r of results) for (const t of new Set([r.param, r.buffer, ...r.tensors])) t.dispose();
        throw error;
      }
      // Every run succeeded: from here nothing can fail. Replace and dispose the old tensors.
      for (const { g, param, buffer, tensors } of results) {
        const members = this.members[g]!;
        const old = new Set([
          this.flatParams[g]!,
          this.flatBuffers[g]!,
          ...members.map((i) => this.params[i]!),
        ]);
        for (const t of old) this.retire(t);
        this.flatParams[g] = param;
        this.flatBuffers[g] = buffer;
        members.forEach((i, k) => {
          this.params[i] = tensors[k]!;
        });
      }
      this.registry.commitStep(plan);
      return { applied: true };
    });
  }

  /** Copies of every parameter and buffer (null before a parameter's first step), as float32. */
  read(): Promise<{ params: Map<string, Float32Array>; buffers: Map<string, Float32Array | null> }> {
    return this.queue(async () => {
      const params = new Map<string, Float32Array>();
      const buffers = new Map<string, Float32Array | null>();
      if (this.cpu) {
        for (let i = 0; i < this.registry.size; i++) {
          const name = this.registry.name(i);
          params.set(name, this.cpu.param(i).slice());
          buffers.set(name, this.registry.hasBuffer(i) ? this.cpu.buffer(i).slice() : null);
        }
        return { params, buffers };
      }
      for (let g = 0; g < this.members.length; g++) {
        const flatParam = await this.download(this.flatParams[g]!);
        const flatBuffer = await this.download(this.flatBuffers[g]!);
        for (const i of this.members[g]!) {
          const name = this.registry.name(i);
          const at = this.offsets[i]!;
          const end = at + this.registry.length(i);
          params.set(name, flatParam.slice(at, end));
          buffers.set(name, this.registry.hasBuffer(i) ? flatBuffer.slice(at, end) : null);
        }
      }
      return { params, buffers };
    });
  }

  /** The state file of SPEC §4 (a safetensors file of the momentum buffers and the groups). */
  exportState(): Promise<Uint8Array> {
    return this.queue(async () => {
      const copies = new Map<number, Float32Array>();
      for (let g = 0; g < this.members.length; g++) {
        const members = this.members[g]!.filter((i) => this.registry.hasBuffer(i));
        if (members.length === 0) continue;
        const flat = this.cpu ? null : await this.download(this.flatBuffers[g]!);
        for (const i of members) {
          const at = this.offsets[i]!;
          copies.set(
            i,
            this.cpu ? this.cpu.buffer(i).slice() : flat!.slice(at, at + this.registry.length(i)),
          );
        }
      }
      return encodeState(this.registry.snapshot((i) => copies.get(i)!));
    });
  }

  /**
   * Replaces buffers, hyperparameters and step counts from a state file, or throws
   * AccSGDStateError and changes nothing.
   */
  importState(bytes: Uint8Array): Promise<void> {
    return this.queue(async () => {
      const plan = this.registry.planImport(decodeState(bytes));
      const incoming: { index: number; data: Float32Array }[] = [];
      plan.buffers.forEach((stored, index) => {
        if (!stored) return;
        const data = new Float32Array(stored); // float64 rounds once
        if (this.nonFinite !== 'allow') {
          const bad = firstNonFinite(data);
          if (bad >= 0) {
            const raw = stored[bad]!;
            const value = Number.isFinite(raw) ? `${raw}, which overflows float32` : `${raw}`;
            throw new AccSGDStateError(
              `buffer "${this.registry.name(index)}.momentum_buffer": element ${bad} is ${value} (non-finite buffers are rejected unless the nonFinite option is 'allow')`,
            );
          }
        }
        incoming.push({ index, data });
      });
      if (this.cpu) {
        // Everything is checked: from here nothing can fail.
        this.registry.commitImport(plan);
        for (const { index, data } of incoming) this.cpu.buffer(index).set(data);
        return;
      }
      // Each group with an incoming buffer gets a new flat buffer: its current values (members
      // without an incoming buffer lose theirs in the registry; their memory is never read) with
      // the incoming ones written over them.
      const touched = [...new Set(incoming.map(({ index }) => this.segmentOf[index]!))];
      const flats: Float32Array[] = [];
      for (const g of touched) {
        const flat = await this.download(this.flatBuffers[g]!);
        for (const { index, data } of incoming)
          if (this.segmentOf[index]! === g) flat.set(data, this.offsets[index]);
        flats.push(flat);
      }
      const uploaded = await this.upload(flats);
      // Everything is checked and uploaded: from here nothing can fail.
      this.registry.commitImport(plan);
      touched.forEach((g, k) => {
        this.retire(this.flatBuffers[g]!);
        this.flatBuffers[g] = uploaded[k]!;
      });
    });
  }

  /**
   * Releases every session and tensor once the calls made before it have taken effect (a step
   * made just before dispose() still applies); calls made after it throw. Safe to call twice.
   */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.calls.idle();
    const sessions = [...this.sessions.values(), ...this.helpers.values()];
    this.sessions.clear();
    this.helpers.clear();
    const tensors = new Set([...this.params, ...this.flatParams, ...this.flatBuffers, ...this.cpuTensors]);
    for (const t of tensors) if (t) this.retire(t);
    this.cpuTensors.fill(null);
    this.params.length = 0;
    this.flatParams.length = 0;
    this.flatBuffers.length = 0;
    await Promise.all(sessions.map((s) => s.then((x) => x.release()).catch(() => undefined)));
  }

  /** Number of update sessions currently cached (one per pattern of present / first-step parameters). */
  get cachedSessions(): number {
    return this.sessions.size;
  }

  /**
   * A session on this optimizer's runtime and execution provider for a model of your own (the
   * conformance closed loop uses it); cached by `key`, released by dispose().
   */
  helperSession(
    key: string,
    model: () => Uint8Array,
    gpuOutputs: readonly string[] = [],
  ): Promise<OrtSession> {
    this.assertOpen();
    return this.helper(key, model, gpuOutputs);
  }

  /** helperSession for this class's own calls, which may still run while dispose() waits for them. */
  private helper(
    key: string,
    model: () => Uint8Array,
    gpuOutputs: readonly string[] = [],
  ): Promise<OrtSession> {
    let session = this.helpers.get(key);
    if (!session) {
      session = this.ort.InferenceSession.create(
        model(),
        sessionOptions({
          executionProvider: this.executionProvider,
          strictPlacement: this.strictPlacement,
          base: this.baseSessionOptions,
          gpuOutputs,
        }),
      );
      this.helpers.set(key, session);
      session.catch(() => this.helpers.delete(key));
    }
    return session;
  }

  /** Copies a tensor of this optimizer's runtime to the CPU (through an Identity session on the GPU). */
  async download(tensor: OrtTensor): Promise<Float32Array> {
    if (this.retired.has(tensor))
      throw new AccSGDStateError(
        'this tensor was disposed: a paramTensor() handle is valid until the next step, import or dispose that replaces it; call paramTensor() again for the current one',
      );
    if (tensor.location === 'cpu') return Float32Array.from(tensor.data as Float32Array);
    // Never tensor.getData() on a GPU tensor: in Node that aborts the process.
    const identity = await this.helper('download', buildIdentityModel);
    const { y } = await identity.run({ x: tensor });
    try {
      return Float32Array.from(y!.data as Float32Array);
    } finally {
      y!.dispose();
    }
  }

  /** ORT tensors holding `values` (on the GPU for 'webgpu'); all or nothing. */
  private async upload(values: readonly Float32Array[]): Promise<OrtTensor[]> {
    const cpu = values.map((v) => new this.ort.Tensor('float32', v, [v.length]));
    if (this.executionProvider !== 'webgpu') return cpu;
    const identity = await this.helper('upload', buildIdentityModel, ['y']);
    const out: OrtTensor[] = [];
    try {
      for (const t of cpu) out.push((await identity.run({ x: t })).y!);
    } catch (error) {
      for (const t of out) t.dispose();
      throw error;
    }
    return out;
  }

  private updateSession(mode: FlatUpdateMode, scaled: boolean): Promise<OrtSession> {
    const key = `${mode}${scaled ? ':scaled' : ''}`;
    let session = this.sessions.get(key);
    if (session) {
      // Most recently used last, so eviction drops the least recently used.
      this.sessions.delete(key);
      this.sessions.set(key, session);
      return session;
    }
    session = this.ort.InferenceSession.create(
      buildFlatUpdateGraph(mode, { scaled }),
      sessionOptions({
        executionProvider: this.executionProvider,
        strictPlacement: this.strictPlacement,
        base: this.baseSessionOptions,
        gpuOutputs: [flatUpdateNames.newParam, flatUpdateNames.newBuffer],
      }),
    );
    this.sessions.set(key, session);
    session.catch(() => this.sessions.delete(key));
    while (this.sessions.size > this.maxCachedSessions) {
      const [oldest, evicted] = this.sessions.entries().next().value as [string, Promise<OrtSession>];
      this.sessions.delete(oldest);
      void evicted.then((s) => s.release()).catch(() => undefined);
    }
    return session;
  }

  /**
   * Parameters one Slice + Split run of cut() may hand out. On WebGPU a shader binds its input and
   * every output as a storage buffer, and ORT refuses a Split past the adapter's
   * maxStorageBuffersPerShaderStage (WebGPU guarantees 8; SwiftShader has 12, GPUs more), which ORT
   * does not expose: one probe run of a wide Split finds it, from ORT's refusal ("Max is N"), once
   * per optimizer. Every run a step saves is a dispatch: 5,000 parameters took 715 runs at 7. On
   * the CPU providers there is no such limit.
   */
  private splitWidth(): Promise<number> {
    if (this.executionProvider !== 'webgpu') return Promise.resolve(CPU_SPLIT_OUTPUTS);
    this.splitWidthFound ??= this.probeSplitWidth();
    return this.splitWidthFound;
  }

  private async probeSplitWidth(): Promise<number> {
    const names = Array.from({ length: PROBE_SPLIT_OUTPUTS }, (_, k) => `y${k}`);
    let session: OrtSession | undefined;
    try {
      session = await this.ort.InferenceSession.create(buildSliceSplitModel(PROBE_SPLIT_OUTPUTS), {
        ...sessionOptions({
          executionProvider: this.executionProvider,
          strictPlacement: this.strictPlacement,
          base: this.baseSessionOptions,
          gpuOutputs: names,
        }),
        // The refusal is expected: not logged as an error.
        logSeverityLevel: 4,
      });
      const outputs = await session.run({
        x: new this.ort.Tensor('float32', new Float32Array(PROBE_SPLIT_OUTPUTS), [PROBE_SPLIT_OUTPUTS]),
        start: this.int64([0]),
        end: this.int64([PROBE_SPLIT_OUTPUTS]),
        lengths: this.int64(names.map(() => 1)),
      });
      for (const t of Object.values(outputs)) t.dispose();
      return PROBE_SPLIT_OUTPUTS;
    } catch (error) {
      return splitWidthAfterRefusal(error, PROBE_SPLIT_OUTPUTS);
    } finally {
      await session?.release().catch(() => undefined);
    }
  }

  /**
   * Each member's own tensor, cut from group g's flat parameter tensor: the flat tensor itself for
   * a group of one, else Slice + Split runs of up to splitWidth() parameters each (ORT's GPU
   * tensors have no views at an offset). All or nothing.
   */
  private async cut(g: number, flat: OrtTensor): Promise<OrtTensor[]> {
    const members = this.members[g]!;
    if (members.length === 1) return [flat];
    const out: OrtTensor[] = [];
    try {
      const width = await this.splitWidth();
      for (let from = 0; from < members.length; from += width) {
        const batch = members.slice(from, from + width);
        const count = batch.length;
        const names = batch.map((_, k) => `y${k}`);
        const session = await this.helper(`slice-split-${count}`, () => buildSliceSplitModel(count), names);
        const lengths = batch.map((i) => this.registry.length(i));
        const start = this.offsets[batch[0]!]!;
        const end = start + lengths.reduce((a, b) => a + b, 0);
        const feeds: Record<string, OrtTensor> = {
          x: flat,
          start: this.int64([start]),
          end: this.int64([end]),
        };
        if (count > 1) feeds.lengths = this.int64(lengths);
        const result = await session.run(feeds);
        for (const name of names) out.push(result[name]!);
      }
    } catch (error) {
      for (const t of out) t.dispose();
      throw error;
    }
    return out;
  }

  /** A 1-D int64 tensor (Slice and Split's index inputs). */
  private int64(values: readonly number[]): OrtTensor {
    return new this.ort.Tensor('int64', BigInt64Array.from(values, BigInt), [values.length]);
  }

  private groupLength(members: readonly number[]): number {
    return members.reduce((sum, i) => sum + this.registry.length(i), 0);
  }

  private assertOpen(): void {
    if (this.disposed) throw new AccSGDStateError('this OnnxAccSGD has been disposed');
  }

  /**
   * Queues a call if the optimizer is open when the call is made (not when it starts): dispose()
   * waits for the calls made before it, so `p = opt.step(g); opt.dispose()` applies the step.
   */
  private queue<T>(call: () => Promise<T>): Promise<T> {
    if (this.disposed) return Promise.reject(new AccSGDStateError('this OnnxAccSGD has been disposed'));
    return this.calls.run(call);
  }

  private retire(tensor: OrtTensor): void {
    this.retired.add(tensor);
    tensor.dispose();
  }
}

/** The widest Split a WebGPU probe tries (outputs), and the width of a cut on the CPU providers. */
const PROBE_SPLIT_OUTPUTS = 255;
const CPU_SPLIT_OUTPUTS = 1_024;

/** The registry of the groups, and each parameter's initial values as float32. */
function readGroups(
  groups: readonly ParamGroupInput[],
  defaults: HyperparamsInput,
): { registry: ParameterRegistry; initial: Float32Array[] } {
  if (!Array.isArray(groups) || groups.length === 0)
    throw new AccSGDConfigError('groups', groups, 'a non-empty array of parameter groups { params: [...] }');
  const base = resolveHyperparams(defaults as Partial<Hyperparams>);
  const initial: Float32Array[] = [];
  const declared = groups.map((group: ParamGroupInput, g) => {
    if (
      typeof group !== 'object' ||
      group === null ||
      !Array.isArray(group.params) ||
      group.params.length === 0
    )
      throw new AccSGDConfigError(
        `groups[${g}]`,
        group,
        'a group { params: [...] } with at least one parameter',
      );
    const { params, ...hyper } = group;
    return {
      hyperparams: resolveHyperparams(hyper, base),
      precision: 'float32' as const,
      params: params.map((param: ParamInput, k: number) => {
        const data = param?.data;
        if (!(data instanceof Float32Array || data instanceof Float64Array || Array.isArray(data)))
          throw new AccSGDConfigError(
            `groups[${g}].params[${k}].data`,
            data,
            'a Float32Array, Float64Array or array of numbers',
          );
        if (data.length === 0)
          throw new AccSGDConfigError(`groups[${g}].params[${k}].data`, data, 'at least one element');
        if (Array.isArray(data)) {
          // Float32Array.from would turn {} or '1' into NaN or 1 without a word.
          const bad = data.findIndex((v) => typeof v !== 'number');
          if (bad >= 0)
            throw new AccSGDConfigError(`groups[${g}].params[${k}].data[${bad}]`, data[bad], 'a number');
        }
        // new Float32Array(typed array) copies through internal slots; from() would iterate.
        initial.push(Array.isArray(data) ? Float32Array.from(data) : new Float32Array(data));
        return {
          ...(param.name === undefined ? {} : { name: param.name }),
          ...(param.shape === undefined ? {} : { shape: param.shape }),
          length: data.length,
        };
      }),
    };
  });
  const part = { names: 'name', shapes: 'shape', params: 'data' } as const;
  const registry = new ParameterRegistry(declared, {
    field: (g, k, which) => `groups[${g}].params[${k}].${part[which]}`,
  });
  return { registry, initial };
}
