import { AccSGD, ParameterArena } from '@accsgd/core';
import { floorBench, threadedFloorBench } from './floor.js';
import { filled, timeInterleaved } from './timing.js';
import { LAYOUTS, type Row, type SectionResult } from './types.js';

const LR = 1e-3;
const FLOOR = 'wasm SIMD floor (read 3, write 2 arrays)';
export const THREADS = 2;

/**
 * @accsgd/core's AccSGD on ordinary Float32Arrays and in a ParameterArena, nonFinite 'error' (the
 * default) and 'allow', on one thread and with `threads: THREADS` (a shared arena; ordinary arrays
 * streamed through the optimizer's own shared memory; Float32Arrays over SharedArrayBuffers copied
 * by every thread), beside the floor pass over the same element count, interleaved in one process.
 */
export async function runCore(repeats: number): Promise<SectionResult> {
  const rows: Row[] = [];
  for (const layout of LAYOUTS) {
    const { tensors, size } = layout;
    const floor = await floorBench(tensors, size);
    const params = Array.from({ length: tensors }, (_, t) => filled(size, t));
    const grads = Array.from({ length: tensors }, (_, t) => filled(size, t + 0.5, 1e-3));
    // The same values on SharedArrayBuffers (parameters side by side on one, each gradient on its
    // own, as a model whose tensors live in shared memory would have them): every thread can copy these.
    const onShared = (arrays: Float32Array[]) => {
      const memory = new SharedArrayBuffer(4 * tensors * size);
      return arrays.map((a, t) => {
        const view = new Float32Array(memory, 4 * t * size, size);
        view.set(a);
        return view;
      });
    };
    const sharedParams = onShared(params);
    const sharedGrads = grads.map((g) => onShared([g])[0]!);
    const plain = {
      error: new AccSGD(params, { lr: LR }, { nonFinite: 'error' }),
      allow: new AccSGD(params, { lr: LR }, { nonFinite: 'allow' }),
      threadsError: new AccSGD(params, { lr: LR }, { nonFinite: 'error', threads: THREADS }),
      threadsAllow: new AccSGD(params, { lr: LR }, { nonFinite: 'allow', threads: THREADS }),
      sharedError: new AccSGD(sharedParams, { lr: LR }, { nonFinite: 'error', threads: THREADS }),
      sharedAllow: new AccSGD(sharedParams, { lr: LR }, { nonFinite: 'allow', threads: THREADS }),
    };
    await Promise.all(Object.values(plain).map((o) => o.threadsReady()));
    const ms = await timeInterleaved(
      {
        floor: floor.run,
        error: () => plain.error.step(grads),
        allow: () => plain.allow.step(grads),
        threadsError: () => plain.threadsError.step(grads),
        threadsAllow: () => plain.threadsAllow.step(grads),
        sharedError: () => plain.sharedError.step(sharedGrads),
        sharedAllow: () => plain.sharedAllow.step(sharedGrads),
      },
      repeats,
    );
    for (const o of Object.values(plain)) o.dispose();
    const add = (variant: string, stepMs: number, floorMs: number) =>
      rows.push({
        framework: '@accsgd/core',
        backend: `${variant.startsWith('arena') ? 'ParameterArena (wasm SIMD)' : 'Float32Array'}${variant.includes('threads') ? `, ${THREADS} threads` : ''}`,
        layout: layout.label,
        variant,
        ms: stepMs,
        baseline: FLOOR,
        baselineMs: floorMs,
        ratio: stepMs / floorMs,
      });
    add("AccSGD, nonFinite 'error' (default)", ms.error, ms.floor);
    add("AccSGD, nonFinite 'allow'", ms.allow, ms.floor);
    add(`${THREADS} threads: AccSGD, nonFinite 'error' (default)`, ms.threadsError, ms.floor);
    add(`${THREADS} threads: AccSGD, nonFinite 'allow'`, ms.threadsAllow, ms.floor);
    for (const [policy, stepMs] of [
      ["'error' (default)", ms.sharedError],
      ["'allow'", ms.sharedAllow],
    ] as const) {
      rows.push({
        framework: '@accsgd/core',
        backend: `Float32Array over SharedArrayBuffer, ${THREADS} threads`,
        layout: layout.label,
        variant: `${THREADS} threads, shared arrays: AccSGD, nonFinite ${policy}`,
        ms: stepMs,
        baseline: FLOOR,
        baselineMs: ms.floor,
        ratio: stepMs / ms.floor,
      });
    }
    // One arena per policy: parameters, gradients and (allocated by the optimizer) buffers.
    const arenas = (
      [
        ['error', 1],
        ['allow', 1],
        ['error', THREADS],
        ['allow', THREADS],
      ] as const
    ).map(([nonFinite, threads]) => {
      const arena = new ParameterArena(3 * tensors * size + 16 * tensors, { shared: threads > 1 });
      const p = Array.from({ length: tensors }, (_, t) => {
        const a = arena.float32(size);
        a.set(filled(size, t));
        return a;
      });
      const g = Array.from({ length: tensors }, (_, t) => {
        const a = arena.float32(size);
        a.set(filled(size, t + 0.5, 1e-3));
        return a;
      });
      return { opt: new AccSGD(p, { lr: LR }, { nonFinite, arena, threads }), g };
    });
    await Promise.all(arenas.map((a) => a.opt.threadsReady()));
    // The floor over THREADS threads: the best a multi-threaded arena path could reach here.
    const threaded = await threadedFloorBench(tensors, size, THREADS);
    const arenaMs = await timeInterleaved(
      {
        floor: floor.run,
        error: () => arenas[0]!.opt.step(arenas[0]!.g),
        allow: () => arenas[1]!.opt.step(arenas[1]!.g),
        threadsError: () => arenas[2]!.opt.step(arenas[2]!.g),
        threadsAllow: () => arenas[3]!.opt.step(arenas[3]!.g),
        threaded: threaded.run,
      },
      repeats,
    );
    await threaded.close();
    for (const a of arenas) a.opt.dispose();
    add("arena: AccSGD, nonFinite 'error' (default)", arenaMs.error, arenaMs.floor);
    add("arena: AccSGD, nonFinite 'allow'", arenaMs.allow, arenaMs.floor);
    add(
      `arena, ${THREADS} threads: AccSGD, nonFinite 'error' (default)`,
      arenaMs.threadsError,
      arenaMs.floor,
    );
    add(`arena, ${THREADS} threads: AccSGD, nonFinite 'allow'`, arenaMs.threadsAllow, arenaMs.floor);
    rows.push({
      framework: 'physical floor',
      backend: `wasm SIMD, ${THREADS} threads`,
      layout: layout.label,
      variant: `the floor pass split over ${THREADS} threads (worker_threads, one shared memory)`,
      ms: arenaMs.threaded,
      baseline: FLOOR,
      baselineMs: arenaMs.floor,
      ratio: arenaMs.threaded / arenaMs.floor,
      note: `the fastest a ${THREADS}-thread arena step could be on this machine (AccSGD's threads option is the arena rows with ${THREADS} threads)`,
    });
  }
  return { section: 'core', rows };
}
