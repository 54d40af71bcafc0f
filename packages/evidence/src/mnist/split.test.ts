import { describe, expect, it } from 'vitest';
import { IMAGE_SIZE, type MnistSplit } from './data.js';
import { gather, validationSplit } from './split.js';

/** A fake split whose image i is filled with i % 251 and whose label is i % 10. */
function fake(count: number): MnistSplit {
  const images = new Uint8Array(count * IMAGE_SIZE);
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    images.fill(i % 251, i * IMAGE_SIZE, (i + 1) * IMAGE_SIZE);
    labels[i] = i % 10;
  }
  return { images, labels, count };
}

describe('validation split', () => {
  it('partitions the training images: disjoint, complete, of the asked sizes', () => {
    const s = validationSplit(fake(1000), 200, 7);
    expect(s.validation.count).toBe(200);
    expect(s.train.count).toBe(800);
    const seen = new Set([...s.trainIndices, ...s.validationIndices]);
    expect(seen.size).toBe(1000); // no index twice, none missing
  });

  it('carries each image with its own label', () => {
    const s = validationSplit(fake(1000), 100, 3);
    for (let r = 0; r < s.validation.count; r++) {
      const i = s.validationIndices[r]!;
      expect(s.validation.labels[r]).toBe(i % 10);
      expect(s.validation.images[r * IMAGE_SIZE + 17]).toBe(i % 251);
    }
  });

  it('is the same for the same seed and different for another, and not just the first or last images', () => {
    const a = validationSplit(fake(1000), 100, 3).validationIndices;
    expect([...validationSplit(fake(1000), 100, 3).validationIndices]).toEqual([...a]);
    expect([...validationSplit(fake(1000), 100, 4).validationIndices]).not.toEqual([...a]);
    expect(a[0]).toBeLessThan(100);
    expect(a[99]).toBeGreaterThan(900);
  });

  it('keeps only trainCount training examples when asked, still disjoint from validation', () => {
    const s = validationSplit(fake(1000), 100, 3, 250);
    expect(s.train.count).toBe(250);
    const v = new Set(s.validationIndices);
    expect([...s.trainIndices].some((i) => v.has(i))).toBe(false);
  });

  it('refuses sizes that leave nothing to train on', () => {
    expect(() => validationSplit(fake(10), 10, 1)).toThrow(/validationCount must be an integer in 1..9/);
    expect(() => validationSplit(fake(10), 5, 1, 6)).toThrow(/trainCount must be an integer in 1..5/);
    expect(() => gather(fake(3), [3])).toThrow(/outside 0..2/);
  });
});
