import { type FusedCoefficients, firstNonFinite, fusedUpdate, ParameterArena } from '@accsgd/core';

/**
 * Elements of gradient staged in the arena per kernel call: 32,768 float32 (128 KiB) stays in L2
 * while the kernel reads it, as core's streaming kernel sizes its chunks, so main memory sees each
 * element of p, g and buf read once and p and buf written once.
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
 * The parameters and momentum buffers of OnnxAccSGD on the CPU execution providers, kept where
 * JavaScript can reach them and updated by @accsgd/core's fused kernel (fusedUpdate, the function
 * core's AccSGD calls), so results are core's bit for bit.
 *
 * Layout: every parameter lives at the same offset of two flat regions, `params` and `buffers`, in
 * one WebAssembly memory (a ParameterArena) with a staging area for gradients. A step copies the
 * gradients of a run of consecutive parameters that share a group and a first-step flag into the
 * stage and makes one in-place SIMD call per stage-full, however many parameters the run holds:
 * 5,000 small tensors cost about what one tensor of their total size does. The padding between
 * parameters is zero in p, g and buf, so the kernel keeps it zero (finite multipliers times 0).
 * Where WebAssembly SIMD or an arena of this size is unavailable, the regions are ordinary arrays
 * and each parameter goes through fusedUpdate on its own (core's streaming or JavaScript path).
 */
export class CpuParameterStore {
  /** Flat regions; parameter i is [offsets[i], offsets[i] + lengths[i]) of each. */
  private readonly params: Float32Array;
  private readonly buffers: Float32Array;
  private readonly stage: Float32Array | null;
  private readonly offsets: number[];
  private readonly lengths: number[];
  /** The memory of both regions, for owns(). */
  private readonly memory: ArrayBufferLike;
  private lastRuns: { work: readonly CpuStepWork[]; runs: CpuStepWork[][] } | null = null;

  constructor(initial: readonly Float32Array[]) {
    this.offsets = [];
    this.lengths = initial.map((a) => a.length);
    let total = 0;
    for (const n of this.lengths) {
      this.offsets.push(total);
      total += Math.ceil(n / ALIGN) * ALIGN;
    }
    const arena = arenaFor(2 * total + STAGE + 2 * ALIGN);
    if (arena) {
      this.params = arena.float32(total);
      this.buffers = arena.float32(total);
      this.stage = arena.float32(STAGE);
    } else {
      this.params = new Float32Array(total);
      this.buffers = new Float32Array(total);
      this.stage = null;
    }
    this.memory = this.params.buffer;
    initial.forEach((data, i) => this.params.set(data, this.offsets[i]));
  }

  /**
   * Whether `array` views this store's memory (a gradient that is a parameter's own tensor data):
   * such a gradient must be copied first, as the update writes that memory while it streams.
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
   * The first NaN or infinity among the gradients of `work`: which parameter and which element, or
   * null. With the arena, gradients are staged a stage-full at a time and scanned by core's SIMD
   * scan in place, one call per stage-full however many parameters it holds (a JavaScript loop
   * per small gradient cost more than the step itself at 5,000 parameters).
   */
  firstNonFinite(work: readonly CpuStepWork[]): { index: number; element: number } | null {
    if (!this.stage) {
      for (const { index, grad } of work) {
        const element = firstNonFinite(grad);
        if (element >= 0) return { index, element };
      }
      return null;
    }
    for (const run of this.runs(work)) {
      let found: { index: number; element: number } | null = null;
      this.stream(run, (chunk, n) => {
        const bad = firstNonFinite(this.stage!.subarray(0, n));
        if (bad < 0) return true;
        // The padding is zero: the bad element is a gradient's.
        const at = chunk + bad;
        const hit = run.find(
          (w) => at >= this.offsets[w.index]! && at < this.offsets[w.index]! + w.grad.length,
        )!;
        found = { index: hit.index, element: at - this.offsets[hit.index]! };
        return false;
      });
      if (found) return found;
    }
    return null;
  }

  /**
   * Applies one step, every gradient already checked. `coefficients[g]` are group g's fused
   * multipliers (float64, as core's registry plans them); the kernel rounds them as core does.
   */
  update(work: readonly CpuStepWork[], coefficients: readonly FusedCoefficients[]): void {
    if (!this.stage) {
      for (const { index, group, first, grad } of work)
        fusedUpdate(this.param(index), grad, this.buffer(index), coefficients[group]!, first);
      return;
    }
    for (const run of this.runs(work)) {
      const { group, first } = run[0]!;
      this.stream(run, (chunk, n) => {
        fusedUpdate(
          this.params.subarray(chunk, chunk + n),
          this.stage!.subarray(0, n),
          this.buffers.subarray(chunk, chunk + n),
          coefficients[group]!,
          first,
        );
        return true;
      });
    }
    this.lastRuns = null; // holds the caller's gradients
  }

  /**
   * `work` in parameter order, cut into runs of consecutive parameters of one group and one
   * first-step flag: each run is one range of both flat regions. The scan and the update of a step
   * pass the same array, so its runs are worked out once.
   */
  private runs(work: readonly CpuStepWork[]): CpuStepWork[][] {
    if (work === this.lastRuns?.work) return this.lastRuns.runs;
    let sorted = work;
    for (let k = 1; k < work.length; k++)
      if (work[k]!.index < work[k - 1]!.index) {
        sorted = [...work].sort((a, b) => a.index - b.index);
        break;
      }
    const runs: CpuStepWork[][] = [];
    let run: CpuStepWork[] = [];
    for (const w of sorted) {
      const last = run[run.length - 1];
      if (last && (last.index + 1 !== w.index || last.group !== w.group || last.first !== w.first)) {
        runs.push(run);
        run = [];
      }
      run.push(w);
    }
    if (run.length > 0) runs.push(run);
    this.lastRuns = { work, runs };
    return runs;
  }

  /**
   * Copies a run's gradients into the stage a stage-full at a time (zero in the padding) and calls
   * `use(first flat element, count)` for each, until it returns false.
   */
  private stream(run: readonly CpuStepWork[], use: (chunk: number, n: number) => boolean): void {
    const stage = this.stage!;
    const start = this.offsets[run[0]!.index]!;
    const last = run[run.length - 1]!;
    const end = this.offsets[last.index]! + this.lengths[last.index]!;
    let member = 0;
    for (let chunk = start; chunk < end; chunk += STAGE) {
      const chunkEnd = Math.min(end, chunk + STAGE);
      while (member < run.length) {
        const { index, grad } = run[member]!;
        const at = this.offsets[index]!;
        const from = Math.max(at, chunk);
        const to = Math.min(at + grad.length, chunkEnd);
        if (from < to)
          stage.set(
            from === at && to === at + grad.length ? grad : grad.subarray(from - at, to - at),
            from - chunk,
          );
        // The padding after a parameter (to the next whole vector) must read as a zero gradient.
        const padEnd = Math.min(at + Math.ceil(grad.length / ALIGN) * ALIGN, chunkEnd);
        const padFrom = Math.max(at + grad.length, chunk);
        if (padFrom < padEnd) stage.fill(0, padFrom - chunk, padEnd - chunk);
        if (at + grad.length > chunkEnd) break; // continues in the next chunk
        member++;
      }
      if (!use(chunk, chunkEnd - chunk)) return;
    }
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
