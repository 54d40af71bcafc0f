import type { FusedCoefficients } from '../coefficients.js';
import { AccSGDConfigError, AccSGDStateError } from '../errors.js';
import type { HeapKernel, WasmMemory } from '../kernels/wasm-kernel.js';
import {
  CLOSED,
  type ControlViews,
  claimStreamPiece,
  claimTag,
  controlBytes,
  controlViews,
  drainJob,
  IN_MEMORY,
  JobKind,
  MAX_CHUNKS,
  PIECE_WORDS,
  RING,
  SLOT_COEFFICIENTS,
  Slot,
  spinWhile,
  type ThreadContext,
} from './protocol.js';
import type { StepWorkerInit } from './step-worker.js';

/**
 * Elements per piece and the least per chunk. A chunk of 65,536 elements moves 1.25 MiB through a
 * step (about 60 us of one core's bandwidth): long enough that claiming it (one compare-exchange)
 * costs nothing, short enough that the last chunks balance out between threads. Small tensors are
 * packed into chunks of at least this size, so 1024 tensors of 16,384 are split exactly as finely as
 * one tensor of 16,777,216. A multiple of 4, so every piece but a tensor's last is whole SIMD vectors.
 */
export const CHUNK_ELEMENTS = 65_536;

/**
 * Elements per staging slot of a stream job: two slots' p and g (1 MiB in all for the ring of
 * four) stay in cache between the copy in, the update and the copy out.
 */
export const STAGE_ELEMENTS = 32_768;

/**
 * Below this many elements a step runs on the calling thread alone: waking the workers and
 * waiting for them (tens of microseconds, more on a loaded machine) costs more than their help.
 * Measured on a quiet 2-core machine (arena, nonFinite 'error', 2 threads against 1): 1.38x as long
 * at 65,536 elements, 0.84x at 131,072, 0.61x at 262,144, 0.57x at 4,194,304. The threshold sits
 * one doubling above the crossover, where the gain survives some load.
 */
export const MIN_THREADED_ELEMENTS = 1 << 18;

/** How long a wait blocks before it looks at the clock, and how long no progress means a dead worker. */
const STALL_CHECK_MS = 1_000;
const STALL_MS = 30_000;

/** The most threads (the calling thread included) a step may use. */
export const MAX_THREADS = 64;

/**
 * Gradient buffers (SharedArrayBuffers met in steps) the workers may hold whatever their size.
 * Beyond this many, they hold more only while all of them together stay within create()'s
 * `adoptBytes`: a training loop reuses its gradient arrays, so the workers keep them all (one
 * buffer per tensor included), while one that allocates new buffers every step recycles the least
 * recently used, so stale buffers kept alive by the workers stay within that budget.
 */
export const ADOPTED_BUFFERS = 8;

interface WorkerHandle {
  terminate(): unknown;
}

/** What a released external index holds until it is handed out again. */
const EMPTY = new Float32Array(0);

/** The end of a channel to one worker over which external buffers are handed (Node only). */
interface BufferPort {
  postMessage(message: { index: number; buffer: SharedArrayBuffer | null }): void;
  close(): void;
}

const canBlock = (() => {
  try {
    // Throws on a browser's main thread, where blocking is not allowed; elsewhere returns at once.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
    return true;
  } catch {
    return false;
  }
})();

/**
 * The worker threads of one optimizer and the step jobs it hands them, over one shared memory.
 * Workers start once, on construction, and run until dispose(); in Node they are unref'd, so an
 * idle process exits. The calling thread claims chunks too, so a step never waits for a worker
 * that has not started yet: until the workers are online it simply runs alone.
 */
