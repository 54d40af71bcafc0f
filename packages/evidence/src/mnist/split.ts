import { createRng } from '../rng.js';
import { IMAGE_SIZE, type MnistSplit } from './data.js';
import { permutation } from './shuffle.js';

/** Examples of `s` at `indices`, copied into a split of their own (in that order). */
export function gather(s: MnistSplit, indices: ArrayLike<number>): MnistSplit {
  const n = indices.length;
  const images = new Uint8Array(n * IMAGE_SIZE);
  const labels = new Uint8Array(n);
  for (let r = 0; r < n; r++) {
    const i = indices[r]!;
    if (!(Number.isInteger(i) && i >= 0 && i < s.count))
      throw new RangeError(`index ${i} is outside 0..${s.count - 1}`);
    images.set(s.images.subarray(i * IMAGE_SIZE, (i + 1) * IMAGE_SIZE), r * IMAGE_SIZE);
    labels[r] = s.labels[i]!;
  }
  return { images, labels, count: n };
}

export interface ValidationSplit {
  train: MnistSplit;
  validation: MnistSplit;
  /** Indices into the original training split, ascending within each part. */
  trainIndices: Uint32Array;
  validationIndices: Uint32Array;
}

/**
 * Carves `validationCount` examples out of the training split, chosen by a seeded permutation (the
 * same for every run, optimizer and seed of a report), and keeps the rest for training; the test
 * split is never touched. `trainCount` (optional) keeps only the first that many of the rest.
 */
export function validationSplit(
  all: MnistSplit,
  validationCount: number,
  seed: number,
  trainCount = all.count - validationCount,
): ValidationSplit {
  if (!Number.isInteger(validationCount) || validationCount < 1 || validationCount >= all.count)
    throw new RangeError(`validationCount must be an integer in 1..${all.count - 1}, got ${validationCount}`);
  if (!Number.isInteger(trainCount) || trainCount < 1 || trainCount > all.count - validationCount)
    throw new RangeError(
      `trainCount must be an integer in 1..${all.count - validationCount} (the examples left after validation), got ${trainCount}`,
    );
  const p = permutation(all.count, createRng(seed));
  const validationIndices = p.slice(0, validationCount).sort();
  const trainIndices = p.slice(validationCount, validationCount + trainCount).sort();
  return {
    train: gather(all, trainIndices),
    validation: gather(all, validationIndices),
    trainIndices,
    validationIndices,
  };
}
