import { fusedUpdate } from '@accsgd/core';
import { type CoefficientArray, fusedCoefficientsOf } from './registry.js';

/**
 * The update over float32 storage, by @accsgd/core's own `fusedUpdate` (its float32 arithmetic,
 * and its WebAssembly SIMD kernel where it has one), so cpu and wasm results are bit-identical to
 * the core optimizer. Outputs may be the inputs' own storage (in-place update); otherwise the
 * inputs are copied into them first. `initialiseBuffer`: the parameter's first step, where the
 * buffer is taken to be a copy of the parameter and `bufferIn` is not read.
 * Shared by the cpu kernel (backend arrays) and the wasm kernel (views of the wasm heap).
 */
export function fusedPass(
  paramIn: Float32Array,
  grad: Float32Array,
  bufferIn: Float32Array,
  paramOut: Float32Array,
  bufferOut: Float32Array,
  coefficients: CoefficientArray,
  initialiseBuffer: boolean,
): void {
  if (paramOut !== paramIn) paramOut.set(paramIn);
  if (!initialiseBuffer && bufferOut !== bufferIn) bufferOut.set(bufferIn);
  fusedUpdate(paramOut, grad, bufferOut, fusedCoefficientsOf(coefficients), initialiseBuffer);
}