export class StepThreads {
  private readonly views: ControlViews;
  private readonly workers: WorkerHandle[] = [];
  private generation = 0;
  /** Stream pieces published over all stream jobs (Slot.Published), wrapping as an int32. */
  private published = 0;
  private memoryIndex = 0;
  private pieceCount = 0;
  private chunkCount = 0;
  private chunkElements = 0;
  private disposed = false;
  private readonly online: Promise<void>;
  /** Resolves once every worker has exited (after dispose()). */
  readonly exited: Promise<void>;

  /**
   * `threads` counts the calling thread, so 2 starts one worker. null where threads cannot run
   * here: no SharedArrayBuffer, no Worker, a memory that is not shared.
   */
  static create(
    memories: readonly { memory: WasmMemory; kernel: HeapKernel }[],
    threads: number,
    maxPieces: number,
    slots: number,
    options: {
      callerWorks?: boolean;
      stallMs?: number;
      /** External buffers every worker gets at start (the parameters'), indices 0, 1, ... */
      externals?: readonly SharedArrayBuffer[];
      /** Bytes of gradient buffers the workers may hold beyond ADOPTED_BUFFERS of them (see there). */
      adoptBytes?: number;
    } = {},
  ): StepThreads | null {
    if (threads < 2 || typeof SharedArrayBuffer === 'undefined' || memories.length === 0) return null;
    if (!memories.every((m) => m.memory.buffer instanceof SharedArrayBuffer)) return null;
    const spawn = workerSpawner();
    if (!spawn) return null;
    const pool = new StepThreads(
      memories,
      threads - 1,
      maxPieces,
      slots,
      spawn,
      options.callerWorks ?? true,
      options.externals ?? [],
    );
    if (options.stallMs !== undefined) pool.stallMs = options.stallMs;
    pool.adoptBytes = options.adoptBytes ?? 0;
    return pool;
  }

  private readonly kernels: HeapKernel[];
  private stallMs = STALL_MS;
  private stageBase = 0;
  /** Float32 views of the external buffers by index: the pinned ones, then the adopted slots. */
  private readonly externalViews: Float32Array[];
  private readonly pinned = new Map<SharedArrayBuffer, number>();
  /** Adopted gradient buffers: their external index (pinned ones first) and the step that last used it. */
  private readonly adopted = new Map<SharedArrayBuffer, { index: number; lastUsed: number }>();
  /** External indices of recycled slots, for reuse. */
  private readonly freeIndices: number[] = [];
  private adoptedBytes = 0;
  private adoptBytes = 0;
  private readonly ports: BufferPort[] = [];
  private readonly callerThread: ThreadContext;

  private constructor(
    memories: readonly { memory: WasmMemory; kernel: HeapKernel }[],
    workerCount: number,
    private readonly maxPieces: number,
    slots: number,
    spawn: Spawner,
    private readonly callerWorks: boolean,
    externals: readonly SharedArrayBuffer[],
  ) {
    const maxChunks = Math.min(maxPieces, MAX_CHUNKS);
    const control = new SharedArrayBuffer(controlBytes(maxPieces, maxChunks, slots));
    this.views = controlViews(control, maxPieces, maxChunks, slots);
    Atomics.store(this.views.control, Slot.Claim, CLOSED);
    this.kernels = memories.map((m) => m.kernel);
    this.externalViews = externals.map((b) => new Float32Array(b));
    externals.forEach((b, i) => this.pinned.set(b, i));
    const views = this.externalViews;
    this.callerThread = { index: 0, external: (source) => views[source]!, sync: () => {} };
    const init: StepWorkerInit = {
      memories: memories.map((m) => m.memory),
      control,
      maxPieces,
      maxChunks,
      slots,
      thread: 0,
      externals: [...externals],
    };
    const started: Promise<void>[] = [];
    const exits: Promise<void>[] = [];
    for (let w = 0; w < workerCount; w++) {
      const { worker, online, exited, port } = spawn({ ...init, thread: w + 1 });
      this.workers.push(worker);
      if (port) this.ports.push(port);
      started.push(online);
      exits.push(exited);
    }
    this.online = Promise.all(started).then(() => undefined);
    this.exited = Promise.all(exits).then(() => undefined);
    // Nobody need await it; a worker that fails to start only leaves its share to the others.
    this.online.catch(() => {});
  }

