import { type FusedCoefficients, fusedUpdate, ParameterArena } from '@accsgd/core';

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
    initial.forEach((data, i) => this.params.set(data, this.offsets[i]));
  }

  /**
   * Whether `array` views this store's memory (a gradient that is a parameter's own tensor data):
   * such a gradient must be copied first, as the update writes that memory while it streams.
   */
  owns(array: Float32Array): boolean {
    return array.buffer === this.params.buffer;
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
   * Applies one step, every gradient already checked. `coefficients[g]` are group g's fused
   * multipliers (float64, as core's registry plans them); the kernel rounds them as core does.
   */
  update(work: readonly CpuStepWork[], coefficients: readonly FusedCoefficients[]): void {
    const sorted = [...work].sort((a, b) => a.index - b.index);
    if (!this.stage) {
      for (const { index, group, first, grad } of sorted)
        fusedUpdate(this.param(index), grad, this.buffer(index), coefficients[group]!, first);
      return;
    }
    let from = 0;
    while (from < sorted.length) {
      // A run: consecutive parameter indices, one group, one first-step flag.
      let to = from + 1;
      while (
        to < sorted.length &&
        sorted[to]!.index === sorted[to - 1]!.index + 1 &&
        sorted[to]!.group === sorted[from]!.group &&
        sorted[to]!.first === sorted[from]!.first
      )
        to++;
      this.updateRun(sorted.slice(from, to), coefficients[sorted[from]!.group]!, sorted[from]!.first);
      from = to;
    }
  }

  /** One run of parameters, contiguous in both regions, streamed through the stage. */
  private updateRun(run: readonly CpuStepWork[], c: FusedCoefficients, first: boolean): void {
    const stage = this.stage!;
    const start = this.offsets[run[0]!.index]!;
    const last = run[run.length - 1]!;
    const end = this.offsets[last.index]! + this.lengths[last.index]!;
    let member = 0;
    for (let chunk = start; chunk < end; chunk += STAGE) {
      const chunkEnd = Math.min(end, chunk + STAGE);
      // The padding between parameters must read as a zero gradient (one parameter has none).
      if (run.length > 1) stage.fill(0, 0, chunkEnd - chunk);
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
        if (at + grad.length > chunkEnd) break; // continues in the next chunk
        member++;
      }
      const n = chunkEnd - chunk;
      fusedUpdate(
        this.params.subarray(chunk, chunkEnd),
        stage.subarray(0, n),
        this.buffers.subarray(chunk, chunkEnd),
        c,
        first,
      );
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
