import {
  type FusedCoefficients,
  firstNonFinite,
  fusedUpdate,
  type HeapKernel,
  ParameterArena,
} from '@accsgd/core';

/**
 * Elements of gradient copied between two SIMD finiteness scans: 32,768 float32 (128 KiB) stays in
 * L2 while the scan reads it, as core's streaming kernel sizes its chunks. Also the size of the
 * stage where the arena has no room for a whole gradient region.
 */
const STAGE = 32_768;
/** Each parameter starts on a 16-byte (one SIMD vector) boundary of the flat regions. */
const ALIGN = 4;

/** One parameter's part of a step: a float32 gradient of the parameter's length. */
export interface CpuStepWork {
  index: number;
  group: number;
  /** The parameter's first step: its buffer is taken to be a copy of p (SPEC §2.1). */
  first: boolean;
  grad: Float32Array;
}

/**
 * A step's work in parameter order, cut into runs of consecutive parameters of one group and one
 * first-step flag: run r is sorted[cuts[r]] to sorted[cuts[r + 1] - 1], one range of the flat
 * regions.
 */
interface Runs {
  sorted: readonly CpuStepWork[];
  cuts: number[];
}

/**
 * The parameters and momentum buffers of OnnxAccSGD on the CPU execution providers, kept where
 * JavaScript can reach them and updated by @accsgd/core's fused kernel (the kernel core's AccSGD
 * calls), so results are core's bit for bit.
 *
 * Layout: every parameter lives at the same offset of three flat regions, `params`, `buffers` and
 * `grads`, in one WebAssembly memory (a ParameterArena). The gradient region costs one more float32
 * per parameter element (the store takes 12 bytes per element, not 8) and buys a step that copies
 * each gradient once: the finiteness scan copies a run of consecutive parameters that share a group
 * and a first-step flag into the region, scanning each 32,768 elements as they arrive, and the
 * update then runs in place over the whole run in one SIMD call, however many parameters it holds:
 * 5,000 small tensors cost little more than one tensor of their total size. The padding between
 * parameters is zero in p, g and buf and never written, so the kernel keeps it zero (finite
 * multipliers times 0) and every call covers whole vectors.
 *
 * Where the arena cannot hold three regions (over 2^30 bytes each, or a platform that refuses the
 * memory), the gradients go through a 32,768-element stage instead, copied once for the scan and
 * again for the update; where WebAssembly SIMD or an arena of even that size is unavailable, the
 * regions are ordinary arrays and each parameter goes through fusedUpdate on its own (core's
 * streaming or JavaScript path).
 */
export class CpuParameterStore {
  /** Flat regions; parameter i is [offsets[i], offsets[i] + lengths[i]) of each. */
  private readonly params: Float32Array;
  private readonly buffers: Float32Array;
  /** The gradient region (as long as params), or the stage (STAGE elements), or null (no arena). */
  private readonly grads: Float32Array | null;
  /** Whether `grads` is a whole region rather than a stage. */
  private readonly region: boolean;
  private readonly kernel: HeapKernel | null;
  private readonly offsets: number[];
  private readonly lengths: number[];
  /** The memory of every region, for owns(). */
  private readonly memory: ArrayBufferLike;
  private lastRuns: { work: readonly CpuStepWork[]; runs: Runs } | null = null;
  /** The work whose gradients the region holds, every one scanned and finite (region only). */
  private staged: readonly CpuStepWork[] | null = null;

  /** `gradientRegion: false` takes the stage even where a region fits (for tests of that path). */
  constructor(initial: readonly Float32Array[], options: { gradientRegion?: boolean } = {}) {
    this.offsets = [];
    this.lengths = initial.map((a) => a.length);
    let total = 0;
    for (const n of this.lengths) {
      this.offsets.push(total);
      total += Math.ceil(n / ALIGN) * ALIGN;
    }
    let arena = options.gradientRegion === false ? null : arenaFor(3 * total + 3 * ALIGN);
    this.region = arena !== null;
    arena ??= arenaFor(2 * total + STAGE + 3 * ALIGN);
    if (arena) {
      this.params = arena.float32(total);
      this.buffers = arena.float32(total);
      this.grads = arena.float32(this.region ? total : STAGE);
      this.kernel = arena.kernel;
    } else {
      this.params = new Float32Array(total);
      this.buffers = new Float32Array(total);
      this.grads = null;
      this.kernel = null;
    }
    this.memory = this.params.buffer;
    initial.forEach((data, i) => this.params.set(data, this.offsets[i]));
  }

