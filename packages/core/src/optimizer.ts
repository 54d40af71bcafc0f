import { ParameterArena } from './arena.js';
import { AccSGDConfigError, AccSGDGradientError, AccSGDStateError } from './errors.js';
import { type FloatArray, fusedUpdateAll } from './fused-update.js';
import { type Hyperparams, type HyperparamsInput, resolveHyperparams } from './hyperparams.js';
import { describeKind, readGroup, readInput, readList, readOptions, readRecord } from './input.js';
import {
  firstCrossOverlap,
  hasResizableBuffer,
  isGenuineFloatArray,
  type MemoryRange,
  memoryOf,
  rangeOf,
  typedArrayName,
  typedLength,
} from './lookup.js';
import {
  allFiniteAs,
  firstNonFiniteAs,
  type NonFinitePolicy,
  nonFinitePolicy,
  rejectNonFinite,
} from './non-finite.js';
import {
  type KeyedGradients,
  ParameterRegistry,
  type RegistryGroup,
  type RegistryParam,
  type StepWork,
} from './registry.js';
import type { SafetensorsLimits } from './safetensors.js';
import { decodeState, encodeState, type OptimizerState } from './state-file.js';
import { EXTERNAL_STAGE_ELEMENTS, RING } from './threads/protocol.js';
import {
  CHUNK_ELEMENTS,
  MAX_THREADS,
  MIN_THREADED_ELEMENTS,
  STAGE_ELEMENTS,
  StepThreads,
} from './threads/step-threads.js';

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
  /**
   * Threads that share a step, the calling thread included (default 1). Above 1, the tensors whose
   * parameter, gradient and buffer all live in the `arena` are stepped by that many threads
   * together when the arena is shared (`new ParameterArena(n, { shared: true })`): worker threads
   * start with the optimizer and run until `dispose()`. Steps of fewer than 262,144 such elements,
   * tensors outside the arena, and platforms without shared memory or workers run on the calling
   * thread. Results are bit-identical for every thread count. 'auto': as many as the machine has
   * cores (os.availableParallelism() in Node, navigator.hardwareConcurrency elsewhere), at most 64.
   */
  threads?: number | 'auto';
}

/** Tensors a step hands to the threads, and how to describe them to the threads as one job. */
interface ThreadJob {
  members: ReadonlySet<number>;
  /** Writes the job's pieces into the shared tables (each run needs them there afresh). */
  describe(): void;
}

/** Workers of optimizers that were collected without dispose(): they must not outlive them. */
const orphanedThreads = new FinalizationRegistry<StepThreads>((threads) => threads.dispose());

export type Gradients = KeyedGradients<FloatArray>;

export type StepResult = { applied: true } | { applied: false; reason: string };

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
 * parameter changes. The bookkeeping (groups, names, shapes, step counts, which parameters have a
 * buffer, state matching) is a ParameterRegistry's; this class holds the arrays and the kernel.
 */
export class AccSGD {
  readonly nonFinite: NonFinitePolicy;
  private readonly arena: ParameterArena | undefined;
  private readonly registry: ParameterRegistry;
  private readonly params: FloatArray[] = [];
  /**
   * Momentum-buffer memory per parameter, allocated once (on the first step or import) and kept
   * when a state import removes the buffer; it is the buffer while registry.hasBuffer(i).
   */
  private readonly storage: (FloatArray | null)[];
  /** The ArrayBuffers that parameters, buffers and staging slots live on; null when stale. */
  private ownedResources: Set<ArrayBufferLike> | null = null;
  private stepThreads: StepThreads | null = null;
  /** With threads: the index of the shared arena's memory in stepThreads' list, or -1. */
  private arenaMemory = -1;
  /**
   * With threads: the optimizer's own shared memory for the buffers of float32 parameters that
   * are ordinary arrays, with the ring of staging slots through which their steps stream.
   */
  private stream: {
    arena: ParameterArena;
    memory: number;
    param: Float32Array[];
    grad: Float32Array[];
    /**
     * Each thread's staging for parameters over a SharedArrayBuffer, which the threads copy in
     * and out themselves (see protocol's runExternalPiece); null when no parameter is one.
     */
    external: Float32Array | null;
  } | null = null;
  /** Changes every step: which step last used each gradient buffer handed to the workers. */
  private stepCount = 0;

