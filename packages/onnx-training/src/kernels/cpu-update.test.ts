import { AccSGD, fusedCoefficients, resolveHyperparams } from '@accsgd/core';
import { describe, expect, it } from 'vitest';
import { sameBits, seeded } from '../test-support/counting-ort.js';
import { CpuParameterStore } from './cpu-update.js';

const coefficients = (lr: number) => fusedCoefficients(resolveHyperparams({ lr }));

describe('CpuParameterStore', () => {
  // Lengths that are not multiples of 4 (padding between parameters), one over two stage-fulls
  // (70,001 > 2 x 32,768: a run crossing chunk boundaries mid-parameter), and runs broken by a
  // missing gradient and by a group change.
  const lengths = [1, 3, 5, 70_001, 2, 7, 4, 9];
  const groupOf = [0, 0, 0, 0, 1, 1, 1, 1];
  const lrs = [0.1, 0.03];

  it("steps every run, chunk and padding exactly as core's float32 AccSGD does, over 4 steps", () => {
    const initial = lengths.map((n, i) => seeded(n, i + 1));
    const store = new CpuParameterStore(initial);
    const twins = initial.map((a) => a.slice());
    const core = new AccSGD(
      [
        { lr: lrs[0], params: twins.slice(0, 4) },
        { lr: lrs[1], params: twins.slice(4) },
      ],
      { lr: 0.1 },
    );
    const first = new Set<number>(lengths.map((_, i) => i));
    for (let t = 0; t < 4; t++) {
      // Parameter 2 has no gradient on step 1, parameter 5 none on steps 0 and 2.
      const present = lengths.map((_, i) => !((i === 2 && t === 1) || (i === 5 && t % 2 === 0)));
      const grads = lengths.map((n, i) => (present[i] ? seeded(n, 100 * t + i) : null));
      const work = grads.flatMap((grad, index) =>
        grad ? [{ index, group: groupOf[index]!, first: first.has(index), grad }] : [],
      );
      // Key order differs from index order, as an object of gradients may give it.
      store.update(work.reverse(), lrs.map(coefficients));
      for (const { index } of work) first.delete(index);
      core.step(grads);
    }
    lengths.forEach((_, i) => {
      expect(sameBits(store.param(i), twins[i]!), `param ${i}`).toBe(true);
      expect(sameBits(store.buffer(i), core.buffer(i) as Float32Array), `buffer ${i}`).toBe(true);
    });
  });

  it('finds a NaN or infinity in any parameter of a run, past chunk boundaries, and nothing in finite gradients', () => {
    const store = new CpuParameterStore(lengths.map((n) => new Float32Array(n)));
    const grads = lengths.map((n, i) => seeded(n, 50 + i));
    const work = grads.map((grad, index) => ({ index, group: groupOf[index]!, first: false, grad }));
    expect(store.firstNonFinite(work)).toBeNull();
    grads[3]![40_000] = Number.POSITIVE_INFINITY; // the second stage-full of parameter 3
    expect(store.firstNonFinite(work)).toEqual({ index: 3, element: 40_000 });
    grads[3]![40_000] = 0;
    grads[6]![2] = Number.NaN;
    expect(store.firstNonFinite(work)).toEqual({ index: 6, element: 2 });
    // A parameter left out of the step is not scanned.
    expect(store.firstNonFinite(work.filter((w) => w.index !== 6))).toBeNull();
  });

  it('owns() tells a view of its own memory (a parameter passed back as a gradient)', () => {
    const store = new CpuParameterStore([seeded(8, 1)]);
    expect(store.owns(store.param(0))).toBe(true);
    expect(store.owns(seeded(8, 1))).toBe(false);
  });
});