  /**
   * Whether `array` views this store's memory (a gradient that is a parameter's own tensor data):
   * such a gradient must be copied first, as the store writes that memory (the stage or the
   * gradient region, and the parameters) while it reads the gradients.
   */
  owns(array: Float32Array): boolean {
    return array.buffer === this.memory;
  }

  /** A live view of parameter i (updated in place by every step). */
  param(index: number): Float32Array {
    const start = this.offsets[index]!;
    return this.params.subarray(start, start + this.lengths[index]!);
  }

  /** A live view of the momentum-buffer memory of parameter i (meaningful once it has a buffer). */
  buffer(index: number): Float32Array {
    const start = this.offsets[index]!;
    return this.buffers.subarray(start, start + this.lengths[index]!);
  }

  /**
   * The first NaN or infinity among the gradients of `work`, in parameter order: which parameter
   * and which element, or null. With the arena, gradients are copied into it and scanned there by
   * core's SIMD scan, one call per 32,768 elements however many parameters they hold (a JavaScript
   * loop per small gradient cost more than the step itself at 5,000 parameters). With the gradient
   * region, an update() of the same `work` array that follows (the gradients unchanged in between)
   * uses what this copied and copies nothing.
   */
  firstNonFinite(work: readonly CpuStepWork[]): { index: number; element: number } | null {
    this.staged = null;
    if (!this.kernel) {
      for (const { index, grad } of work) {
        const element = firstNonFinite(grad);
        if (element >= 0) return { index, element };
      }
      return null;
    }
    const runs = this.runs(work);
    for (let r = 0; r + 1 < runs.cuts.length; r++) {
      const at = this.region ? this.copyRun(runs, r, true) : this.streamRun(runs, r, null);
      if (at >= 0) {
        this.lastRuns = null; // holds the caller's gradients
        return this.locate(runs, r, at);
      }
    }
    if (this.region) this.staged = work;
    return null;
  }

  /**
   * Applies one step, every gradient already checked. `coefficients[g]` are group g's fused
   * multipliers (float64, as core's registry plans them); the kernel rounds them as core does.
   */
  update(work: readonly CpuStepWork[], coefficients: readonly FusedCoefficients[]): void {
    if (!this.kernel) {
      for (const { index, group, first, grad } of work)
        fusedUpdate(this.param(index), grad, this.buffer(index), coefficients[group]!, first);
      return;
    }
    const runs = this.runs(work);
    const staged = this.staged === work;
    this.staged = null;
    this.lastRuns = null; // holds the caller's gradients
    for (let r = 0; r + 1 < runs.cuts.length; r++) {
      const { group, first } = runs.sorted[runs.cuts[r]!]!;
      const c = coefficients[group]!;
      if (!this.region) {
        this.streamRun(runs, r, (start, n) =>
          this.kernel!.update(
            this.params.byteOffset + 4 * start,
            this.grads!.byteOffset,
            this.buffers.byteOffset + 4 * start,
            n,
            c,
            first,
          ),
        );
        continue;
      }
      if (!staged) this.copyRun(runs, r, false);
      const start = this.offsets[runs.sorted[runs.cuts[r]!]!.index]!;
      const n = this.paddedEnd(runs.sorted[runs.cuts[r + 1]! - 1]!.index) - start;
      this.kernel.update(
        this.params.byteOffset + 4 * start,
        this.grads!.byteOffset + 4 * start,
        this.buffers.byteOffset + 4 * start,
        n,
        c,
        first,
      );
    }
  }

  /** The end of parameter i's padded range: the next whole vector. */
  private paddedEnd(index: number): number {
    return this.offsets[index]! + Math.ceil(this.lengths[index]! / ALIGN) * ALIGN;
  }

  /**
   * `work` in parameter order, cut into runs. The scan and the update of a step pass the same
   * array, so its runs are worked out once.
   */
  private runs(work: readonly CpuStepWork[]): Runs {
    if (work === this.lastRuns?.work) return this.lastRuns.runs;
    let sorted = work;
    for (let k = 1; k < work.length; k++)
      if (work[k]!.index < work[k - 1]!.index) {
        sorted = [...work].sort((a, b) => a.index - b.index);
        break;
      }
    const cuts = [0];
    for (let k = 1; k < sorted.length; k++) {
      const last = sorted[k - 1]!;
      const w = sorted[k]!;
      if (last.index + 1 !== w.index || last.group !== w.group || last.first !== w.first) cuts.push(k);
    }
    if (sorted.length > 0) cuts.push(sorted.length);
    else cuts.pop();
    const runs = { sorted, cuts };
    this.lastRuns = { work, runs };
    return runs;
  }