  /** Worker threads (the calling thread not counted). */
  get workerCount(): number {
    return this.workers.length;
  }

  /** Resolves once every worker has started and waits for jobs; rejects if one failed to start. */
  ready(): Promise<void> {
    return this.online;
  }

  /** Chunks finished by workers so far, over all jobs. */
  get workerChunks(): number {
    return Atomics.load(this.views.control, Slot.WorkerChunks);
  }

  /**
   * Starts describing a job on memory `memory` (an index into create()'s list): pieces and
   * coefficients are added, then scan() or update() runs it.
   */
  begin(memory: number, stageBase = 0): void {
    this.memoryIndex = memory;
    this.stageBase = stageBase;
    this.pieceCount = 0;
    this.chunkCount = 0;
    this.chunkElements = 0;
    this.views.chunkStart[0] = 0;
  }

  setCoefficients(slot: number, c: FusedCoefficients, initialiseBuffer: boolean): void {
    const at = slot * SLOT_COEFFICIENTS;
    const table = this.views.coefficients;
    table[at] = c.bufFromBuf;
    table[at + 1] = c.bufFromParam;
    table[at + 2] = c.bufFromGrad;
    table[at + 3] = c.paramFromParam;
    table[at + 4] = c.paramFromGrad;
    table[at + 5] = c.paramFromBuf;
    table[at + 6] = initialiseBuffer ? 1 : 0;
  }

  /**
   * One tensor: byte offsets of 16-byte-aligned float32 arrays in the job's memory, except that p
   * or g may live in an external buffer (`paramSource`, `gradSource`: an index from the pinned
   * list or adopt()), where its offset is an element offset. Jobs with external pieces need
   * begin()'s stageBase: one staging pair per thread (see EXTERNAL_STAGE_ELEMENTS).
   */
  add(
    param: number,
    grad: number,
    buffer: number,
    n: number,
    slot: number,
    paramSource = IN_MEMORY,
    gradSource = IN_MEMORY,
  ): void {
    const pStep = paramSource === IN_MEMORY ? 4 : 1;
    const gStep = gradSource === IN_MEMORY ? 4 : 1;
    for (let start = 0; start < n; start += CHUNK_ELEMENTS) {
      if (this.pieceCount === this.maxPieces)
        throw new AccSGDConfigError('threads', 'this step', `at most ${this.maxPieces} pieces`);
      const count = Math.min(CHUNK_ELEMENTS, n - start);
      const at = this.pieceCount++ * PIECE_WORDS;
      const pieces = this.views.pieces;
      pieces[at] = param + start * pStep;
      pieces[at + 1] = grad + start * gStep;
      pieces[at + 2] = buffer + start * 4;
      pieces[at + 3] = count;
      pieces[at + 4] = slot;
      pieces[at + 5] = paramSource;
      pieces[at + 6] = gradSource;
      this.chunkElements += count;
      if (this.chunkElements >= CHUNK_ELEMENTS) this.closeChunk();
    }
  }

  /** true when every gradient added is finite; the scan is split like the update. */
  scan(): boolean {
    this.run(JobKind.Scan);
    return Atomics.load(this.views.control, Slot.NonFinite) === 0;
  }

  update(): void {
    this.run(JobKind.Update);
  }

  /** Describes the piece staged in ring slot `slot` (offsets in the stream job's memory). */
  describeStaged(
    slot: number,
    param: number,
    grad: number,
    buffer: number,
    n: number,
    coefficientSlot: number,
  ): void {
    const at = slot * PIECE_WORDS;
    const ring = this.views.ring;
    ring[at] = param;
    ring[at + 1] = grad;
    ring[at + 2] = buffer;
    ring[at + 3] = n;
    ring[at + 4] = coefficientSlot;
    ring[at + 5] = IN_MEMORY;
    ring[at + 6] = IN_MEMORY;
  }

