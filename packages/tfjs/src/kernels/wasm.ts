import { firstNonFinite, HeapKernel } from '@accsgd/core';
import type { KernelConfig, TensorInfo } from '@tensorflow/tfjs-core';
import {
  ACCSGD_UPDATE,
  type CoefficientArray,
  fusedCoefficientsOf,
  sizeOf,
  updateArguments,
} from './registry.js';
import { fusedPass } from './typed-array-pass.js';

/** The emscripten module of tfjs-backend-wasm, as far as this kernel uses it. */
interface WasmModule {
  HEAPU8: Uint8Array;
  /** The module's exports (emscripten 3.1.x, the version tfjs 4.x ships): `memory` is the heap. */
  asm?: { memory?: unknown };
  /** Newer emscripten names the exports `wasmExports`; a pthreads build keeps the memory here. */
  wasmExports?: { memory?: unknown };
  wasmMemory?: unknown;
}

/**
 * The part of tfjs-backend-wasm's BackendWasm this kernel uses. The wasm backend has no API for
 * adding compiled wasm code, but every tensor lives in the module's heap at
 * `dataIdMap.get(dataId).memoryOffset`, and @accsgd/core's HeapKernel instantiates its SIMD
 * update on that same WebAssembly.Memory, so the update runs in place on the heap with no copies.
 */
interface WasmBackend {
  wasm: WasmModule;
  dataIdMap: { has(dataId: object): boolean; get(dataId: object): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: 'float32'): TensorInfo;
  typedArrayFromHeap(info: TensorInfo): Float32Array;
}

/** One HeapKernel per heap memory; null where it cannot be made (no SIMD, a shared memory). */
const heapKernels = new WeakMap<WebAssembly.Memory, HeapKernel | null>();

/** The WebAssembly.Memory holding the backend's heap, or null when it cannot be found. */
function heapMemory(module: WasmModule): WebAssembly.Memory | null {
  for (const candidate of [module.asm?.memory, module.wasmExports?.memory, module.wasmMemory]) {
    // The heap views are views of this memory's buffer; anything else is not the heap.
    if (candidate instanceof WebAssembly.Memory && candidate.buffer === module.HEAPU8.buffer)
      return candidate;
  }
  return null;
}

/** The in-place SIMD kernel over the backend's heap, or null (then the typed-array path is used). */
export function heapKernelOf(backend: object): HeapKernel | null {
  const module = (backend as Partial<WasmBackend>).wasm;
  if (!module) return null;
  const memory = heapMemory(module);
  if (!memory) return null;
  let kernel = heapKernels.get(memory);
  if (kernel === undefined) {
    kernel = HeapKernel.create(memory);
    heapKernels.set(memory, kernel);
  }
  return kernel;
}

function offsetOf(backend: WasmBackend, info: TensorInfo): number {
  const data = backend.dataIdMap.get(info.dataId);
  if (!data) throw new Error(`${ACCSGD_UPDATE} (wasm): a tensor is not on the wasm backend`);
  return data.memoryOffset;
}

/**
 * wasm: the update writes two fresh heap tensors, never its inputs. tfjs-backend-wasm caches work
 * per tensor id: its matMul (xnn_matmul in batch_mat_mul_impl.cc) and conv2d keep XNNPACK operators
 * holding packed copies of their weights, and drop them only when that tensor is disposed. A
 * variable overwritten in place keeps its id, so every later matMul would run on the packed old
 * weights while dataSync() shows the new ones. A fresh output, assigned to the variable, disposes
 * the old tensor and with it the cache.
 *
 * The update is @accsgd/core's SIMD kernel instantiated on the backend's own memory (HeapKernel),
 * bit-identical to core's float32 `fusedUpdate`, reading the inputs and writing the outputs in one
 * pass (20 bytes per element); where it cannot be made, the same update runs through Float32Array
 * views of the heap.
 */
export const wasmUpdateKernel: KernelConfig = {
  kernelName: ACCSGD_UPDATE,
  backendName: 'wasm',
  kernelFunc: (args) => {
    const { param, grad, buffer, coefficients } = updateArguments(args);
    const backend = args.backend as WasmBackend;
    const initialise = buffer.dataId === param.dataId;
    // Inputs first: reading an offset moves a tensor that still lives on another backend onto the
    // heap, which may throw, and may grow the heap. Once resolved, offsets stay valid; views do not,
    // so every view is taken after the last allocation.
    const inputs = [offsetOf(backend, param), offsetOf(backend, grad), offsetOf(backend, buffer)] as const;
    const paramOut = backend.makeOutput([...param.shape], 'float32');
    const bufferOut = backend.makeOutput([...param.shape], 'float32');
    const n = sizeOf(param.shape);
    const heap = n > 0 ? heapKernelOf(backend) : null;
    if (heap) {
      heap.update(
        ...inputs,
        n,
        fusedCoefficientsOf(coefficients as unknown as CoefficientArray),
        initialise,
        { param: offsetOf(backend, paramOut), buffer: offsetOf(backend, bufferOut) },
      );
      return [paramOut, bufferOut];
    }
    fusedPass(
      backend.typedArrayFromHeap(param),
      backend.typedArrayFromHeap(grad),
      backend.typedArrayFromHeap(buffer),
      backend.typedArrayFromHeap(paramOut),
      backend.typedArrayFromHeap(bufferOut),
      coefficients as unknown as CoefficientArray,
      initialise,
    );
    return [paramOut, bufferOut];
  },
};

/**
 * Index of the first NaN or infinity of a float32 tensor on the wasm backend, -1, or null when the
 * backend does not hold it. A SIMD scan of the heap in place (HeapKernel) where possible.
 */
export function wasmFirstNonFinite(backend: object, info: TensorInfo): number | null {
  const wasm = backend as WasmBackend;
  if (!wasm.dataIdMap.has(info.dataId)) return null;
  const n = sizeOf(info.shape);
  const heap = n > 0 ? heapKernelOf(wasm) : null;
  if (heap) return heap.firstNonFinite(offsetOf(wasm, info), n);
  return firstNonFinite(wasm.typedArrayFromHeap(info));
}
