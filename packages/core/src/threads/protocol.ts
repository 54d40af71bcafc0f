import type { FusedCoefficients } from '../coefficients.js';
import type { HeapKernel } from '../kernels/wasm-kernel.js';

/**
 * The shared control block through which the calling thread and its worker threads split one
 * step, and the chunk loop that all of them run. Everything here is read and written by every
 * thread, so it holds only Int32 words (Atomics) and plain tables written before a job is
 * published.
 *
 * A job is a list of chunks. Every thread, the caller included, claims chunks one at a time with a
 * compare-exchange on CLAIM until none are left, so a thread that is slow to wake (or a worker that
 * has not started yet) costs nothing: the others take its share. CLAIM packs the job's generation
 * (11 bits) above the next chunk index (20 bits); between jobs it holds CLOSED, so a claim that a
 * thread prepared during one job can never succeed in the next.
 *
 * A stream job (JobKind.Stream) is the same, except that its pieces are published one at a time
 * into a ring of RING staging slots: the caller copies a piece of ordinary arrays (which workers
 * cannot see) into a slot, publishes it, and later copies the result back out; a thread may claim
 * piece k only once it is published, and marks it finished in ringDone.
 */
export const Slot = {
  /** Job generation; workers Atomics.wait on it. */
  Generation: 0,
  Claim: 1,
  /** Chunks in the current job. */
  Count: 2,
  /** Chunks finished; the caller Atomics.waits on it. */
  Done: 3,
  /** What the job does: a JobKind. */
  Kind: 4,
  /** Set to 1 by a scan that found a NaN or infinity. */
  NonFinite: 5,
  /** Shared buffers handed to the workers so far (ExternalMemories.adopt): a piece may name any below it. */
  Externals: 6,
  /** Chunks finished by workers (not the caller), over all jobs: how tests see that workers worked. */
  WorkerChunks: 7,
  /** Index of the memory (and kernel) the job runs on. */
  Memory: 8,
  /** Stream pieces published, counted over all stream jobs (so it only grows). */
  Published: 9,
  /** Published's value when the current stream job began. */
  StreamBase: 10,
  /** Byte offset, in the job's memory, of thread 0's staging for external pieces (see runPiece). */
  StageBase: 11,
} as const;

export const JobKind = { Update: 0, Scan: 1, Exit: 2, Stream: 3 } as const;

/** Staging slots of a stream job: enough for a worker to run a few pieces ahead of the caller. */
export const RING = 4;

export const HEADER_WORDS = 12;
/**
 * Fields per piece in the piece table: p, g and buf byte offsets, element count, coefficient slot,
 * and where p and g are: IN_MEMORY (the job's memory) or the index of an external shared buffer.
 */
export const PIECE_WORDS = 7;
export const IN_MEMORY = -1;
/**
 * Elements a thread stages at a time from an external buffer: its p and g (256 KiB) stay in L2
 * between the copy in, the update and the copy out. Each thread has its own staging, at
 * StageBase + thread * 2 * EXTERNAL_STAGE_ELEMENTS * 4 bytes: p, then g.
 */
export const EXTERNAL_STAGE_ELEMENTS = 32_768;
/** Coefficients per slot (float64): a group's six, for a first step (initialise) or a later one. */
export const SLOT_COEFFICIENTS = 7;
const INDEX_BITS = 20;
const INDEX_MASK = (1 << INDEX_BITS) - 1;
export const MAX_CHUNKS = INDEX_MASK - 1;
export const CLOSED = INDEX_MASK;

export function claimTag(generation: number): number {
  return (generation & 0x7ff) << INDEX_BITS;
}

/** The views over one control buffer that every thread takes. */
export interface ControlViews {
  control: Int32Array;
  /** chunkStart[k]..chunkStart[k+1] are chunk k's pieces. */
  chunkStart: Int32Array;
  pieces: Int32Array;
  /** A stream job's pieces, by ring slot (PIECE_WORDS each). */
  ring: Int32Array;
  /** Per ring slot: 1 + the Published sequence number of the last piece finished there. */
  ringDone: Int32Array;
  /** Per slot: the six FusedCoefficients in order, then 1 for a first step (buffer initialised from p). */
  coefficients: Float64Array;
}

/** Bytes of a control buffer for `maxPieces` pieces, `maxChunks` chunks and `slots` coefficient slots. */
export function controlBytes(maxPieces: number, maxChunks: number, slots: number): number {
  const ints = HEADER_WORDS + maxChunks + 1 + PIECE_WORDS * (maxPieces + RING) + RING;
  return Math.ceil((ints * 4) / 8) * 8 + slots * SLOT_COEFFICIENTS * 8;
}