  /**
   * Copies run r's gradients into the gradient region, each at its parameter's offset, and (when
   * `scan`) scans what it copied every STAGE elements and at the end: the flat position of the
   * first non-finite value, or -1. Scans cover whole vectors: they end at a parameter's padded end,
   * or inside a gradient longer than STAGE, at a multiple of STAGE from its (aligned) start.
   */
  private copyRun(runs: Runs, r: number, scan: boolean): number {
    const grads = this.grads!;
    const kernel = this.kernel!;
    const base = grads.byteOffset;
    const { sorted, cuts } = runs;
    let from = this.offsets[sorted[cuts[r]!]!.index]!; // the first element copied but not scanned
    let to = from;
    for (let k = cuts[r]!; k < cuts[r + 1]!; k++) {
      const { index, grad } = sorted[k]!;
      const at = this.offsets[index]!;
      const n = grad.length;
      if (n <= STAGE) {
        grads.set(grad, at);
        to = this.paddedEnd(index);
        if (!scan || to - from < STAGE) continue;
        const bad = kernel.firstNonFinite(base + 4 * from, to - from);
        if (bad >= 0) return from + bad;
        from = to;
        continue;
      }
      for (let piece = 0; piece < n; piece += STAGE) {
        const end = Math.min(n, piece + STAGE);
        grads.set(grad.subarray(piece, end), at + piece);
        to = end === n ? this.paddedEnd(index) : at + end;
        if (!scan) continue;
        const bad = kernel.firstNonFinite(base + 4 * from, to - from);
        if (bad >= 0) return from + bad;
        from = to;
      }
    }
    if (!scan || to === from) return -1;
    const bad = kernel.firstNonFinite(base + 4 * from, to - from);
    return bad >= 0 ? from + bad : -1;
  }

  /**
   * Without a gradient region: copies run r's gradients into the stage a stage-full at a time
   * (zero in the padding) and either scans each (`use` null: returns the flat position of the
   * first non-finite value, or -1) or calls `use(first flat element, count)` for each.
   */
  private streamRun(runs: Runs, r: number, use: ((chunk: number, n: number) => void) | null): number {
    const stage = this.grads!;
    const { sorted, cuts } = runs;
    const first = cuts[r]!;
    const last = cuts[r + 1]!;
    const start = this.offsets[sorted[first]!.index]!;
    const end = this.paddedEnd(sorted[last - 1]!.index);
    let member = first;
    for (let chunk = start; chunk < end; chunk += STAGE) {
      const chunkEnd = Math.min(end, chunk + STAGE);
      while (member < last) {
        const { index, grad } = sorted[member]!;
        const at = this.offsets[index]!;
        const from = Math.max(at, chunk);
        const to = Math.min(at + grad.length, chunkEnd);
        if (from < to)
          stage.set(
            from === at && to === at + grad.length ? grad : grad.subarray(from - at, to - at),
            from - chunk,
          );
        // The padding after a parameter (to the next whole vector, 1-3 elements) must read as a
        // zero gradient: written here, as a builtin fill() call costs more than the loop.
        const padEnd = Math.min(this.paddedEnd(index), chunkEnd);
        for (let p = Math.max(at + grad.length, chunk); p < padEnd; p++) stage[p - chunk] = 0;
        if (at + grad.length > chunkEnd) break; // continues in the next chunk
        member++;
      }
      const n = chunkEnd - chunk;
      if (use) use(chunk, n);
      else {
        const bad = this.kernel!.firstNonFinite(stage.byteOffset, n);
        if (bad >= 0) return chunk + bad;
      }
    }
    return -1;
  }

  /** The parameter of run r at flat position `at` (a gradient's element: the padding is zero). */
  private locate(runs: Runs, r: number, at: number): { index: number; element: number } {
    const { sorted, cuts } = runs;
    let lo = cuts[r]!;
    let hi = cuts[r + 1]! - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.offsets[sorted[mid]!.index]! <= at) lo = mid;
      else hi = mid - 1;
    }
    const { index } = sorted[lo]!;
    return { index, element: at - this.offsets[index]! };
  }
}

/** An arena of `capacity` float32 elements with core's SIMD kernel, or null (too large, no SIMD). */
function arenaFor(capacity: number): ParameterArena | null {
  try {
    const arena = new ParameterArena(capacity);
    return arena.kernel ? arena : null;
  } catch {
    return null;
  }
}
