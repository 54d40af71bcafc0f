import { createRng, laneSeed, type Rng } from '../rng.js';

/** A uniformly random permutation of 0..n-1 (Fisher–Yates, driven by `rng`). */
export function permutation(n: number, rng: Rng): Uint32Array {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`n must be a non-negative integer, got ${n}`);
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.uniform() * (i + 1));
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}

/**
 * The order of the `n` training examples in `epoch` (0-based) for `seed`: a function of these three
 * only, so every optimizer and backend sees the same batches.
 */
export function epochOrder(n: number, seed: number, epoch: number): Uint32Array {
  return permutation(n, createRng(laneSeed(seed, epoch)));
}
