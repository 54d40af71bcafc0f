import { AccSGD, fusedCoefficients, resolveHyperparams } from '@accsgd/core';
import { describe, expect, it } from 'vitest';
import { sameBits, seeded } from '../test-support/counting-ort.js';
import { CpuParameterStore, type CpuStepWork } from './cpu-update.js';

const coefficients = (lr: number) => fusedCoefficients(resolveHyperparams({ lr }));

/** Both layouts: a gradient region beside the parameters (the default), and the 32,768-element stage. */
const layouts = [
  { layout: 'gradient region', gradientRegion: true },
  { layout: 'stage', gradientRegion: false },
] as const;

/**
 * Steps a store and core's float32 AccSGD side by side: parameter i is in group groupOf[i] (lr
 * lrs[g]); `present(t, i)` says whether it has a gradient on step t. Key order is reversed, as an
 * object of gradients may give it. Returns the store, the core twins and core.
 */
function stepBoth(
  lengths: readonly number[],
  groupOf: readonly number[],
  lrs: readonly number[],
  steps: number,
  present: (t: number, i: number) => boolean,
  gradientRegion: boolean,
) {
  const initial = lengths.map((n, i) => seeded(n, i + 1));
  const store = new CpuParameterStore(initial, { gradientRegion });
  const twins = initial.map((a) => a.slice());
  const core = new AccSGD(
    lrs.map((lr, g) => ({ lr, params: twins.filter((_, i) => groupOf[i] === g) })),
    { lr: 0.1 },
  );
  // core orders parameters by group; the store by index: the same when groups are contiguous.
  expect(groupOf.every((g, i) => i === 0 || g >= groupOf[i - 1]!)).toBe(true);
  const first = new Set<number>(lengths.map((_, i) => i));
  for (let t = 0; t < steps; t++) {
    const grads = lengths.map((n, i) => (present(t, i) ? seeded(n, 1000 * t + i) : null));
    const work: CpuStepWork[] = grads.flatMap((grad, index) =>
      grad ? [{ index, group: groupOf[index]!, first: first.has(index), grad }] : [],
    );
    work.reverse();
    expect(store.firstNonFinite(work)).toBeNull();
    store.update(work, lrs.map(coefficients));
    for (const { index } of work) first.delete(index);
    core.step(grads);
  }
  return { store, twins, core };
}

function mismatches(store: CpuParameterStore, twins: Float32Array[], core: AccSGD): string[] {
  return twins.flatMap((twin, i) => [
    ...(sameBits(store.param(i), twin) ? [] : [`param ${i}`]),
    ...(sameBits(store.buffer(i), core.buffer(i) as Float32Array) ? [] : [`buffer ${i}`]),
  ]);
}

