// The worker-thread entry of a threaded step (worker_threads in Node, a module Web Worker in a
// browser). It shares the arena's memory and the control block with the thread that steps, and
// runs the same chunk loop as that thread; it never posts results, it writes them in place.
import { HeapKernel, type WasmMemory } from '../kernels/wasm-kernel.js';
import { controlViews, drainJob, JobKind, Slot } from './protocol.js';

export interface StepWorkerInit {
  /** The shared memories jobs run on (a shared arena's, the optimizer's own staging memory). */
  memories: WasmMemory[];
  control: SharedArrayBuffer;
  maxPieces: number;
  maxChunks: number;
  slots: number;
}

function serve(init: StepWorkerInit, announce: (message: 'online' | 'no kernel') => void): void {
  const kernels = init.memories.map((memory) => HeapKernel.create(memory));
  if (!kernels.every((k) => k !== null)) {
    // The calling thread made the same kernel, so this is not expected; it must not hang ready().
    announce('no kernel');
    return;
  }
  const views = controlViews(init.control, init.maxPieces, init.maxChunks, init.slots);
  const { control } = views;
  let seen = Atomics.load(control, Slot.Generation);
  announce('online');
  for (;;) {
    Atomics.wait(control, Slot.Generation, seen);
    const generation = Atomics.load(control, Slot.Generation);
    if (generation === seen) continue;
    seen = generation;
    if (Atomics.load(control, Slot.Kind) === JobKind.Exit) return;
    drainJob(views, kernels as HeapKernel[], generation, true);
  }
}

const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';
if (isNode) {
  const { parentPort, workerData } = await import('node:worker_threads');
  serve(workerData as StepWorkerInit, (message) => parentPort?.postMessage(message));
} else {
  const scope = globalThis as unknown as {
    onmessage: ((event: { data: StepWorkerInit }) => void) | null;
    postMessage(message: unknown): void;
  };
  scope.onmessage = (event) => {
    scope.onmessage = null;
    serve(event.data, (message) => scope.postMessage(message));
  };
}
