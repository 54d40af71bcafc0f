import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import wabtInit from 'wabt';

/** The floor kernel's source, compiled at run time with wabt (as @accsgd/core's build-wasm.mjs does). */
export const FLOOR_WAT = new URL('./floor.wat', import.meta.url);

const OWN_IMPORT = '(import "env" "memory" (memory 1))';
/** For several threads on one memory: the same module importing a shared memory. */
const SHARED_IMPORT = '(import "env" "memory" (memory 1 65536 shared))';

/** The floor kernel as WebAssembly bytes (importing a shared memory when `shared`). */
export async function compileFloor(shared = false): Promise<Uint8Array<ArrayBuffer>> {
  const wabt = await wabtInit();
  const wat = readFileSync(FLOOR_WAT, 'utf8');
  if (!wat.includes(OWN_IMPORT)) throw new Error(`floor.wat must declare ${OWN_IMPORT}`);
  const features = { simd: true, threads: shared };
  const module = wabt.parseWat('floor.wat', shared ? wat.replace(OWN_IMPORT, SHARED_IMPORT) : wat, features);
  try {
    // wabt's validate takes the features too (its typings omit the argument).
    (module as unknown as { validate(features: object): void }).validate(features);
    return new Uint8Array(module.toBinary({}).buffer);
  } finally {
    module.destroy();
  }
}

/**
 * `floor(p, g, b, pOut, bOut, n, fromGradient)`: byte offsets into `memory`, n float32 elements (a
 * multiple of 4). Writes bOut ← b and pOut ← p (or ← g when fromGradient is not 0).
 */
export type FloorPass = (
  p: number,
  g: number,
  b: number,
  pOut: number,
  bOut: number,
  n: number,
  fromGradient: number,
) => void;

export async function instantiateFloor(
  memory: WebAssembly.Memory,
  bytes?: Uint8Array<ArrayBuffer>,
): Promise<FloorPass> {
  const module = await WebAssembly.compile(bytes ?? (await compileFloor()));
  const instance = await WebAssembly.instantiate(module, { env: { memory } });
  return instance.exports.floor as FloorPass;
}

/**
 * The floor over `tensors` tensors of `size` elements each (size a multiple of 4), laid out like a
 * ParameterArena holding parameters, then gradients, then buffers, updated in place: one call per
 * tensor, as the optimizer's step makes one kernel call per tensor.
 */
export async function floorBench(
  tensors: number,
  size: number,
): Promise<{ run: () => void; memory: WebAssembly.Memory }> {
  if (size % 4 !== 0) throw new Error(`floor: size must be a multiple of 4, got ${size}`);
  const bytes = tensors * size * 4;
  const pages = Math.ceil((3 * bytes) / 65_536);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
  const all = new Float32Array(memory.buffer, 0, 3 * tensors * size);
  for (let i = 0; i < all.length; i++) all[i] = Math.sin(i * 0.001);
  const floor = await instantiateFloor(memory);
  const run = () => {
    for (let t = 0; t < tensors; t++) {
      const at = t * size * 4;
      floor(at, bytes + at, 2 * bytes + at, at, 2 * bytes + at, size, 0);
    }
  };
  return { run, memory };
}

/** One floor call: byte offsets of p, g, buf (updated in place) and the element count. */
type Call = readonly [p: number, g: number, b: number, n: number];

/** The calls of `threads` threads over `tensors` tensors laid out as in floorBench, split evenly. */
export function splitCalls(tensors: number, size: number, threads: number): Call[][] {
  const bytes = tensors * size * 4;
  const out: Call[][] = Array.from({ length: threads }, () => []);
  if (tensors >= threads) {
    for (let t = 0; t < tensors; t++) {
      const at = t * size * 4;
      out[Math.floor((t * threads) / tensors)]!.push([at, bytes + at, 2 * bytes + at, size]);
    }
  } else {
    // Fewer tensors than threads: each tensor split into `threads` ranges of whole vectors.
    for (let t = 0; t < tensors; t++) {
      const vectors = size / 4;
      for (let k = 0; k < threads; k++) {
        const from = Math.floor((k * vectors) / threads) * 4;
        const to = Math.floor(((k + 1) * vectors) / threads) * 4;
        const at = (t * size + from) * 4;
        if (to > from) out[k]!.push([at, bytes + at, 2 * bytes + at, to - from]);
      }
    }
  }
  return out;
}

const WORKER = `
const { workerData } = require('node:worker_threads');
const { memory, module, control, calls } = workerData;
const floor = new WebAssembly.Instance(module, { env: { memory } }).exports.floor;
const ctl = new Int32Array(control);
let seen = 0;
for (;;) {
  Atomics.wait(ctl, 0, seen);
  seen = Atomics.load(ctl, 0);
  if (seen < 0) break;
  for (const [p, g, b, n] of calls) floor(p, g, b, p, b, n, 0);
  Atomics.add(ctl, 1, 1);
  Atomics.notify(ctl, 1);
}
`;

/**
 * The floor pass split over `threads` threads (this one and threads - 1 workers) on one shared
 * memory: what a multi-threaded arena path could reach at best. `run` returns when all are done.
 */
export async function threadedFloorBench(
  tensors: number,
  size: number,
  threads: number,
): Promise<{ run: () => void; close: () => Promise<void>; memory: WebAssembly.Memory }> {
  if (size % 4 !== 0) throw new Error(`floor: size must be a multiple of 4, got ${size}`);
  const pages = Math.ceil((3 * tensors * size * 4) / 65_536);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const all = new Float32Array(memory.buffer, 0, 3 * tensors * size);
  for (let i = 0; i < all.length; i++) all[i] = Math.sin(i * 0.001);
  const module = await WebAssembly.compile(await compileFloor(true));
  const floor = new WebAssembly.Instance(module, { env: { memory } }).exports.floor as FloorPass;
  const calls = splitCalls(tensors, size, threads);
  const control = new SharedArrayBuffer(8);
  const ctl = new Int32Array(control);
  const workers = calls
    .slice(1)
    .map((c) => new Worker(WORKER, { eval: true, workerData: { memory, module, control, calls: c } }));
  const run = () => {
    Atomics.store(ctl, 1, 0);
    Atomics.add(ctl, 0, 1);
    Atomics.notify(ctl, 0);
    for (const [p, g, b, n] of calls[0]!) floor(p, g, b, p, b, n, 0);
    for (let done = Atomics.load(ctl, 1); done < workers.length; done = Atomics.load(ctl, 1))
      Atomics.wait(ctl, 1, done);
  };
  const close = async () => {
    Atomics.store(ctl, 0, -1);
    Atomics.notify(ctl, 0);
    await Promise.all(workers.map((w) => w.terminate()));
  };
  return { run, close, memory };
}
