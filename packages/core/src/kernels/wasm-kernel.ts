import type { FusedCoefficients } from '../coefficients.js';
import { float32Multipliers, fusedUpdateFloat32, scanNonFinite } from '../fused-update.js';
import {
  FUSED_UPDATE_IMPORTED_MEMORY_WASM_BASE64,
  FUSED_UPDATE_SHARED_MEMORY_WASM_BASE64,
  FUSED_UPDATE_WASM_BASE64,
} from './fused-update-wasm.js';

/**
 * The fused update in WebAssembly SIMD (fused-update.wat), for float32 tensors.
 *
 * WebAssembly cannot address the caller's Float32Arrays, so each tensor is streamed through this
 * module's memory in chunks: copy p, g, buf in, update, copy p, buf out. A chunk of 32,768 elements
 * is 384 KiB for the three arrays and stays in a 1-2 MiB L2 cache, so main memory still sees each
 * element read and written once (20 bytes); the extra copies run at cache speed. The arithmetic is
 * float32 in the JavaScript float32 kernel's order (see fused-update.ts), so both give
 * bit-identical results.
 */
/**
 * The part of a `WebAssembly.Memory` this package's public types use, declared here so that they
 * compile without the DOM lib (TypeScript declares WebAssembly only there; @types/node does not).
 * A real `WebAssembly.Memory` is one.
 */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(delta: number): number;
}

const CHUNK = 32_768;
const PAGE = 65_536;

interface Exports {
  memory: WebAssembly.Memory;
  update(
    p: number,
    g: number,
    b: number,
    pOut: number,
    bOut: number,
    n: number,
    init: number,
    ...c: number[]
  ): void;
  allFinite(g: number, n: number): number;
}

export class WasmKernel {
  private readonly exports: Exports;
  private readonly param: Float32Array;
  private readonly grad: Float32Array;
  private readonly buffer: Float32Array;

  private constructor(exports: Exports) {
    this.exports = exports;
    const bytes = CHUNK * 4;
    // Grown once here and never again: growing would detach these views.
    exports.memory.grow(Math.ceil((3 * bytes) / PAGE));
    this.param = new Float32Array(exports.memory.buffer, 0, CHUNK);
    this.grad = new Float32Array(exports.memory.buffer, bytes, CHUNK);
    this.buffer = new Float32Array(exports.memory.buffer, 2 * bytes, CHUNK);
  }

  /** null where WebAssembly or its SIMD extension is unavailable; callers then use JavaScript. */
  static create(): WasmKernel | null {
    try {
      const instance = new WebAssembly.Instance(new WebAssembly.Module(decode(FUSED_UPDATE_WASM_BASE64)), {});
      return new WasmKernel(instance.exports as unknown as Exports);
    } catch {
      return null;
    }
  }

  update(
    param: Float32Array,
    grad: Float32Array,
    buffer: Float32Array,
    c: FusedCoefficients,
    initialiseBuffer: boolean,
  ): void {
    const { update } = this.exports;
    const multipliers = float32Multipliers(c, initialiseBuffer);
    const n = param.length;
    for (let start = 0; start < n; start += CHUNK) {
      const end = Math.min(n, start + CHUNK);
      const count = end - start;
      this.param.set(param.subarray(start, end));
      this.grad.set(grad.subarray(start, end));
      if (!initialiseBuffer) this.buffer.set(buffer.subarray(start, end));
      update(
        this.param.byteOffset,
        this.grad.byteOffset,
        this.buffer.byteOffset,
        this.param.byteOffset,
        this.buffer.byteOffset,
        (count + 3) & ~3,
        initialiseBuffer ? 1 : 0,
        ...multipliers,
      );
      param.set(this.param.subarray(0, count), start);
      buffer.set(this.buffer.subarray(0, count), start);
    }
  }

