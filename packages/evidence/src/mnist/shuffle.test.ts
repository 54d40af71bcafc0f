import { describe, expect, it } from 'vitest';
import { createRng } from '../rng.js';
import { epochOrder, permutation } from './shuffle.js';

describe('seeded shuffle', () => {
  it('is a permutation of 0..n-1', () => {
    const p = epochOrder(10_000, 1, 0);
    expect(p.length).toBe(10_000);
    expect(Array.from(p).sort((a, b) => a - b)).toEqual(Array.from({ length: 10_000 }, (_, i) => i));
    expect(Array.from(permutation(0, createRng(1)))).toEqual([]);
    expect(Array.from(permutation(1, createRng(1)))).toEqual([0]);
  });

  it('is deterministic in (seed, epoch) and differs between epochs and seeds', () => {
    expect(Array.from(epochOrder(1000, 1, 3))).toEqual(Array.from(epochOrder(1000, 1, 3)));
    expect(Array.from(epochOrder(1000, 1, 3))).not.toEqual(Array.from(epochOrder(1000, 1, 4)));
    expect(Array.from(epochOrder(1000, 1, 3))).not.toEqual(Array.from(epochOrder(1000, 2, 3)));
  });

  it('pins the order of 10 examples for seed 1, epochs 0 and 1 (a change must be deliberate)', () => {
    expect(Array.from(epochOrder(10, 1, 0))).toEqual(PINNED_EPOCH0);
    expect(Array.from(epochOrder(10, 1, 1))).toEqual(PINNED_EPOCH1);
  });

  it('moves every element with roughly uniform probability', () => {
    // Position of element 0 over 20,000 shuffles of 4: each of the 4 positions about 5,000 times.
    const rng = createRng(9);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 20_000; i++) counts[permutation(4, rng).indexOf(0)]!++;
    for (const c of counts) expect(Math.abs(c - 5000)).toBeLessThan(300);
  });
});

const PINNED_EPOCH0 = [5, 8, 3, 4, 2, 9, 7, 6, 1, 0];
const PINNED_EPOCH1 = [1, 8, 7, 2, 6, 5, 0, 3, 9, 4];
