import { firstNonFinite, HeapKernel } from '@accsgd/core';
import { getKernel, type KernelConfig, type TensorInfo } from '@tensorflow/tfjs-core';
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
  /**
   * The C++ backend's tensor table. dispose_data(id) drops a tensor's entry and runs the disposal
   * callbacks registered on it, which is how every per-tensor cache (XNNPACK operators holding
   * packed matMul and conv2d weights) is invalidated; register_tensor(id, size, offset) adds the
   * entry back. Neither frees memory.
   */
  tfjs?: {
    disposeData?: (id: number) => void;
    registerTensor?: (id: number, size: number, memoryOffset: number) => void;
  };
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
  dataIdMap: {
    has(dataId: object): boolean;
    get(dataId: object): { id: number; memoryOffset: number } | undefined;
  };
  refCount(dataId: object): number;
  incRef(dataId: object): void;
  makeOutput(shape: number[], dtype: 'float32'): TensorInfo;
  typedArrayFromHeap(info: TensorInfo): Float32Array;
}

/** One HeapKernel per heap memory (a shared one too, as the threaded wasm build has); null without SIMD. */
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

function dataOf(backend: WasmBackend, info: TensorInfo): { id: number; memoryOffset: number } {
  const data = backend.dataIdMap.get(info.dataId);
  if (!data) throw new Error(`${ACCSGD_UPDATE} (wasm): a tensor is not on the wasm backend`);
  return data;
}

/**
 * Tells the backend that a tensor's values changed in place: its C++ entry is dropped, which runs
 * the disposal callbacks that free every cache keyed on it, and registered again at the same
 * memory. Null when this build of tfjs-backend-wasm does not expose both calls; the kernel then
 * never writes in place.
 */
export function cacheInvalidator(
  backend: object,
): ((data: { id: number; memoryOffset: number }, size: number) => void) | null {
  const tfjs = (backend as Partial<WasmBackend>).wasm?.tfjs;
  const dispose = tfjs?.disposeData;
  const register = tfjs?.registerTensor;
  if (typeof dispose !== 'function' || typeof register !== 'function') return null;
  return (data, size) => {
    dispose(data.id);
    register(data.id, size, data.memoryOffset);
  };
}

/**
 * wasm: with `inPlace`, p and buf are overwritten in place when no other tensor shares their
 * storage, and the backend is told so. tfjs-backend-wasm caches work per tensor id: its matMul (xnn_matmul in
 * batch_mat_mul_impl.cc) and conv2d keep XNNPACK operators holding packed copies of their weights
 * until that tensor is disposed, so a silent in-place write left every later matMul on the old
 * weights while dataSync() showed the new ones. After the write the kernel drops the tensor's
 * C++ entry, which runs those caches' disposal callbacks, and registers it again (see
 * cacheInvalidator). A step then moves 20 bytes per element and allocates nothing. Without
 * `inPlace`, for storage that another tensor shares (a reshape of the variable), or on a backend
 * without those calls, fresh outputs are written in the same single pass.
 *
 * The update is @accsgd/core's SIMD kernel instantiated on the backend's own memory (HeapKernel),
 * bit-identical to core's float32 `fusedUpdate`; where it cannot be made, the same update runs
 * through Float32Array views of the heap, into fresh outputs.
 */
