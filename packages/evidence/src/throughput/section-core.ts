import { AccSGD, ParameterArena } from '@accsgd/core';
import { floorBench } from './floor.js';
import { filled, timeInterleaved } from './timing.js';
import { LAYOUTS, type Row, type SectionResult } from './types.js';

const LR = 1e-3;
const FLOOR = 'wasm SIMD floor (read 3, write 2 arrays)';

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
    let ms = await timeInterleaved(
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
    ms = await timeInterleaved(
      {
        floor: floor.run,
        error: () => arenas[0]!.opt.step(arenas[0]!.g),
        allow: () => arenas[1]!.opt.step(arenas[1]!.g),
      },
      repeats,
    );
    add("arena: AccSGD, nonFinite 'error' (default)", ms.error, ms.floor);
    add("arena: AccSGD, nonFinite 'allow'", ms.allow, ms.floor);
  }
  return { section: 'core', rows };
}
