import { Rng } from './rng.js';

export type TaskName = 'toy' | 'mnist' | 'mnist-cnn';
export const TASKS: readonly TaskName[] = ['toy', 'mnist', 'mnist-cnn'];

/** Row-major examples: x is count x features, y the class of each. */
export interface Split {
  count: number;
  features: number;
  x: Float32Array;
  y: Uint8Array;
}

export interface Dataset {
  train: Split;
  test: Split;
  classes: number;
  batchSize: number;
}

/** Two interleaved half-moons with noise, 2 classes: a boundary an MLP has to bend. */
export function toyDataset(seed = 7): Dataset {
  const make = (count: number, rng: Rng): Split => {
    const x = new Float32Array(count * 2);
    const y = new Uint8Array(count);
    for (let i = 0; i < count; i++) {
      const label = i % 2;
      const angle = rng.next() * Math.PI;
      const cx = label === 0 ? Math.cos(angle) : 1 - Math.cos(angle);
      const cy = label === 0 ? Math.sin(angle) : 0.5 - Math.sin(angle);
      x[i * 2] = cx - 0.5 + rng.normal() * 0.12;
      x[i * 2 + 1] = cy - 0.25 + rng.normal() * 0.12;
      y[i] = label;
    }
    return { count, features: 2, x, y };
  };
  const rng = new Rng(seed);
  return { train: make(512, rng), test: make(256, rng), classes: 2, batchSize: 32 };
}

/** Parses public/generated/mnist-subset.bin (see scripts/prepare-assets.mjs). */
export function parseMnistSubset(bytes: Uint8Array): Dataset {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 12 || String.fromCharCode(...bytes.subarray(0, 4)) !== 'MNSB')
    throw new Error('mnist-subset.bin: not an MNSB file (rebuild the page: npm run build)');
  const trainCount = view.getUint32(4, true);
  const testCount = view.getUint32(8, true);
  const expected = 12 + (trainCount + testCount) * 785;
  if (bytes.length !== expected)
    throw new Error(`mnist-subset.bin: ${bytes.length} bytes, expected ${expected}`);
  let offset = 12;
  const split = (count: number): Split => {
    const pixels = bytes.subarray(offset, offset + count * 784);
    offset += count * 784;
    const y = bytes.slice(offset, offset + count);
    offset += count;
    const x = new Float32Array(count * 784);
    for (let i = 0; i < x.length; i++) x[i] = pixels[i]! / 255;
    return { count, features: 784, x, y };
  };
  const train = split(trainCount);
  const test = split(testCount);
  return { train, test, classes: 10, batchSize: 64 };
}

let mnist: Promise<Dataset> | undefined;
export function loadMnist(): Promise<Dataset> {
  mnist ??= (async () => {
    const response = await fetch(new URL('generated/mnist-subset.bin', document.baseURI));
    if (!response.ok) throw new Error(`mnist-subset.bin: HTTP ${response.status}`);
    return parseMnistSubset(new Uint8Array(await response.arrayBuffer()));
  })();
  return mnist;
}

export async function loadDataset(task: TaskName): Promise<Dataset> {
  return task === 'toy' ? toyDataset() : loadMnist();
}

export interface Batch {
  x: Float32Array;
  /** One-hot labels, batch x classes. */
  labels: Float32Array;
  y: Uint8Array;
}

/**
 * Batch `step` of a run: epochs are seeded permutations of the training split, so every backend
 * and optimizer with the same seed sees the same batches in the same order (and a resumed run the
 * batch the uninterrupted one would have seen).
 */
export function batchAt(data: Dataset, seed: number, step: number): Batch {
  const { train, batchSize, classes } = data;
  const perEpoch = Math.floor(train.count / batchSize);
  const epoch = Math.floor(step / perEpoch);
  const order = new Rng(seed * 1000003 + epoch).permutation(train.count);
  const start = (step % perEpoch) * batchSize;
  const x = new Float32Array(batchSize * train.features);
  const labels = new Float32Array(batchSize * classes);
  const y = new Uint8Array(batchSize);
  for (let r = 0; r < batchSize; r++) {
    const i = order[start + r]!;
    x.set(train.x.subarray(i * train.features, (i + 1) * train.features), r * train.features);
    y[r] = train.y[i]!;
    labels[r * classes + train.y[i]!] = 1;
  }
  return { x, labels, y };
}