export const wasmUpdateKernel: KernelConfig = {
  kernelName: ACCSGD_UPDATE,
  backendName: 'wasm',
  kernelFunc: (args) => {
    const { param, grad, buffer, coefficients, inPlace } = updateArguments(args);
    const backend = args.backend as WasmBackend;
    const initialise = buffer.dataId === param.dataId;
    // Inputs first: reading an offset moves a tensor that still lives on another backend onto the
    // heap, which may throw, and may grow the heap. Once resolved, offsets stay valid; views do not,
    // so every view is taken after the last allocation.
    const [paramIn, gradIn, bufferIn] = [param, grad, buffer].map((t) => dataOf(backend, t)) as [
      { id: number; memoryOffset: number },
      { id: number; memoryOffset: number },
      { id: number; memoryOffset: number },
    ];
    const n = sizeOf(param.shape);
    const heap = n > 0 ? heapKernelOf(backend) : null;
    const invalidate = heap && inPlace ? cacheInvalidator(backend) : null;
    const ownParam = invalidate !== null && backend.refCount(param.dataId) === 1;
    const ownBuffer = invalidate !== null && !initialise && backend.refCount(buffer.dataId) === 1;
    const paramOut = ownParam ? share(backend, param) : backend.makeOutput([...param.shape], 'float32');
    const bufferOut = ownBuffer ? share(backend, buffer) : backend.makeOutput([...param.shape], 'float32');
    if (heap) {
      heap.update(
        paramIn.memoryOffset,
        gradIn.memoryOffset,
        bufferIn.memoryOffset,
        n,
        fusedCoefficientsOf(coefficients as unknown as CoefficientArray),
        initialise,
        { param: dataOf(backend, paramOut).memoryOffset, buffer: dataOf(backend, bufferOut).memoryOffset },
      );
      if (ownParam) invalidate!(paramIn, n);
      if (ownBuffer) invalidate!(bufferIn, n);
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
 * The wasm kernel's in-place update of parameters that have a buffer, called directly rather than
 * through engine().runKernel: the same HeapKernel update and the same cache invalidation as the
 * kernel's in-place branch, without the engine's per-call work (kernel lookup, scope, output
 * tensors made and disposed), which over 1024 small tensors cost a quarter of the step. What does
 * not depend on the tensor (the registered kernel, the heap kernel, the backend calls) is checked
 * once per step, and the tensors go to the heap kernel in one call. Only where that branch would
 * run: this package's kernel registered for wasm, the SIMD kernel and both backend calls
 * available, every tensor on the heap, and no other tensor sharing param's or buffer's storage.
 * Returns the positions in `items` it did not update; the caller runs the kernel for those.
 */
export function wasmUpdateAllInPlace(
  backend: object,
  items: readonly { param: TensorInfo; grad: TensorInfo; buffer: TensorInfo }[],
  coefficients: CoefficientArray,
): number[] {
  const wasm = backend as WasmBackend;
  const all = items.map((_, k) => k);
  if (getKernel(ACCSGD_UPDATE, 'wasm')?.kernelFunc !== wasmUpdateKernel.kernelFunc) return all;
  if (!wasm.dataIdMap || typeof wasm.refCount !== 'function') return all;
  const heap = heapKernelOf(wasm);
  const invalidate = heap ? cacheInvalidator(wasm) : null;
  if (!heap || !invalidate) return all;
  const left: number[] = [];
  const offsets: [number[], number[], number[], number[]] = [[], [], [], []];
  const invalidated: { id: number; memoryOffset: number }[] = [];
  items.forEach(({ param, grad, buffer }, k) => {
    const n = sizeOf(param.shape);
    const paramIn = wasm.dataIdMap.get(param.dataId);
    const gradIn = wasm.dataIdMap.get(grad.dataId);
    const bufferIn = wasm.dataIdMap.get(buffer.dataId);
    if (
      n === 0 ||
      param.dataId === buffer.dataId ||
      !paramIn ||
      !gradIn ||
      !bufferIn ||
      wasm.refCount(param.dataId) !== 1 ||
      wasm.refCount(buffer.dataId) !== 1
    ) {
      left.push(k);
      return;
    }
    offsets[0].push(paramIn.memoryOffset);
    offsets[1].push(gradIn.memoryOffset);
    offsets[2].push(bufferIn.memoryOffset);
    offsets[3].push(n);
    invalidated.push(paramIn, bufferIn);
  });
  heap.updateAll(...offsets, fusedCoefficientsOf(coefficients), false);
  invalidated.forEach((data, j) => invalidate(data, offsets[3][j >> 1]!));
  return left;
}

/** Hands an input's storage back as an output: one more tensor will refer to it. */
function share(backend: WasmBackend, input: TensorInfo): TensorInfo {
  backend.incRef(input.dataId);
  return { dataId: input.dataId, shape: [...input.shape], dtype: 'float32' };
}

/**
 * The first NaN or infinity over all of a step's gradients on the wasm backend, in order: one
 * HeapKernel call over their heap offsets, instead of a scan call (and its lookups) per tensor.
 * undefined where that cannot be done (a gradient the backend does not hold, no SIMD kernel); the
 * caller then scans tensor by tensor.
 */
export function wasmFirstNonFiniteOf(
  backend: object,
  infos: readonly TensorInfo[],
): { tensor: number; element: number } | null | undefined {
  const wasm = backend as WasmBackend;
  const heap = heapKernelOf(wasm);
  if (!heap) return undefined;
  const offsets = new Array<number>(infos.length);
  const lengths = new Array<number>(infos.length);
  for (let t = 0; t < infos.length; t++) {
    const data = wasm.dataIdMap.get(infos[t]!.dataId);
    if (!data) return undefined;
    offsets[t] = data.memoryOffset;
    lengths[t] = sizeOf(infos[t]!.shape);
  }
  const found = heap.firstNonFiniteOf(offsets, lengths);
  return found && { tensor: found.index, element: found.element };
}

/**
 * Index of the first NaN or infinity of a float32 tensor on the wasm backend, -1, or null when the
 * backend does not hold it. A SIMD scan of the heap in place (HeapKernel) where possible.
 */
export function wasmFirstNonFinite(backend: object, info: TensorInfo): number | null {
  const wasm = backend as WasmBackend;
  if (!wasm.dataIdMap.has(info.dataId)) return null;
  const n = sizeOf(info.shape);
  const heap = n > 0 ? heapKernelOf(wasm) : null;
  if (heap) return heap.firstNonFinite(dataOf(wasm, info).memoryOffset, n);
  return firstNonFinite(wasm.typedArrayFromHeap(info));
}