describe.each(layouts)('CpuParameterStore ($layout)', ({ gradientRegion }) => {
  // Lengths that are not multiples of 4 (padding between parameters), one over two stage-fulls
  // (70,001 > 2 x 32,768: a run crossing chunk boundaries mid-parameter), and runs broken by a
  // missing gradient and by a group change.
  const lengths = [1, 3, 5, 70_001, 2, 7, 4, 9];
  const groupOf = [0, 0, 0, 0, 1, 1, 1, 1];
  const lrs = [0.1, 0.03];

  it("steps every run, chunk and padding exactly as core's float32 AccSGD does, over 4 steps", () => {
    // Parameter 2 has no gradient on step 1, parameter 5 none on steps 0 and 2.
    const present = (t: number, i: number) => !((i === 2 && t === 1) || (i === 5 && t % 2 === 0));
    const { store, twins, core } = stepBoth(lengths, groupOf, lrs, 4, present, gradientRegion);
    expect(mismatches(store, twins, core)).toEqual([]);
  });

  it('steps 2,000 small parameters exactly as core does, with runs cut by groups, gaps and first steps', () => {
    // 1-6 elements each; three groups; on step 1 every fifth parameter is missing, so on step 2
    // those take their first step between neighbours on later ones (runs of one or four
    // parameters); parameters 1,000-1,099 have no gradient until step 3.
    const count = 2000;
    const small = Array.from({ length: count }, (_, i) => 1 + (i % 6));
    const groups = small.map((_, i) => (i < 700 ? 0 : i < 1500 ? 1 : 2));
    const present = (t: number, i: number) =>
      (i < 1000 || i >= 1100 || t === 3) && !(t === 0 && i % 5 === 0) && !(t === 1 && i % 7 === 3);
    const { store, twins, core } = stepBoth(small, groups, [0.1, 0.03, 0.2], 5, present, gradientRegion);
    expect(mismatches(store, twins, core)).toEqual([]);
  });

  it('updates without a scan first (nonFinite "allow") and after a scan of a different work array', () => {
    const initial = lengths.map((n, i) => seeded(n, i + 1));
    const a = new CpuParameterStore(initial, { gradientRegion });
    const b = new CpuParameterStore(initial, { gradientRegion });
    const grads = lengths.map((n, i) => seeded(n, 70 + i));
    const work = () => grads.map((grad, index) => ({ index, group: groupOf[index]!, first: true, grad }));
    a.update(work(), lrs.map(coefficients));
    const scanned = work();
    expect(b.firstNonFinite(scanned)).toBeNull();
    // A gradient changed after the scan, passed in a new array: read again, not the copy the scan made.
    grads[3]![12_345] = 0.5;
    grads[6]![1] = -0.25;
    b.update(work(), lrs.map(coefficients));
    const c = new CpuParameterStore(initial, { gradientRegion });
    c.update(work(), lrs.map(coefficients));
    lengths.forEach((_, i) => {
      expect(sameBits(b.param(i), c.param(i)), `param ${i}`).toBe(true);
      expect(sameBits(b.buffer(i), c.buffer(i)), `buffer ${i}`).toBe(true);
    });
    // a stepped before the change: element 12,345 of parameter 3 differs from b's.
    expect(a.param(3)[12_345]).not.toBe(b.param(3)[12_345]);
  });

  it('finds a NaN or infinity in any parameter of a run, past chunk boundaries, and nothing in finite gradients', () => {
    const store = new CpuParameterStore(
      lengths.map((n) => new Float32Array(n)),
      { gradientRegion },
    );
    const grads = lengths.map((n, i) => seeded(n, 50 + i));
    const work = grads.map((grad, index) => ({ index, group: groupOf[index]!, first: false, grad }));
    expect(store.firstNonFinite(work)).toBeNull();
    grads[3]![40_000] = Number.POSITIVE_INFINITY; // the second stage-full of parameter 3
    expect(store.firstNonFinite(work)).toEqual({ index: 3, element: 40_000 });
    grads[3]![40_000] = 0;
    grads[3]![70_000] = Number.NaN; // its last element, before the padding
    grads[6]![2] = Number.NaN;
    expect(store.firstNonFinite(work)).toEqual({ index: 3, element: 70_000 });
    grads[3]![70_000] = 0;
    expect(store.firstNonFinite(work)).toEqual({ index: 6, element: 2 });
    // A parameter left out of the step is not scanned.
    expect(store.firstNonFinite(work.filter((w) => w.index !== 6))).toBeNull();
  });

  it('names the parameter and element of a NaN among 5,000 small gradients, and changes nothing', () => {
    const small = Array.from({ length: 5000 }, (_, i) => 1 + (i % 9));
    const initial = small.map((n, i) => seeded(n, i + 1));
    const store = new CpuParameterStore(initial, { gradientRegion });
    const grads = small.map((n, i) => seeded(n, 9000 + i));
    const work = grads.map((grad, index) => ({ index, group: 0, first: true, grad }));
    grads[3217]![3] = Number.NEGATIVE_INFINITY;
    expect(grads[3217]!.length).toBe(5); // 1 + 3217 % 9: ends inside a vector, padding after it
    expect(store.firstNonFinite(work)).toEqual({ index: 3217, element: 3 });
    grads[3217]![3] = 0;
    grads[4999]![4] = Number.NaN; // the last element of the last parameter
    expect(store.firstNonFinite(work)).toEqual({ index: 4999, element: 4 });
    expect(initial.every((data, i) => sameBits(store.param(i), data))).toBe(true);
  });

  it('leaves no rejected NaN where a later step has padding', () => {
    // [5, 3]: parameter 1 starts at element 8. A NaN at element 3 of parameter 0 is copied to
    // position 3 of the stage, where parameter 1's padding goes when it is scanned alone.
    const store = new CpuParameterStore([new Float32Array(5), new Float32Array(3)], { gradientRegion });
    const bad = new Float32Array([1, 2, 3, Number.NaN, 5]);
    expect(store.firstNonFinite([{ index: 0, group: 0, first: true, grad: bad }])).toEqual({
      index: 0,
      element: 3,
    });
    const work = [{ index: 1, group: 0, first: true, grad: new Float32Array([1, 2, 3]) }];
    expect(store.firstNonFinite(work)).toBeNull();
  });

  it('owns() tells a view of its own memory (a parameter passed back as a gradient)', () => {
    const store = new CpuParameterStore([seeded(8, 1)], { gradientRegion });
    expect(store.owns(store.param(0))).toBe(true);
    expect(store.owns(store.buffer(0))).toBe(true);
    expect(store.owns(seeded(8, 1))).toBe(false);
  });
});
