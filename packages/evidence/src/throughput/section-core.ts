import { AccSGD, ParameterArena } from '@accsgd/core';
import { floorBench, threadedFloorBench } from './floor.js';
import { filled, timeInterleaved } from './timing.js';
import { LAYOUTS, type Row, type SectionResult } from './types.js';

const LR = 1e-3;
const FLOOR = 'wasm SIMD floor (read 3, write 2 arrays)';
export const THREADS = 2;

/**
 * @accsgd/core's AccSGD on ordinary Float32Arrays and in a ParameterArena, nonFinite 'error' (the
 * default) and 'allow', beside the floor pass over the same element count, interleaved in one process.
 */
export async function runCore(repeats: number): Promise<SectionResult> {
  const rows: Row[] = [];
  for (const layout of LAYOUTS) {
    const { tensors, size } = layout;
    const floor = await floorBench(tensors, size);
    const params = Array.from({ length: tensors }, (_, t) => filled(size, t));
    const grads = Array.from({ length: tensors }, (_, t) => filled(size, t + 0.5, 1e-3));
    const plain = {
      error: new AccSGD(params, { lr: LR }, { nonFinite: 'error' }),
      allow: new AccSGD(params, { lr: LR }, { nonFinite: 'allow' }),
    };
    const ms = await timeInterleaved(
      {
        floor: floor.run,
        error: () => plain.error.step(grads),
        allow: () => plain.allow.step(grads),
      },
      repeats,
    );
    const add = (variant: string, stepMs: number, floorMs: number) =>
      rows.push({
        framework: '@accsgd/core',
        backend: variant.startsWith('arena') ? 'ParameterArena (wasm SIMD)' : 'Float32Array',
        layout: layout.label,
        variant,
        ms: stepMs,
        baseline: FLOOR,
        baselineMs: floorMs,
        ratio: stepMs / floorMs,
      });
    add("AccSGD, nonFinite 'error' (default)", ms.error, ms.floor);
    add("AccSGD, nonFinite 'allow'", ms.allow, ms.floor);
    // One arena per policy: parameters, gradients and (allocated by the optimizer) buffers.
    const arenas = (['error', 'allow'] as const).map((nonFinite) => {
      const arena = new ParameterArena(3 * tensors * size + 16 * tensors);
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
      return { opt: new AccSGD(p, { lr: LR }, { nonFinite, arena }), g };
    });
    // The floor over THREADS threads: the best a multi-threaded arena path could reach here.
    const threaded = await threadedFloorBench(tensors, size, THREADS);
    const arenaMs = await timeInterleaved(
      {
        floor: floor.run,
        error: () => arenas[0]!.opt.step(arenas[0]!.g),
        allow: () => arenas[1]!.opt.step(arenas[1]!.g),
        threaded: threaded.run,
      },
      repeats,
    );
    await threaded.close();
    add("arena: AccSGD, nonFinite 'error' (default)", arenaMs.error, arenaMs.floor);
    add("arena: AccSGD, nonFinite 'allow'", arenaMs.allow, arenaMs.floor);
    rows.push({
      framework: 'physical floor',
      backend: `wasm SIMD, ${THREADS} threads`,
      layout: layout.label,
      variant: `the floor pass split over ${THREADS} threads (worker_threads, one shared memory)`,
      ms: arenaMs.threaded,
      baseline: FLOOR,
      baselineMs: arenaMs.floor,
      ratio: arenaMs.threaded / arenaMs.floor,
      note: `the fastest a ${THREADS}-thread arena path could be on this machine; no such path exists in @accsgd/core`,
    });
  }
  return { section: 'core', rows };
}
