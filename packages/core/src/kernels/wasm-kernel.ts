import type { FusedCoefficients } from '../coefficients.js';
import { float32Multipliers } from '../fused-update.js';
import { FUSED_UPDATE_WASM_BASE64 } from './fused-update-wasm.js';

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
const CHUNK = 32_768;
const PAGE = 65_536;

interface Exports {
  memory: WebAssembly.Memory;
  update(p: number, g: number, b: number, n: number, init: number, ...c: number[]): void;
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
      const bytes = Uint8Array.from(atob(FUSED_UPDATE_WASM_BASE64), (c) => c.charCodeAt(0));
      const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
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
    const [k0, k1, k2, k3, k4, k5] = float32Multipliers(c, initialiseBuffer) as [
      number,
      number,
      number,
      number,
      number,
      number,
    ];
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
        (count + 3) & ~3,
        initialiseBuffer ? 1 : 0,
        k0,
        k1,
        k2,
        k3,
        k4,
        k5,
      );
      param.set(this.param.subarray(0, count), start);
      buffer.set(this.buffer.subarray(0, count), start);
    }
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
      for (let i = start; i < end; i++) if (values[i]! - values[i]! !== 0) return i;
    }
    return -1;
  }
}
