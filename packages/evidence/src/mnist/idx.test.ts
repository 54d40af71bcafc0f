import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { IdxFormatError, parseIdx, readIdxFile, readIdxFileHeader } from './idx.js';

/** An IDX buffer: magic 0x0000 <type> <ndim>, big-endian dimensions, then `data`. */
function idx(dims: number[], data: number[], type = 0x08): Uint8Array {
  const header = [0, 0, type, dims.length];
  for (const d of dims) header.push((d >>> 24) & 255, (d >>> 16) & 255, (d >>> 8) & 255, d & 255);
  return Uint8Array.from([...header, ...data]);
}

describe('IDX reader', () => {
  it('reads a hand-made 2 x 2 x 3 image file and a 1-D label file', () => {
    const images = idx(
      [2, 2, 3],
      Array.from({ length: 12 }, (_, i) => i * 20),
    );
    expect(Array.from(images.subarray(0, 16))).toEqual([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3]);
    const a = parseIdx(images, [2, 2, 3]);
    expect(a.dims).toEqual([2, 2, 3]);
    expect(Array.from(a.data)).toEqual([0, 20, 40, 60, 80, 100, 120, 140, 160, 180, 200, 220]);

    const labels = parseIdx(idx([4], [7, 2, 1, 0]));
    expect(labels.dims).toEqual([4]);
    expect(Array.from(labels.data)).toEqual([7, 2, 1, 0]);
  });

  it('reads dimensions as big-endian uint32 (60,000 = 0x0000ea60)', () => {
    const header = parseIdx(idx([60_000], new Array(60_000).fill(1)));
    expect(header.dims).toEqual([60_000]);
    expect(header.data.length).toBe(60_000);
  });

  it('rejects bad magic numbers', () => {
    const good = idx([2], [1, 2]);
    const firstByte = good.slice();
    firstByte[0] = 1;
    expect(() => parseIdx(firstByte)).toThrow(IdxFormatError);
    expect(() => parseIdx(firstByte)).toThrow(
      /bad magic number 0x01000801: the first two bytes must be zero/,
    );
    const secondByte = good.slice();
    secondByte[1] = 8;
    expect(() => parseIdx(secondByte)).toThrow(/bad magic number 0x00080801/);
    expect(() => parseIdx(idx([2], [0, 0, 0, 0, 0, 0, 0, 0], 0x0d))).toThrow(
      /element type 0xd \(float\) is not supported, only 0x08/,
    );
    expect(() => parseIdx(idx([2], [1, 2], 0x07))).toThrow(/unknown element type 0x7/);
    expect(() => parseIdx(Uint8Array.from([0, 0, 8, 0]))).toThrow(/zero dimensions/);
  });

  it('rejects truncated files and trailing bytes', () => {
    const good = idx([2, 3], [1, 2, 3, 4, 5, 6]);
    expect(() => parseIdx(good.subarray(0, 3))).toThrow(/truncated: 3 bytes, shorter than the 4-byte magic/);
    expect(() => parseIdx(good.subarray(0, 10))).toThrow(
      /truncated: 10 bytes, shorter than the 12-byte header/,
    );
    expect(() => parseIdx(good.subarray(0, 17))).toThrow(/truncated: 17 bytes, but dimensions 2 x 3 need 18/);
    expect(() => parseIdx(Uint8Array.from([...good, 0]))).toThrow(/1 trailing bytes after the 18/);
    expect(parseIdx(good).data.length).toBe(6);
  });

  it('checks the expected dimensions', () => {
    const a = idx([3, 2, 2], new Array(12).fill(0));
    expect(() => parseIdx(a, [3, 2, 2])).not.toThrow();
    expect(() => parseIdx(a, [3, 4])).toThrow(/dimensions 3 x 2 x 2, expected 3 x 4/);
    expect(() => parseIdx(a, [2, 2, 2])).toThrow(/expected 2 x 2 x 2/);
  });

  describe('files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'idx-test-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('reads a whole file, or only its header checked against the file size', () => {
      const path = join(dir, 'tiny-idx3-ubyte');
      writeFileSync(path, idx([2, 2, 2], [1, 2, 3, 4, 5, 6, 7, 8]));
      expect(Array.from(readIdxFile(path, [2, 2, 2]).data)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      expect(readIdxFileHeader(path, [2, 2, 2])).toEqual({ dims: [2, 2, 2], headerBytes: 16, dataBytes: 8 });

      const cut = join(dir, 'cut-idx3-ubyte');
      writeFileSync(cut, idx([2, 2, 2], [1, 2, 3, 4, 5, 6, 7]));
      expect(() => readIdxFileHeader(cut)).toThrow(
        /cut-idx3-ubyte: truncated: 23 bytes, but dimensions 2 x 2 x 2 need 24/,
      );
      expect(() => readIdxFile(cut)).toThrow(IdxFormatError);
    });
  });
});