export function controlViews(
  buffer: SharedArrayBuffer,
  maxPieces: number,
  maxChunks: number,
  slots: number,
): ControlViews {
  const ints = HEADER_WORDS + maxChunks + 1 + PIECE_WORDS * (maxPieces + RING) + RING;
  const piecesAt = HEADER_WORDS + maxChunks + 1;
  const ringAt = piecesAt + PIECE_WORDS * maxPieces;
  return {
    control: new Int32Array(buffer, 0, HEADER_WORDS),
    chunkStart: new Int32Array(buffer, HEADER_WORDS * 4, maxChunks + 1),
    pieces: new Int32Array(buffer, piecesAt * 4, PIECE_WORDS * maxPieces),
    ring: new Int32Array(buffer, ringAt * 4, PIECE_WORDS * RING),
    ringDone: new Int32Array(buffer, (ringAt + PIECE_WORDS * RING) * 4, RING),
    coefficients: new Float64Array(buffer, Math.ceil((ints * 4) / 8) * 8, slots * SLOT_COEFFICIENTS),
  };
}

/**
 * Claims and runs chunks of job `generation` until none are left. Finishing the job's last chunk
 * wakes the caller waiting on Done; a worker counts its chunks first, so the count is complete
 * once the job is.
 */
export function drainJob(
  views: ControlViews,
  kernels: readonly HeapKernel[],
  generation: number,
  thread: ThreadContext,
): void {
  const { control } = views;
  const kernel = kernels[Atomics.load(control, Slot.Memory)]!;
  const worker = thread.index > 0;
  if (Atomics.load(control, Slot.Kind) === JobKind.Stream) {
    while (claimStreamPiece(views, kernel, generation, worker, true)) {}
    return;
  }
  thread.sync(Atomics.load(control, Slot.Externals));
  const tag = claimTag(generation);
  for (;;) {
    const word = Atomics.load(control, Slot.Claim);
    if ((word & ~INDEX_MASK) !== tag) return;
    const chunk = word & INDEX_MASK;
    if (chunk >= Atomics.load(control, Slot.Count)) return;
    if (Atomics.compareExchange(control, Slot.Claim, word, word + 1) !== word) continue;
    // Count is read again after the claim: the claim succeeding means the job is still current,
    // and its Count cannot change until this chunk is counted Done.
    const count = Atomics.load(control, Slot.Count);
    if (chunk >= count) return;
    runChunk(views, kernel, chunk, Atomics.load(control, Slot.Kind), thread);
    if (worker) Atomics.add(control, Slot.WorkerChunks, 1);
    if (Atomics.add(control, Slot.Done, 1) + 1 === count) Atomics.notify(control, Slot.Done);
  }
}

/**
 * Claims the stream job's next piece and runs it; false when the job has no piece left to claim
 * (or, with `waitForPublish` false, none published yet). A worker waits for the caller to publish;
 * the caller, which publishes, never does.
 */
export function claimStreamPiece(
  views: ControlViews,
  kernel: HeapKernel,
  generation: number,
  worker: boolean,
  waitForPublish: boolean,
): boolean {
  const { control, ring, ringDone } = views;
  const tag = claimTag(generation);
  for (;;) {
    const word = Atomics.load(control, Slot.Claim);
    if ((word & ~INDEX_MASK) !== tag) return false;
    const piece = word & INDEX_MASK;
    if (piece >= Atomics.load(control, Slot.Count)) return false;
    const base = Atomics.load(control, Slot.StreamBase);
    const published = Atomics.load(control, Slot.Published);
    if (piece >= ((published - base) | 0)) {
      if (!waitForPublish) return false;
      if (spinWhile(control, Slot.Published, published)) Atomics.wait(control, Slot.Published, published);
      continue;
    }
    if (Atomics.compareExchange(control, Slot.Claim, word, word + 1) !== word) continue;
    const slot = piece % RING;
    const at = slot * PIECE_WORDS;
    runPiece(views, kernel, ring, at, JobKind.Update, null);
    if (worker) Atomics.add(control, Slot.WorkerChunks, 1);
    Atomics.store(ringDone, slot, (base + piece + 1) | 0);
    Atomics.notify(ringDone, slot);
    return true;
  }
}

function runChunk(
  views: ControlViews,
  kernel: HeapKernel,
  chunk: number,
  kind: number,
  thread: ThreadContext,
): void {
  const { chunkStart, pieces, control } = views;
  for (let piece = chunkStart[chunk]!; piece < chunkStart[chunk + 1]!; piece++) {
    // A later chunk need not be scanned once any gradient failed: the step will not be applied.
    if (kind === JobKind.Scan && Atomics.load(control, Slot.NonFinite) !== 0) return;
    runPiece(views, kernel, pieces, piece * PIECE_WORDS, kind, thread);
  }
}

/**
 * What a thread brings to a job besides the shared tables: its index (0 is the calling thread,
 * which picks its staging for external pieces) and the external shared buffers it can see.
 */
