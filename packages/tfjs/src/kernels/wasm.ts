import { firstNonFinite } from '@accsgd/core';
import type { KernelConfig, TensorInfo } from '@tensorflow/tfjs-core';
import { ACCSGD_UPDATE, type CoefficientArray, updateArguments } from './registry.js';
import { fusedPass } from './typed-array-pass.js';

/**
 * The part of tfjs-backend-wasm's BackendWasm this kernel uses. The wasm backend has no API for
 * adding compiled wasm code, but every tensor lives in the module's heap, and
 * `typedArrayFromHeap` gives a Float32Array view of it: the update is one JS pass over those views.
 */
interface WasmBackend {
  dataIdMap: { has(dataId: object): boolean };
  refCount(dataId: object): number;
  incRef(dataId: object): void;
  makeOutput(shape: number[], dtype: 'float32'): TensorInfo;
  typedArrayFromHeap(info: TensorInfo): Float32Array;
}

/**
 * wasm: with `inPlace`, a tensor whose heap storage no other tensor shares is overwritten, so a
 * step moves 20 bytes per element and allocates nothing. The heap is private to the backend
 * (`dataSync` copies out of it), so nobody can observe the overwrite. Otherwise fresh heap memory
 * is allocated for that output.
 */
export const wasmUpdateKernel: KernelConfig = {
  kernelName: ACCSGD_UPDATE,
  backendName: 'wasm',
  kernelFunc: (args) => {
    const { param, grad, buffer, coefficients, inPlace } = updateArguments(args);
    const backend = args.backend as WasmBackend;
    const ownParam = inPlace && backend.refCount(param.dataId) === 1;
    const ownBuffer = inPlace && buffer.dataId !== param.dataId && backend.refCount(buffer.dataId) === 1;
    // Allocate before taking any heap view: malloc may grow the heap and detach older views.
    const paramOut = ownParam ? share(backend, param) : backend.makeOutput([...param.shape], 'float32');
    const bufferOut = ownBuffer ? share(backend, buffer) : backend.makeOutput([...param.shape], 'float32');
    fusedPass(
      backend.typedArrayFromHeap(param),
      backend.typedArrayFromHeap(grad),
      backend.typedArrayFromHeap(buffer),
      backend.typedArrayFromHeap(paramOut),
      backend.typedArrayFromHeap(bufferOut),
      coefficients as unknown as CoefficientArray,
      buffer.dataId === param.dataId,
    );
    return [paramOut, bufferOut];
  },
};

/** Hands an input's storage back as an output: one more tensor will refer to it. */
function share(backend: WasmBackend, input: TensorInfo): TensorInfo {
  backend.incRef(input.dataId);
  return { dataId: input.dataId, shape: [...input.shape], dtype: 'float32' };
}

/** Index of the first NaN or infinity of a float32 tensor on the wasm backend, -1, or null when the backend does not hold it. */
export function wasmFirstNonFinite(backend: object, info: TensorInfo): number | null {
  const wasm = backend as WasmBackend;
  return wasm.dataIdMap.has(info.dataId) ? firstNonFinite(wasm.typedArrayFromHeap(info)) : null;
}