  /**
   * The external index under which the workers see `buffer` (a SharedArrayBuffer a gradient lives
   * on), handing it to them first if it is new; null where they cannot take it: no channel to
   * them (Web Workers block in Atomics.wait and cannot receive a message mid-step; only the
   * parameters' buffers, given at start, are theirs), or no room (see ADOPTED_BUFFERS) without
   * letting go of a buffer this step uses (`stamp`, a number that changes every step).
   */
  adopt(buffer: SharedArrayBuffer, stamp: number): number | null {
    const pinned = this.pinned.get(buffer);
    if (pinned !== undefined) return pinned;
    const known = this.adopted.get(buffer);
    if (known !== undefined) {
      known.lastUsed = stamp;
      return known.index;
    }
    if (this.ports.length !== this.workers.length || this.workers.length === 0) return null;
    const full = () =>
      this.adopted.size >= ADOPTED_BUFFERS && this.adoptedBytes + buffer.byteLength > this.adoptBytes;
    while (full()) {
      // The least recently used goes (a Map iterates in insertion order; ties are rare and harmless).
      let oldest: [SharedArrayBuffer, { index: number; lastUsed: number }] | null = null;
      for (const entry of this.adopted) if (!oldest || entry[1].lastUsed < oldest[1].lastUsed) oldest = entry;
      if (!oldest || oldest[1].lastUsed === stamp) return null;
      this.adopted.delete(oldest[0]);
      this.adoptedBytes -= oldest[0].byteLength;
      this.freeIndices.push(oldest[1].index);
      this.handOver(oldest[1].index, null);
    }
    const index = this.freeIndices.pop() ?? this.externalViews.length;
    this.adopted.set(buffer, { index, lastUsed: stamp });
    this.adoptedBytes += buffer.byteLength;
    this.handOver(index, buffer);
    return index;
  }

  /** Gives the workers `buffer` under external index `index` (null: they let go of what it held). */
  private handOver(index: number, buffer: SharedArrayBuffer | null): void {
    this.externalViews[index] = buffer ? new Float32Array(buffer) : EMPTY;
    // Each port queues the message at once; a worker takes it in (receiveMessageOnPort) before
    // its next job, once it sees Externals count it.
    for (const port of this.ports) port.postMessage({ index, buffer });
    Atomics.add(this.views.control, Slot.Externals, 1);
  }

  /**
   * A stream job of `count` pieces on memory `memory`, for arrays the workers cannot see: for
   * each piece, stage(k, slot) copies its inputs into ring slot `slot` of that memory and calls
   * describeStaged(); once a thread has updated it there, unstage(k, slot) copies its results
   * back. Staging runs up to RING pieces ahead of unstaging, so this thread copies while the
   * workers compute; it computes a piece itself when none has.
   */
  stream(
    memory: number,
    count: number,
    stage: (piece: number, slot: number) => void,
    unstage: (piece: number, slot: number) => void,
  ): void {
    if (count === 0) return;
    if (count > MAX_CHUNKS)
      throw new AccSGDConfigError('threads', 'this step', `at most ${MAX_CHUNKS} pieces`);
    const { control, ringDone } = this.views;
    const kernel = this.kernels[memory]!;
    const base = this.published;
    Atomics.store(control, Slot.Kind, JobKind.Stream);
    Atomics.store(control, Slot.Memory, memory);
    Atomics.store(control, Slot.Count, count);
    Atomics.store(control, Slot.StreamBase, base);
    const generation = ++this.generation;
    Atomics.store(control, Slot.Claim, claimTag(generation));
    Atomics.store(control, Slot.Generation, generation);
    Atomics.notify(control, Slot.Generation);
    const finish = (piece: number) => {
      const slot = piece % RING;
      const finished = (base + piece + 1) | 0;
      const watch = this.stallWatch();
      for (;;) {
        const seen = Atomics.load(ringDone, slot);
        if (seen === finished) break;
        if (this.callerWorks && claimStreamPiece(this.views, kernel, generation, false, false)) continue;
        if (canBlock && spinWhile(ringDone, slot, seen))
          Atomics.wait(ringDone, slot, seen, Math.min(STALL_CHECK_MS, this.stallMs));
        watch(seen);
      }
      unstage(piece, slot);
    };
    for (let piece = 0; piece < count; piece++) {
      if (piece >= RING) finish(piece - RING);
      stage(piece, piece % RING);
      this.published = (this.published + 1) | 0;
      Atomics.store(control, Slot.Published, this.published);
      Atomics.notify(control, Slot.Published);
    }
    for (let piece = Math.max(0, count - RING); piece < count; piece++) finish(piece);
    Atomics.store(control, Slot.Claim, CLOSED);
  }