export interface ThreadContext {
  readonly index: number;
  /** A float32 view of the whole external buffer `source`. */
  external(source: number): Float32Array;
  /** Takes in every buffer handed to the workers up to `count` (Slot.Externals) before a job runs. */
  sync(count: number): void;
}

function runPiece(
  views: ControlViews,
  kernel: HeapKernel,
  pieces: Int32Array,
  at: number,
  kind: number,
  thread: ThreadContext | null,
): void {
  const { coefficients, control } = views;
  const param = pieces[at]!;
  const grad = pieces[at + 1]!;
  const buffer = pieces[at + 2]!;
  const n = pieces[at + 3]!;
  const paramSource = pieces[at + 5]!;
  const gradSource = pieces[at + 6]!;
  if (thread && (paramSource !== IN_MEMORY || gradSource !== IN_MEMORY)) {
    runExternalPiece(views, kernel, thread, pieces, at, kind);
    return;
  }
  if (kind === JobKind.Scan) {
    if (kernel.firstNonFinite(grad, n) >= 0) Atomics.store(control, Slot.NonFinite, 1);
    return;
  }
  const [c, first] = coefficientsAt(coefficients, pieces[at + 4]!);
  kernel.update(param, grad, buffer, n, c, first);
}

/** Coefficient slot `slot` of the table: the six coefficients, and whether it is a first step. */
function coefficientsAt(table: Float64Array, slot: number): [FusedCoefficients, boolean] {
  const s = slot * SLOT_COEFFICIENTS;
  const c = {
    bufFromBuf: table[s]!,
    bufFromParam: table[s + 1]!,
    bufFromGrad: table[s + 2]!,
    paramFromParam: table[s + 3]!,
    paramFromGrad: table[s + 4]!,
    paramFromBuf: table[s + 5]!,
  };
  return [c, table[s + 6] === 1];
}

/**
 * A piece whose p or g lives in an external shared buffer (a caller's Float32Array over a
 * SharedArrayBuffer, which the kernel cannot address): this thread copies it into its own staging
 * in the job's memory a stage at a time, runs the same kernel there (so every bit is the in-memory
 * path's), and copies p back. The copies run on every thread at once, which is the point: only
 * the calling thread can copy an ordinary array. External offsets are element offsets, so buffers
 * up to 8 GiB fit an Int32.
 */
function runExternalPiece(
  views: ControlViews,
  kernel: HeapKernel,
  thread: ThreadContext,
  pieces: Int32Array,
  at: number,
  kind: number,
): void {
  const { coefficients, control } = views;
  const n = pieces[at + 3]!;
  const paramSource = pieces[at + 5]!;
  const gradSource = pieces[at + 6]!;
  const stageP = Atomics.load(control, Slot.StageBase) + thread.index * 2 * EXTERNAL_STAGE_ELEMENTS * 4;
  const stageG = stageP + EXTERNAL_STAGE_ELEMENTS * 4;
  const memory = kernel.memory.buffer;
  const staged = (offset: number) => new Float32Array(memory, offset, EXTERNAL_STAGE_ELEMENTS);
  const [pStage, gStage] = [staged(stageP), staged(stageG)];
  const pSource = paramSource === IN_MEMORY ? null : thread.external(paramSource);
  const gSource = gradSource === IN_MEMORY ? null : thread.external(gradSource);
  const [c, first] = coefficientsAt(coefficients, pieces[at + 4]!);
  const scan = kind === JobKind.Scan;
  for (let done = 0; done < n; done += EXTERNAL_STAGE_ELEMENTS) {
    const m = Math.min(EXTERNAL_STAGE_ELEMENTS, n - done);
    const g = gSource ? pieces[at + 1]! + done : 0;
    if (gSource) gStage.set(gSource.subarray(g, g + m));
    const gradAt = gSource ? stageG : pieces[at + 1]! + 4 * done;
    if (scan) {
      if (kernel.firstNonFinite(gradAt, m) >= 0) {
        Atomics.store(control, Slot.NonFinite, 1);
        return;
      }
      continue;
    }
    const p = pSource ? pieces[at]! + done : 0;
    if (pSource) pStage.set(pSource.subarray(p, p + m));
    kernel.update(pSource ? stageP : pieces[at]! + 4 * done, gradAt, pieces[at + 2]! + 4 * done, m, c, first);
    if (pSource) pSource.set(pStage.subarray(0, m), p);
  }
}

/**
 * Reads `array[index]` up to SPINS times while it still equals `value`; true if it never changed.
 * A wait that the next piece or chunk ends within microseconds is cheaper spun than slept: a
 * futex sleep and wake costs about as much as copying a staging slot.
 */
export function spinWhile(array: Int32Array, index: number, value: number): boolean {
  for (let spin = 0; spin < SPINS; spin++) if (Atomics.load(array, index) !== value) return false;
  return true;
}

const SPINS = 2_000;