  constructor(
    params: FloatArray[] | ParamGroupInput[],
    defaults: HyperparamsInput & { nonFinite?: NonFinitePolicy },
    options: AccSGDOptions = {},
  ) {
    // Every argument is read once, inside readInput: a getter or Proxy trap that throws becomes an
    // AccSGDConfigError, and one that answers differently on a second read cannot matter.
    const opts = readInput('options', () => readOptions(options));
    // `nonFinite` is accepted beside the hyperparameters too, as @accsgd/tfjs's config takes it, so
    // one options object works in both; given in both places, the two must agree.
    const { nonFinite: nonFiniteBeside, ...defaultsRecord } = readInput('defaults', () =>
      readRecord('defaults', defaults),
    );
    if (nonFiniteBeside !== undefined && opts.nonFinite !== undefined && nonFiniteBeside !== opts.nonFinite)
      throw new AccSGDConfigError(
        'nonFinite',
        nonFiniteBeside,
        `the same value as options.nonFinite (${String(opts.nonFinite)}), or one of the two left out`,
      );
    this.nonFinite = nonFinitePolicy(opts.nonFinite ?? nonFiniteBeside);
    if (opts.arena !== undefined && !readInput('arena', () => opts.arena instanceof ParameterArena)) {
      throw new AccSGDConfigError('arena', opts.arena, 'a ParameterArena');
    }
    this.arena = opts.arena;
    const threads = opts.threads === 'auto' ? availableThreads() : (opts.threads ?? 1);
    if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) {
      throw new AccSGDConfigError('threads', threads, `an integer in [1, ${MAX_THREADS}] or 'auto'`);
    }
    const base = resolveHyperparams(defaultsRecord);
    const list = readInput('params', () => readList(params));
    if (list === undefined || list.length === 0) {
      throw new AccSGDConfigError(
        'params',
        params,
        'a non-empty array of Float32Array/Float64Array or of parameter groups',
      );
    }
    const groupInputs = isGenuineFloatArray(list[0]) ? [{ params: list }] : list;
    const seen = new Set<FloatArray>();
    const groups: RegistryGroup[] = groupInputs.map((input, g) => {
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
      for (const [key, value] of [
        ['names', names],
        ['shapes', shapes],
      ] as const) {
        if (value !== undefined && value.length !== members.length)
          throw new AccSGDConfigError(
            `params[${g}].${key}`,
            value,
            `an array of ${members.length} ${key} (one per parameter)`,
          );
      }
      const declared = members.map((param, k): RegistryParam => {
        const field = `params[${g}].params[${k}]`;
        if (!isGenuineFloatArray(param))
          throw new AccSGDConfigError(field, param, 'a Float32Array or Float64Array');
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
        this.params.push(param);
        return {
          ...(names === undefined ? {} : { name: names[k] }),
          ...(shapes === undefined ? {} : { shape: shapes[k] }),
          length: typedLength(param),
          storage: rangeOf(param),
          value: param,
        };
      });
      // float32 when the group holds a Float32Array: its multipliers must then fit float32 (SPEC §1).
      const precision = members.some((p) => p instanceof Float32Array) ? 'float32' : 'float64';
      return { hyperparams, precision, params: declared } as const;
    });
    this.registry = new ParameterRegistry(groups);
    this.storage = this.params.map(() => null);
    if (threads > 1) this.startThreads(threads, groups.length);
  }

  /**
   * Starts the worker threads when some parameters can use them: float32 parameters in a shared
   * arena are stepped in place by all threads; float32 parameters that are ordinary arrays (which
   * workers cannot read) get their buffers in a shared memory of the optimizer's own and are
   * streamed through it. The calling thread then only copies p and g in and p out, while the
   * workers compute and carry the buffers' traffic: 12 of the step's 20 bytes per element stay on
   * this thread instead of 20.
   */
  private startThreads(threads: number, groupCount: number): void {
    const sharedArena = this.arena?.shared && this.arena.kernel ? this.arena : null;
    const memories: { memory: ParameterArena['memory']; kernel: NonNullable<ParameterArena['kernel']> }[] =
      [];
    if (sharedArena) {
      this.arenaMemory = memories.length;
      memories.push({ memory: sharedArena.memory, kernel: sharedArena.kernel! });
    }
    const plain = this.params.filter(
      (p): p is Float32Array => p instanceof Float32Array && ParameterArena.of(p) === undefined,
    );
    const plainTotal = plain.reduce((sum, p) => sum + p.length, 0);
    // Parameters over SharedArrayBuffers: every thread can copy them, so they need not stream
    // through this thread. Their buffers go to the workers at start.
    const externals = [
      ...new Set(
        plain
          .map((p) => p.buffer)
          .filter(
            (b): b is SharedArrayBuffer =>
              typeof SharedArrayBuffer !== 'undefined' && b instanceof SharedArrayBuffer,
          ),
      ),
    ];
    if (plainTotal >= MIN_THREADED_ELEMENTS) {
      const externalStage = externals.length > 0 ? 2 * threads * EXTERNAL_STAGE_ELEMENTS : 0;
      const arena = new ParameterArena(
        plainTotal + 4 * plain.length + 2 * RING * STAGE_ELEMENTS + externalStage + 4,
        { shared: true },
      );
      if (arena.shared && arena.kernel) {
        this.stream = {
          arena,
          memory: memories.length,
          param: Array.from({ length: RING }, () => arena.float32(STAGE_ELEMENTS)),
          grad: Array.from({ length: RING }, () => arena.float32(STAGE_ELEMENTS)),
          external: externalStage > 0 ? arena.float32(externalStage) : null,
        };
        memories.push({ memory: arena.memory, kernel: arena.kernel });
      }
    }
    const maxPieces = this.params.reduce(
      (sum, p) => sum + (p instanceof Float32Array ? Math.max(1, Math.ceil(p.length / CHUNK_ELEMENTS)) : 0),
      0,
    );
    this.stepThreads = StepThreads.create(memories, threads, maxPieces, 2 * groupCount, {
      externals: this.stream?.external ? externals : [],
      // Gradient buffers as large as the parameters twice over: a model's own gradients all fit,
      // with room for one step's worth of fresh ones.
      adoptBytes: 2 * 4 * plainTotal,
    });
    if (this.stepThreads) orphanedThreads.register(this, this.stepThreads, this);
    else this.stream = null;
  }

  /**
   * Threads a large step uses, the calling thread included: 1 unless `threads` was above 1 and
   * this platform runs workers over the shared arena; 1 again after dispose().
   */
  get threads(): number {
    return this.stepThreads ? this.stepThreads.workerCount + 1 : 1;
  }

  /**
   * Resolves once every worker thread has started. Steps never need to wait for it (until the
   * workers are up, the calling thread does their share); benchmarks and tests do.
   */
  threadsReady(): Promise<void> {
    return this.stepThreads?.ready() ?? Promise.resolve();
  }

  /**
   * Stops the worker threads (if any). The optimizer keeps working, on the calling thread alone.
   * Workers are unref'd, so an idle process exits without this, and they are stopped when an
   * optimizer that was not disposed is garbage-collected.
   */
  dispose(): void {
    if (!this.stepThreads) return;
    orphanedThreads.unregister(this);
    this.stepThreads.dispose();
    this.stepThreads = null;
  }

  /** The groups' resolved hyperparameters, member names and step counts (copies). */
  get paramGroups(): { hyperparams: Hyperparams; params: string[]; step: number }[] {
    return this.registry.paramGroups;
  }

  /** Parameter names in step order (the order gradients are aligned to). */
  get paramNames(): string[] {
    return this.registry.paramNames;
  }

  /** Sets the learning rate of one group, or of every group when `group` is omitted. Takes effect next step. */
  setLearningRate(lr: number, group?: number): void {
    this.registry.setLearningRate(lr, group);
  }

  /**
   * The momentum buffer of a parameter (by index or name): a live view, or null before its first
   * step. Steps and state imports write into the same array.
   */
  buffer(param: number | string): FloatArray | null {
    const index = this.registry.indexOf(param);
    return this.registry.hasBuffer(index) ? this.storage[index]! : null;
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
    const plan = this.registry.planStep<unknown>(grads);
    for (const { index, name, grad } of plan.work) {
      if (!isGenuineFloatArray(grad))
        throw new AccSGDGradientError(
          name,
          `expected a Float32Array or Float64Array, got ${describeKind(grad)}`,
        );
      const length = typedLength(grad);
      const expected = this.registry.length(index);
      if (length !== expected)
        throw new AccSGDGradientError(name, `has ${length} elements; the parameter has ${expected}`);
    }
    const work = plan.work as readonly StepWork<FloatArray>[];
    this.assertMemoryIntact(work.map((w) => w.index));
    // Buffers for first steps are allocated now, before the overlap check (a gradient could view
    // arena memory that the buffer is about to take); allocating changes nothing visible.
    const fresh = new Set(work.filter((w) => w.first).map((w) => w.index));
    for (const index of fresh) this.storageFor(index);
    this.assertNoAliasing(work, fresh);
    if (this.stepThreads) {
      plan.coefficients.forEach((c, group) => {
        this.stepThreads!.setCoefficients(2 * group, c, false);
        this.stepThreads!.setCoefficients(2 * group + 1, c, true);
      });
    }
    const threaded = this.threadedPart(work);
    const external = this.externalPart(work);
    const streamed = this.streamedPart(work, external?.members);
    const onThreads = (index: number) => threaded?.members.has(index) || external?.members.has(index);
    if (this.nonFinite !== 'allow') {
      // With threads, the gradients they take are scanned by all threads first; only when one
      // fails does the loop below look through every gradient, to report the first bad one.
      const scan = (job: ThreadJob | null) => {
        if (job === null) return true;
        job.describe();
        return this.stepThreads!.scan();
      };
      const allFinite = scan(threaded) && scan(external);
      const rest = allFinite ? work.filter((w) => !onThreads(w.index)) : work;
      const restFinite =
        allFinite &&
        allFiniteAs(
          rest.map((w) => w.grad),
          rest.map((w) => precisionOf(this.params[w.index]!)),
        );
      for (const { index, name, grad } of restFinite ? [] : work) {
        if (allFinite && onThreads(index)) continue;
        // A float64 gradient for a float32 parameter is rounded to float32 first, so it must be
        // finite after rounding too (1e39 is finite but rounds to infinity). new Float32Array(typed
        // array) copies through the internal slots, calling no user code (Float32Array.from would
        // call the array's iterator).
        const bad = firstNonFiniteAs(grad, precisionOf(this.params[index]!));
        if (bad) return rejectNonFinite(this.nonFinite, name, bad.element, bad.value);
      }
    }
    for (const job of [threaded, external]) {
      if (!job) continue;
      job.describe();
      this.stepThreads!.update();
    }
    if (streamed) this.runStream(streamed);
    // The rest by kind of update (group, first step or not), so that small tensors are packed.
    const kinds = new Map<number, [FloatArray[], FloatArray[], FloatArray[]]>();
    for (const { index, group, grad, first } of work) {
      if (onThreads(index) || streamed?.has(index)) continue;
      const key = 2 * group + (first ? 1 : 0);
      const lists = kinds.get(key) ?? [[], [], []];
      kinds.set(key, lists);
      lists[0].push(this.params[index]!);
      lists[1].push(grad);
      lists[2].push(this.storage[index]!);
    }
    for (const [key, lists] of kinds) fusedUpdateAll(...lists, plan.coefficients[key >> 1]!, (key & 1) === 1);
    this.registry.commitStep(plan);
    return { applied: true };
  }

  /**
   * The tensors of this step that the threads take (parameter, float32 gradient and buffer in the
   * shared arena), described to the threads as one job; null when the step runs on this thread
   * (no threads, or fewer than MIN_THREADED_ELEMENTS such elements).
   */
  private threadedPart(work: readonly StepWork<FloatArray>[]): ThreadJob | null {
    const threads = this.stepThreads;
    if (!threads || this.arenaMemory < 0) return null;
    const arena = this.arena!;
    const members = work.filter(
      ({ index, grad }) =>
        grad instanceof Float32Array &&
        ParameterArena.of(this.params[index]!, grad, this.storage[index]!) === arena,
    );
    if (members.reduce((sum, w) => sum + this.registry.length(w.index), 0) < MIN_THREADED_ELEMENTS)
      return null;
    return {
      members: new Set(members.map((w) => w.index)),
      describe: () => {
        threads.begin(this.arenaMemory);
        for (const { index, group, grad, first } of members) {
          threads.add(
            this.params[index]!.byteOffset,
            grad.byteOffset,
            this.storage[index]!.byteOffset,
            this.registry.length(index),
            2 * group + (first ? 1 : 0),
          );
        }
      },
    };
  }

  /**
   * The tensors of this step whose parameter and float32 gradient are ordinary arrays over
   * SharedArrayBuffers (buffers in the optimizer's shared memory): every thread copies its pieces
   * of them in and out itself, so unlike streamed arrays they do not queue behind this thread's
   * copies. null below MIN_THREADED_ELEMENTS. A gradient whose buffer the workers cannot take (see
   * StepThreads.adopt) is streamed instead.
   */
  private externalPart(work: readonly StepWork<FloatArray>[]): ThreadJob | null {
    const threads = this.stepThreads;
    const stream = this.stream;
    if (!threads || !stream?.external) return null;
    const stamp = ++this.stepCount;
    const members: { w: StepWork<FloatArray>; paramSource: number; gradSource: number }[] = [];
    let total = 0;
    for (const w of work) {
      const param = this.params[w.index]!;
      const grad = w.grad;
      if (
        !this.streamable(w.index, grad) ||
        !(param.buffer instanceof SharedArrayBuffer) ||
        !(grad.buffer instanceof SharedArrayBuffer)
      )
        continue;
      const paramSource = threads.adopt(param.buffer, stamp);
      const gradSource = paramSource === null ? null : threads.adopt(grad.buffer, stamp);
      if (paramSource === null || gradSource === null) continue;
      members.push({ w, paramSource, gradSource });
      total += this.registry.length(w.index);
    }
    if (total < MIN_THREADED_ELEMENTS) return null;
    return {
      members: new Set(members.map((m) => m.w.index)),
      describe: () => {
        threads.begin(stream.memory, stream.external!.byteOffset);
        for (const { w, paramSource, gradSource } of members) {
          threads.add(
            this.params[w.index]!.byteOffset / 4,
            (w.grad as Float32Array).byteOffset / 4,
            this.storage[w.index]!.byteOffset,
            this.registry.length(w.index),
            2 * w.group + (w.first ? 1 : 0),
            paramSource,
            gradSource,
          );
        }
      },
    };
  }

  /**
   * Whether parameter `index` with gradient `grad` can go through the optimizer's shared memory
   * (streamed, or copied by every thread): a float32 gradient, and an ordinary float32 parameter
   * whose buffer lives there.
   */
  private streamable(index: number, grad: FloatArray): grad is Float32Array {
    return (
      grad instanceof Float32Array &&
      this.storage[index]!.buffer === this.stream?.arena.memory.buffer &&
      ParameterArena.of(this.params[index]!) === undefined
    );
  }

  /**
   * The tensors of this step streamed through the optimizer's shared memory: ordinary float32
   * parameters with a float32 gradient and a buffer there; null below MIN_THREADED_ELEMENTS.
   */
  private streamedPart(
    work: readonly StepWork<FloatArray>[],
    external: ReadonlySet<number> | undefined,
  ): Map<number, StepWork<FloatArray>> | null {
    if (!this.stream || !this.stepThreads) return null;
    const members = work.filter(({ index, grad }) => !external?.has(index) && this.streamable(index, grad));
    if (members.reduce((sum, w) => sum + this.registry.length(w.index), 0) < MIN_THREADED_ELEMENTS)
      return null;
    return new Map(members.map((w) => [w.index, w]));
  }

  private runStream(members: ReadonlyMap<number, StepWork<FloatArray>>): void {
    const stream = this.stream!;
    // Pieces of at most STAGE_ELEMENTS: [parameter index, first element, element count, slot].
    const pieces: [number, number, number, number][] = [];
    for (const { index, group, first } of members.values()) {
      const n = this.registry.length(index);
      for (let start = 0; start < n; start += STAGE_ELEMENTS)
        pieces.push([index, start, Math.min(STAGE_ELEMENTS, n - start), 2 * group + (first ? 1 : 0)]);
    }
    this.stepThreads!.stream(
      stream.memory,
      pieces.length,
      (k, slot) => {
        const [index, start, n, coefficients] = pieces[k]!;
        const param = stream.param[slot]!;
        const grad = stream.grad[slot]!;
        param.set((this.params[index] as Float32Array).subarray(start, start + n));
        grad.set((members.get(index)!.grad as Float32Array).subarray(start, start + n));
        this.stepThreads!.describeStaged(
          slot,
          param.byteOffset,
          grad.byteOffset,
          this.storage[index]!.byteOffset + 4 * start,
          n,
          coefficients,
        );
      },
      (k, slot) => {
        const [index, start, n] = pieces[k]!;
        this.params[index]!.set(stream.param[slot]!.subarray(0, n), start);
      },
    );
  }

  /**
   * AccSGDConfigError unless every parameter in `indices` (and its momentum buffer, if any) still
   * views as many elements as at construction: `buffer.transfer()`, structuredClone with transfer,
   * or growing a WebAssembly memory detaches an array, leaving it empty.
   */
  private assertMemoryIntact(indices: readonly number[]): void {
    for (const index of indices) {
      const name = this.registry.name(index);
      const expected = this.registry.length(index);
      const param = this.params[index]!;
      const length = typedLength(param);
      if (length !== expected) {
        throw new AccSGDConfigError(
          `parameter "${name}"`,
          param,
          `${expected} elements, as at construction`,
          `now has ${length} elements where it had ${expected} (its buffer was detached or resized after construction)`,
        );
      }
      const buffer = this.buffer(index);
      if (buffer !== null && typedLength(buffer) !== expected) {
        throw new AccSGDConfigError(
          `parameter "${name}"`,
          buffer,
          `a momentum buffer of ${expected} elements`,
          `has lost its momentum buffer's memory (the arena's memory was detached)`,
        );
      }
    }
  }

  /** The staging memory of threads, which a gradient must not overlap (it is written while read). */
  private stagingSlots(): Float32Array[] {
    const stream = this.stream;
    if (!stream) return [];
    return [...stream.param, ...stream.grad, ...(stream.external ? [stream.external] : [])];
  }

  /**
   * AccSGDGradientError if a gradient's memory overlaps any parameter's or momentum buffer's
   * (those of `fresh` included): the fused update would read gradient values it has already
   * overwritten. (PyTorch likewise never lets p.grad alias p.) Gradients may overlap each other.
   */
  private assertNoAliasing(work: readonly StepWork<FloatArray>[], fresh: ReadonlySet<number>): void {
    // Gradients almost always have memory of their own: when no gradient shares an ArrayBuffer
    // with a parameter, a buffer or a staging slot, nothing can overlap, and the sort below (with
    // its labels, per parameter per step) is skipped.
    this.ownedResources ??= new Set(
      [...this.params, ...this.storage, ...this.stagingSlots()]
        .filter((a) => a !== null)
        .map((a) => memoryOf(a).buffer),
    );
    const owners = this.ownedResources;
    if (!work.some((w) => owners.has(memoryOf(w.grad).buffer))) return;
    const owned: MemoryRange[] = [];
    const labels: string[] = [];
    this.params.forEach((param, i) => {
      const name = this.registry.name(i);
      owned.push(rangeOf(param));
      labels.push(`parameter "${name}"`);
      if (this.registry.hasBuffer(i) || fresh.has(i)) {
        owned.push(rangeOf(this.storage[i]!));
        labels.push(`the momentum buffer of parameter "${name}"`);
      }
    });
    // The staging slots that ordinary arrays stream through with threads (in the memory that the
    // buffers' views expose): a gradient there would be overwritten while it is copied in.
    for (const slot of this.stagingSlots()) {
      owned.push(rangeOf(slot));
      labels.push("the optimizer's staging memory for threads");
    }
    const hit = firstCrossOverlap(
      work.map((w) => rangeOf(w.grad)),
      owned,
    );
    if (hit)
      throw new AccSGDGradientError(
        work[hit[0]]!.name,
        `its memory overlaps ${labels[hit[1]]}; a gradient needs memory of its own`,
      );
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
    return this.registry.snapshot((index) => this.storage[index]!);
  }

  /**
   * Replaces buffers, hyperparameters and step counts from a state record (as decodeState returns),
   * or throws AccSGDStateError and changes nothing. The record must be valid (assertStateFits) and
   * fit this optimizer. Unless the nonFinite policy is 'allow', every buffer value must be finite,
   * after rounding to float32 when a float64 buffer goes into a float32 parameter (1e39 overflows):
   * a NaN or infinite buffer would poison every later step.
   */
  applyState(input: OptimizerState): void {
    const plan = this.registry.planImport(input);
    if (this.nonFinite !== 'allow') {
      plan.buffers.forEach((data, index) => {
        const bad = data && firstNonFiniteAs(data, precisionOf(this.params[index]!));
        if (bad)
          throw new AccSGDStateError(
            `buffer "${this.registry.name(index)}.momentum_buffer": element ${bad.element} is ${bad.value} (non-finite buffers are rejected unless the nonFinite option is 'allow')`,
          );
      });
    }
    // (Buffer memory detached since, say by growing the arena's memory, is replaced here.)
    plan.buffers.forEach((data, index) => {
      if (data !== null) this.storageFor(index);
    });
    // Everything is checked; from here on nothing can fail, so the import is all-or-nothing.
    this.registry.commitImport(plan);
    plan.buffers.forEach((data, index) => {
      if (data !== null) this.storage[index]!.set(data); // float64 into float32 rounds once
    });
  }

  /**
   * The parameter's buffer memory: in the arena when there is room, else on the heap; never fails
   * (memory that was detached since is replaced).
   */
  private storageFor(index: number): FloatArray {
    const n = this.registry.length(index);
    const param = this.params[index]!;
    const existing = this.storage[index];
    if (existing && typedLength(existing) === n) return existing;
    let storage: FloatArray | null = null;
    if (this.stream && param instanceof Float32Array && ParameterArena.of(param) === undefined) {
      // Sized at construction for every such parameter; the workers read these buffers.
      storage = this.stream.arena.tryFloat32(n);
    }
    if (storage === null && param instanceof Float32Array && this.arena) {
      try {
        storage = this.arena.tryFloat32(n);
      } catch {
        storage = null;
      }
      if (storage !== null && (typedArrayName(storage) !== 'Float32Array' || typedLength(storage) !== n))
        storage = null;
    }
    storage ??= param instanceof Float64Array ? new Float64Array(n) : new Float32Array(n);
    this.storage[index] = storage;
    this.ownedResources = null;
    return storage;
  }
}

function precisionOf(param: FloatArray): 'float32' | 'float64' {
  return param instanceof Float32Array ? 'float32' : 'float64';
}

/** Cores this process may use: os.availableParallelism() in Node, navigator.hardwareConcurrency elsewhere. */
function availableThreads(): number {
  const scope = globalThis as {
    process?: { getBuiltinModule?(id: string): unknown };
    navigator?: { hardwareConcurrency?: number };
  };
  const os = scope.process?.getBuiltinModule?.('node:os') as { availableParallelism?(): number } | undefined;
  const cores = os?.availableParallelism?.() ?? scope.navigator?.hardwareConcurrency ?? 1;
  return Math.max(1, Math.min(MAX_THREADS, Math.floor(cores)));
}
