// The worker-thread entry of a threaded step (worker_threads in Node, a module Web Worker in a
// browser). It shares the arena's memory and the control block with the thread that steps, and
// runs the same chunk loop as that thread; it never posts results, it writes them in place.
import { HeapKernel, type WasmMemory } from '../kernels/wasm-kernel.js';
import { controlViews, drainJob, JobKind, Slot, type ThreadContext } from './protocol.js';

export interface StepWorkerInit {
  /** The shared memories jobs run on (a shared arena's, the optimizer's own staging memory). */
  memories: WasmMemory[];
  control: SharedArrayBuffer;
  maxPieces: number;
  maxChunks: number;
  slots: number;
  /** This thread's index (1 for the first worker; 0 is the calling thread). */
  thread: number;
  /** External buffers given at start (the parameters'), by index. */
  externals: SharedArrayBuffer[];
  /** Node: where later external buffers (gradients') arrive, read synchronously before a job. */
  port?: unknown;
}

type ReceiveMessage = (
  port: unknown,
) => { message: { index: number; buffer: SharedArrayBuffer | null } } | undefined;

function threadContext(init: StepWorkerInit, receive: ReceiveMessage | null): ThreadContext {
  const views: Float32Array[] = init.externals.map((b) => new Float32Array(b));
  let received = 0;
  return {
    index: init.thread,
    external: (source) => views[source]!,
    sync(count) {
      // The caller posted each message before publishing the job that counts it, so it is queued;
      // the loop only covers the instant before the queue shows it.
      while (received < count && receive && init.port) {
        const taken = receive(init.port);
        if (!taken) continue;
        // null: the caller let go of that buffer (its slot is free for another one).
        const { index, buffer } = taken.message;
        views[index] = buffer ? new Float32Array(buffer) : new Float32Array(0);
        received++;
      }
    },
  };
}

function serve(
  init: StepWorkerInit,
  announce: (message: 'online' | 'no kernel') => void,
  receive: ReceiveMessage | null,
): void {
  const kernels = init.memories.map((memory) => HeapKernel.create(memory));
  if (!kernels.every((k) => k !== null)) {
    // The calling thread made the same kernel, so this is not expected; it must not hang ready().
    announce('no kernel');
    return;
  }
  const views = controlViews(init.control, init.maxPieces, init.maxChunks, init.slots);
  const thread = threadContext(init, receive);
  const { control } = views;
  let seen = Atomics.load(control, Slot.Generation);
  announce('online');
  for (;;) {
    Atomics.wait(control, Slot.Generation, seen);
    const generation = Atomics.load(control, Slot.Generation);
    if (generation === seen) continue;
    seen = generation;
    if (Atomics.load(control, Slot.Kind) === JobKind.Exit) return;
    drainJob(views, kernels as HeapKernel[], generation, thread);
  }
}

const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';
if (isNode) {
  const { parentPort, workerData, receiveMessageOnPort } = await import('node:worker_threads');
  serve(
    workerData as StepWorkerInit,
    (message) => parentPort?.postMessage(message),
    receiveMessageOnPort as unknown as ReceiveMessage,
  );
} else {
  const scope = globalThis as unknown as {
    onmessage: ((event: { data: StepWorkerInit }) => void) | null;
    postMessage(message: unknown): void;
  };
  scope.onmessage = (event) => {
    scope.onmessage = null;
    serve(event.data, (message) => scope.postMessage(message), null);
  };
}