  /**
   * The update of many tensors of fewer than CHUNK elements each, all with the same multipliers:
   * they are packed side by side (each at a whole SIMD vector) into the staging chunk, so that a
   * step over thousands of small tensors makes one kernel call per chunk, not one per tensor. The
   * lanes between tensors hold leftovers and are computed and dropped. Larger tensors go through
   * update() one at a time.
   */
  updatePacked(
    params: readonly Float32Array[],
    grads: readonly Float32Array[],
    buffers: readonly Float32Array[],
    c: FusedCoefficients,
    initialiseBuffer: boolean,
  ): void {
    const { update } = this.exports;
    const [k0, k1, k2, k3, k4, k5] = float32Multipliers(c, initialiseBuffer);
    const init = initialiseBuffer ? 1 : 0;
    const p = this.param;
    const g = this.grad;
    const b = this.buffer;
    // Indices of the tensors now in the chunk, and the elements (padded) they take.
    const packed: number[] = [];
    let used = 0;
    const flush = () => {
      if (used === 0) return;
      update(
        p.byteOffset,
        g.byteOffset,
        b.byteOffset,
        p.byteOffset,
        b.byteOffset,
        used,
        init,
        k0,
        k1,
        k2,
        k3,
        k4,
        k5,
      );
      let at = 0;
      for (const i of packed) {
        const n = params[i]!.length;
        params[i]!.set(p.subarray(at, at + n));
        buffers[i]!.set(b.subarray(at, at + n));
        at += (n + 3) & ~3;
      }
      packed.length = 0;
      used = 0;
    };
    for (let i = 0; i < params.length; i++) {
      const n = params[i]!.length;
      if (n >= CHUNK) {
        flush(); // update() stages through the same chunk
        this.update(params[i]!, grads[i]!, buffers[i]!, c, initialiseBuffer);
        continue;
      }
      const padded = (n + 3) & ~3;
      if (used + padded > CHUNK) flush();
      p.set(params[i]!, used);
      g.set(grads[i]!, used);
      if (!initialiseBuffer) b.set(buffers[i]!, used);
      packed.push(i);
      used += padded;
    }
    flush();
  }

  /**
   * Whether every value of every array is finite, packing arrays of fewer than CHUNK elements side
   * by side into the staging chunk (zeros between them), one kernel call per chunk.
   */
  allFinite(arrays: readonly Float32Array[]): boolean {
    const { allFinite } = this.exports;
    const g = this.grad;
    let used = 0;
    for (const values of arrays) {
      const n = values.length;
      if (n >= CHUNK) {
        // firstNonFinite() stages through the same chunk: check what is packed first.
        if (used > 0 && !allFinite(g.byteOffset, used)) return false;
        used = 0;
        if (this.firstNonFinite(values) >= 0) return false;
        continue;
      }
      const padded = (n + 3) & ~3;
      if (used + padded > CHUNK) {
        if (!allFinite(g.byteOffset, used)) return false;
        used = 0;
      }
      g.set(values, used);
      g.fill(0, used + n, used + padded);
      used += padded;
    }
    return used === 0 || allFinite(g.byteOffset, used) === 1;
  }

  /** Index of the first NaN or infinity, or -1. */
  firstNonFinite(values: Float32Array): number {
    const n = values.length;
    for (let start = 0; start < n; start += CHUNK) {
      const end = Math.min(n, start + CHUNK);
      const count = end - start;
      const padded = (count + 3) & ~3;
      this.grad.set(values.subarray(start, end));
      this.grad.fill(0, count, padded);
      if (this.exports.allFinite(this.grad.byteOffset, padded)) continue;
      return scanNonFinite(values, start, end);
    }
    return -1;
  }
}