  /** Stops and releases the workers; the optimizer then steps on the calling thread. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const { control } = this.views;
    Atomics.store(control, Slot.Kind, JobKind.Exit);
    Atomics.store(control, Slot.Generation, ++this.generation);
    Atomics.notify(control, Slot.Generation);
    for (const worker of this.workers) worker.terminate();
    for (const port of this.ports) port.close();
    this.workers.length = 0;
    this.ports.length = 0;
    this.adopted.clear();
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /**
   * A check for the waits above: it throws AccSGDStateError (and stops the workers, so later steps
   * run on this thread) once the value waited on has not moved for STALL_MS. Only a worker that
   * died holding a chunk gets there (one chunk takes well under a millisecond); the alternative is
   * to wait forever.
   */
  private stallWatch(): (seen: number) => void {
    let last = Number.NaN;
    let since = 0;
    return (seen) => {
      const now = performance.now();
      if (seen !== last) {
        last = seen;
        since = now;
      } else if (now - since > this.stallMs) {
        this.dispose();
        throw new AccSGDStateError(
          `a worker thread stopped in the middle of a step (no chunk finished in ${this.stallMs / 1000} s): the step may be partly applied; the workers are stopped and later steps run on the calling thread`,
        );
      }
    };
  }

  private closeChunk(): void {
    this.views.chunkStart[++this.chunkCount] = this.pieceCount;
    this.chunkElements = 0;
  }

  private run(kind: number): void {
    if (this.chunkElements > 0) this.closeChunk();
    const { control } = this.views;
    const count = this.chunkCount;
    if (count === 0) return;
    // The tables above were written with plain stores; the Atomics stores below publish them.
    Atomics.store(control, Slot.Kind, kind);
    Atomics.store(control, Slot.Memory, this.memoryIndex);
    Atomics.store(control, Slot.NonFinite, 0);
    Atomics.store(control, Slot.Count, count);
    Atomics.store(control, Slot.Done, 0);
    Atomics.store(control, Slot.StageBase, this.stageBase);
    const generation = ++this.generation;
    Atomics.store(control, Slot.Claim, claimTag(generation));
    Atomics.store(control, Slot.Generation, generation);
    Atomics.notify(control, Slot.Generation);
    if (this.callerWorks) drainJob(this.views, this.kernels, generation, this.callerThread);
    const watch = this.stallWatch();
    for (;;) {
      const done = Atomics.load(control, Slot.Done);
      if (done >= count) break;
      if (canBlock && spinWhile(control, Slot.Done, done))
        Atomics.wait(control, Slot.Done, done, Math.min(STALL_CHECK_MS, this.stallMs));
      watch(done);
    }
    Atomics.store(control, Slot.Claim, CLOSED);
  }
}

type Spawner = (init: StepWorkerInit) => {
  worker: WorkerHandle;
  online: Promise<void>;
  exited: Promise<void>;
  port?: BufferPort;
};

