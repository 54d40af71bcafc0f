import { ParameterArena } from './arena.js';
import type { FusedCoefficients } from './coefficients.js';
import { WasmKernel } from './kernels/wasm-kernel.js';

export type FloatArray = Float32Array | Float64Array;

/** Below this many elements the JavaScript loop beats the call and copies of the wasm kernel. */
const WASM_MIN_ELEMENTS = 1024;
let wasm: WasmKernel | null | undefined;
function wasmKernel(): WasmKernel | null {
  if (wasm === undefined) wasm = WasmKernel.create();
  return wasm;
}

/**
 * One pass over a tensor: reads p, g and buf once and writes p and buf once (20 bytes per
 * float32 element), the memory floor of AccSGD. When `initialiseBuffer` is true the buffer is
 * taken to be a copy of p, without a separate copy pass.
 *
 * Float32 parameters are computed in float32 arithmetic, as a GPU would: the six multipliers are
 * rounded to float32 once, every multiply and add is rounded to float32, in a fixed order, so the
 * WebAssembly SIMD kernel and the JavaScript loop give bit-identical results. Tensors that all live
 * in one ParameterArena are updated in place there, without copies. Float64 parameters
 * are computed in float64.
 */
export function fusedUpdate(
  param: FloatArray,
  grad: FloatArray,
  buffer: FloatArray,
  c: FusedCoefficients,
  initialiseBuffer: boolean,
): void {
  if (param instanceof Float64Array) {
    fusedUpdateFloat64(param, grad, buffer as Float64Array, c, initialiseBuffer);
    return;
  }
  const f32Buffer = buffer as Float32Array;
  const inPlace = grad instanceof Float32Array ? ParameterArena.of(param, grad, f32Buffer)?.kernel : null;
  if (inPlace) {
    inPlace.update(
      param.byteOffset,
      grad.byteOffset,
      f32Buffer.byteOffset,
      param.length,
      c,
      initialiseBuffer,
    );
    return;
  }
  const kernel = param.length >= WASM_MIN_ELEMENTS && grad instanceof Float32Array ? wasmKernel() : null;
  if (kernel) kernel.update(param, grad as Float32Array, f32Buffer, c, initialiseBuffer);
  else fusedUpdateFloat32(param, grad, f32Buffer, c, initialiseBuffer);
}

/**
 * fusedUpdate over several tensors with the same coefficients. Float32 tensors that do not all live
 * in one ParameterArena go through the WebAssembly kernel packed: small tensors share its staging
 * chunk, one call per chunk instead of one per tensor, so that a step over thousands of small
 * tensors is bound by memory rather than by calls. The arithmetic, and so every bit, is fusedUpdate's.
 */
export function fusedUpdateAll(
  params: readonly FloatArray[],
  grads: readonly FloatArray[],
  buffers: readonly FloatArray[],
  c: FusedCoefficients,
  initialiseBuffer: boolean,
): void {
  const kernel = wasmKernel();
  const packed: [Float32Array[], Float32Array[], Float32Array[]] = [[], [], []];
  params.forEach((param, i) => {
    const grad = grads[i]!;
    const buffer = buffers[i]!;
    if (
      kernel &&
      param instanceof Float32Array &&
      grad instanceof Float32Array &&
      ParameterArena.of(param, grad, buffer as Float32Array) === undefined
    ) {
      packed[0].push(param);
      packed[1].push(grad);
      packed[2].push(buffer as Float32Array);
    } else fusedUpdate(param, grad, buffer, c, initialiseBuffer);
  });
  if (packed[0].length > 0) kernel!.updatePacked(...packed, c, initialiseBuffer);
}

/**
 * Whether every value of every array is finite: float32 arrays outside a ParameterArena are checked
 * packed, one kernel call per chunk of small arrays (firstNonFinite names the element when not).
 */
export function allFinite(arrays: readonly FloatArray[]): boolean {
  const kernel = wasmKernel();
  const packed: Float32Array[] = [];
  for (const values of arrays) {
    if (kernel && values instanceof Float32Array && ParameterArena.of(values) === undefined)
      packed.push(values);
    else if (firstNonFinite(values) >= 0) return false;
  }
  return packed.length === 0 || kernel!.allFinite(packed);
}

export type Multipliers = readonly [number, number, number, number, number, number];

/** The float32 multipliers [c0..c5]; on a first step c0 = 0 and c1 = bufFromBuf + bufFromParam (summed in float64). */
export function float32Multipliers(c: FusedCoefficients, initialiseBuffer: boolean): Multipliers {
  const f = Math.fround;
  return [
    f(initialiseBuffer ? 0 : c.bufFromBuf),
    f(initialiseBuffer ? c.bufFromBuf + c.bufFromParam : c.bufFromParam),
    f(c.bufFromGrad),
    f(c.paramFromParam),
    f(c.paramFromGrad),
    f(c.paramFromBuf),
  ];
}

export function fusedUpdateFloat32(
  param: Float32Array,
  grad: FloatArray,
  buffer: Float32Array,
  c: FusedCoefficients,
  initialiseBuffer: boolean,
): void {
  const f = Math.fround;
  const [c0, c1, c2, c3, c4, c5] = float32Multipliers(c, initialiseBuffer);
  const n = param.length;
  for (let i = 0; i < n; i++) {
    const p = param[i]!;
    const g = f(grad[i]!);
    const head = initialiseBuffer ? f(c1 * p) : f(f(c0 * buffer[i]!) + f(c1 * p));
    const b = f(head + f(c2 * g));
    buffer[i] = b;
    param[i] = f(f(f(c3 * p) + f(c4 * g)) + f(c5 * b));
  }
}

function fusedUpdateFloat64(
  param: Float64Array,
  grad: FloatArray,
  buffer: Float64Array,
  c: FusedCoefficients,
  initialiseBuffer: boolean,
): void {
  const { bufFromBuf, bufFromParam, bufFromGrad, paramFromParam, paramFromGrad, paramFromBuf } = c;
  const n = param.length;
  if (initialiseBuffer) {
    const bufFromP = bufFromBuf + bufFromParam;
    for (let i = 0; i < n; i++) {
      const p = param[i]!;
      const g = grad[i]!;
      const b = bufFromP * p + bufFromGrad * g;
      buffer[i] = b;
      param[i] = paramFromParam * p + paramFromGrad * g + paramFromBuf * b;
    }
    return;
  }
  for (let i = 0; i < n; i++) {
    const p = param[i]!;
    const g = grad[i]!;
    const b = bufFromBuf * buffer[i]! + bufFromParam * p + bufFromGrad * g;
    buffer[i] = b;
    param[i] = paramFromParam * p + paramFromGrad * g + paramFromBuf * b;
  }
}

/** Index of the first NaN or infinity, or -1. */
export function firstNonFinite(values: FloatArray): number {
  const inPlace = values instanceof Float32Array ? ParameterArena.of(values)?.kernel : null;
  if (inPlace) return inPlace.firstNonFinite(values.byteOffset, values.length);
  if (values.length >= WASM_MIN_ELEMENTS && values instanceof Float32Array) {
    const kernel = wasmKernel();
    if (kernel) return kernel.firstNonFinite(values);
  }
  return scanNonFinite(values, 0, values.length);
}

/** Index of the first NaN or infinity in values[from, to), or -1. */
export function scanNonFinite(values: FloatArray, from: number, to: number): number {
  for (let i = from; i < to; i++) {
    // x - x is 0 for finite x and NaN otherwise.
    if (values[i]! - values[i]! !== 0) return i;
  }
  return -1;
}