function decode(base64: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

/**
 * The same kernel running in place on another module's memory (e.g. the heap of tfjs's wasm
 * backend), with no copies: offsets are byte offsets of float32 arrays in that memory. The
 * memory may grow between calls; views are taken afresh each call.
 */
export class HeapKernel {
  private constructor(
    /** The memory it runs on (threads stage external arrays into it). */
    readonly memory: WasmMemory,
    private readonly exports: Omit<Exports, 'memory'>,
  ) {}

  /**
   * null where WebAssembly SIMD is unavailable or the memory cannot be imported. A shared memory
   * (a shared ParameterArena's) is imported by the module variant that declares it shared, so
   * worker threads and the calling thread can all run this kernel on it.
   */
  static create(memory: WasmMemory): HeapKernel | null {
    const shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
    try {
      const module = new WebAssembly.Module(
        decode(shared ? FUSED_UPDATE_SHARED_MEMORY_WASM_BASE64 : FUSED_UPDATE_IMPORTED_MEMORY_WASM_BASE64),
      );
      const instance = new WebAssembly.Instance(module, { env: { memory: memory as WebAssembly.Memory } });
      return new HeapKernel(memory, instance.exports as unknown as Exports);
    } catch {
      return null;
    }
  }

  /**
   * p and buf at `paramOffset` and `bufferOffset` are read; the new p and buf are written at
   * `output.param` and `output.buffer`, by default the same places (in place). Outputs must either
   * equal their inputs or not overlap any input.
   */
  update(
    paramOffset: number,
    gradOffset: number,
    bufferOffset: number,
    n: number,
    c: FusedCoefficients,
    initialiseBuffer: boolean,
    output: { param: number; buffer: number } = { param: paramOffset, buffer: bufferOffset },
  ): void {
    const vectorised = n & ~3;
    const multipliers = float32Multipliers(c, initialiseBuffer);
    this.exports.update(
      paramOffset,
      gradOffset,
      bufferOffset,
      output.param,
      output.buffer,
      vectorised,
      initialiseBuffer ? 1 : 0,
      ...multipliers,
    );
    if (vectorised === n) return;
    // The last n % 4 elements, by the bit-identical JavaScript loop, in place on the outputs.
    const tail = (offset: number) =>
      new Float32Array(this.memory.buffer, offset + vectorised * 4, n - vectorised);
    const param = tail(output.param);
    const buffer = tail(output.buffer);
    if (output.param !== paramOffset) param.set(tail(paramOffset));
    if (output.buffer !== bufferOffset && !initialiseBuffer) buffer.set(tail(bufferOffset));
    fusedUpdateFloat32(param, tail(gradOffset), buffer, c, initialiseBuffer);
  }

  /**
   * update() in place over many tensors with the same coefficients: the multipliers are rounded
   * once, and each tensor is one call with no per-call allocation, so that a step over a thousand
   * small tensors is not bound by the calls. Tensor i is `lengths[i]` float32 values at
   * `params[i]`, `grads[i]`, `buffers[i]` (byte offsets).
   */
  updateAll(
    params: ArrayLike<number>,
    grads: ArrayLike<number>,
    buffers: ArrayLike<number>,
    lengths: ArrayLike<number>,
    c: FusedCoefficients,
    initialiseBuffer: boolean,
  ): void {
    const [k0, k1, k2, k3, k4, k5] = float32Multipliers(c, initialiseBuffer);
    const init = initialiseBuffer ? 1 : 0;
    const { update } = this.exports;
    for (let i = 0; i < lengths.length; i++) {
      const n = lengths[i]!;
      const vectorised = n & ~3;
      const [p, g, b] = [params[i]!, grads[i]!, buffers[i]!];
      update(p, g, b, p, b, vectorised, init, k0, k1, k2, k3, k4, k5);
      if (vectorised === n) continue;
      const tail = (offset: number) =>
        new Float32Array(this.memory.buffer, offset + vectorised * 4, n - vectorised);
      fusedUpdateFloat32(tail(p), tail(g), tail(b), c, initialiseBuffer);
    }
  }

  /** Index of the first NaN or infinity among n float32 values at `offset`, or -1. */
  firstNonFinite(offset: number, n: number): number {
    const vectorised = n & ~3;
    if (this.exports.allFinite(offset, vectorised)) {
      if (vectorised === n) return -1; // the common case makes no view
      return scanNonFinite(new Float32Array(this.memory.buffer, offset, n), vectorised, n);
    }
    return scanNonFinite(new Float32Array(this.memory.buffer, offset, n), 0, n);
  }

  /**
   * The first NaN or infinity over several arrays (float32 byte offsets and element counts), in
   * order: which array and which element, or null when all are finite. One call for a whole step's
   * gradients, so that a step over many small tensors pays one call, not a call and a view each.
   */
  firstNonFiniteOf(
    offsets: ArrayLike<number>,
    lengths: ArrayLike<number>,
  ): { index: number; element: number } | null {
    const { allFinite } = this.exports;
    for (let index = 0; index < offsets.length; index++) {
      const offset = offsets[index]!;
      const n = lengths[index]!;
      const vectorised = n & ~3;
      if (allFinite(offset, vectorised) && vectorised === n) continue;
      const element = this.firstNonFinite(offset, n);
      if (element >= 0) return { index, element };
    }
    return null;
  }
}