interface NodeWorker extends WorkerHandle {
  unref(): void;
  once(event: 'message' | 'error' | 'exit', listener: (value: unknown) => void): void;
}

/** How this platform starts a worker thread on step-worker's module, or null where it cannot. */
function workerSpawner(): Spawner | null {
  const nodeProcess = (globalThis as { process?: NodeProcessLike }).process;
  if (typeof nodeProcess?.versions?.node === 'string' && nodeProcess.getBuiltinModule) {
    const { Worker, MessageChannel } = nodeProcess.getBuiltinModule('node:worker_threads') as {
      Worker: new (entry: URL | string, options: object) => NodeWorker;
      MessageChannel: new () => { port1: BufferPort & { unref(): void }; port2: unknown };
    };
    const { existsSync } = nodeProcess.getBuiltinModule('node:fs') as { existsSync(url: URL): boolean };
    let entry: URL | string = new URL('./step-worker.js', import.meta.url);
    let evaluate = false;
    if (!existsSync(entry)) {
      // A source checkout (tests, tsx scripts): the TypeScript entry, loaded through tsx's loader,
      // which a worker does not inherit from its parent in Node 20.
      const { createRequire } = nodeProcess.getBuiltinModule('node:module') as {
        createRequire(from: string | URL): { resolve(id: string): string };
      };
      // require.resolve finds the CommonJS build; its ESM twin sits beside it.
      const api = createRequire(import.meta.url)
        .resolve('tsx/esm/api')
        .replace(/\.cjs$/, '.mjs');
      const source = new URL('./step-worker.ts', import.meta.url).href;
      entry = `import(${JSON.stringify(`file://${api}`)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(source)}); });`;
      evaluate = true;
    }
    return (init) => {
      const { port1, port2 } = new MessageChannel();
      // Nobody listens on this end; it must not keep the process alive either.
      port1.unref();
      const worker = new Worker(entry, {
        eval: evaluate,
        workerData: { ...init, port: port2 },
        transferList: [port2],
      });
      // An idle optimizer must not keep the process alive; the worker only ever waits on memory.
      worker.unref();
      const online = new Promise<void>((resolve, reject) => {
        worker.once('message', (message) =>
          message === 'online' ? resolve() : reject(new Error(`a step worker did not start: ${message}`)),
        );
        worker.once('error', reject);
        worker.once('exit', () => reject(new Error('a step worker exited before it started')));
      });
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      return { worker, online, exited, port: port1 };
    };
  }
  const scope = globalThis as {
    Worker?: new (
      url: URL,
      options: object,
    ) => WorkerHandle & {
      postMessage(message: unknown): void;
      addEventListener(type: string, listener: (event: unknown) => void, options?: object): void;
    };
    crossOriginIsolated?: boolean;
  };
  if (typeof scope.Worker !== 'function' || scope.crossOriginIsolated === false) return null;
  const WebWorker = scope.Worker;
  return (init) => {
    const worker = new WebWorker(new URL('./step-worker.js', import.meta.url), { type: 'module' });
    const online = new Promise<void>((resolve, reject) => {
      worker.addEventListener(
        'message',
        (event) => {
          const message = (event as { data?: unknown }).data;
          if (message === 'online') resolve();
          else reject(new Error(`a step worker did not start: ${String(message)}`));
        },
        { once: true },
      );
      worker.addEventListener('error', reject, { once: true });
    });
    worker.postMessage(init);
    // A terminated Web Worker is gone at once; there is no exit event to wait for.
    let terminated: () => void = () => {};
    const exited = new Promise<void>((resolve) => {
      terminated = resolve;
    });
    const handle = {
      terminate() {
        worker.terminate();
        terminated();
      },
    };
    return { worker: handle, online, exited };
  };
}

interface NodeProcessLike {
  versions?: { node?: string };
  getBuiltinModule?(id: string): unknown;
}
