import { describe, expect, it } from 'vitest';
import { seededBatches } from './train-step.js';

describe('seededBatches', () => {
  it('gives every runtime the same batches for a seed, and other batches for another seed', () => {
    const [a] = seededBatches(1, 7, 4);
    const [b] = seededBatches(1, 7, 4);
    const [c] = seededBatches(1, 8, 4);
    expect(a!.x).toEqual(b!.x);
    expect(a!.labels).toEqual(b!.labels);
    expect(a!.x).not.toEqual(c!.x);
  });

  it('shapes a batch as 784 inputs in [0, 1) and one one-hot row of 10 per example', () => {
    const batches = seededBatches(2, 1, 4);
    expect(batches).toHaveLength(2);
    for (const { x, labels } of batches) {
      expect(x).toHaveLength(4 * 784);
      expect(labels).toHaveLength(4 * 10);
      expect(x.every((v) => v >= 0 && v < 1)).toBe(true);
      for (let r = 0; r < 4; r++) {
        const row = Array.from(labels.subarray(r * 10, r * 10 + 10));
        expect(row.filter((v) => v === 1)).toHaveLength(1);
        expect(row.filter((v) => v === 0)).toHaveLength(9);
      }
    }
  });
});
