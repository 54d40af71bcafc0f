import { closeSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';

/**
 * A strict reader for the IDX format of the MNIST files (LeCun et al.): a 4-byte magic number
 * (two zero bytes, a type code, the number of dimensions), one big-endian uint32 per dimension,
 * then the data, row-major. Only unsigned bytes (type code 0x08), the only type MNIST uses, are
 * accepted. The file must be exactly as long as its header says: truncated data and trailing
 * bytes are both errors.
 */
export class IdxFormatError extends Error {
  override name = 'IdxFormatError';
}

export interface IdxHeader {
  /** The sizes of the dimensions, outermost first. */
  dims: number[];
  /** The header's length in bytes (4 + 4 × dimensions). */
  headerBytes: number;
  /** The number of data bytes the header announces (the product of the dimensions). */
  dataBytes: number;
}

export interface IdxArray {
  dims: number[];
  /** The data, row-major: a view of the input bytes, not a copy. */
  data: Uint8Array;
}

const UBYTE = 0x08;
const TYPE_NAMES: Record<number, string> = {
  8: 'unsigned byte',
  9: 'signed byte',
  11: 'short',
  12: 'int',
  13: 'float',
  14: 'double',
};

/** Parses and checks the header; `totalBytes` is the length of the whole file. */
export function parseIdxHeader(head: Uint8Array, totalBytes: number, what = 'IDX data'): IdxHeader {
  if (totalBytes < 4 || head.length < 4)
    throw new IdxFormatError(`${what}: truncated: ${totalBytes} bytes, shorter than the 4-byte magic number`);
  const magic = ((head[0]! << 24) | (head[1]! << 16) | (head[2]! << 8) | head[3]!) >>> 0;
  const hex = `0x${magic.toString(16).padStart(8, '0')}`;
  if (head[0] !== 0 || head[1] !== 0)
    throw new IdxFormatError(`${what}: bad magic number ${hex}: the first two bytes must be zero`);
  const type = head[2]!;
  if (type !== UBYTE) {
    const known = TYPE_NAMES[type];
    throw new IdxFormatError(
      known
        ? `${what}: bad magic number ${hex}: element type 0x${type.toString(16)} (${known}) is not supported, only 0x08 (unsigned byte)`
        : `${what}: bad magic number ${hex}: unknown element type 0x${type.toString(16)}`,
    );
  }
  const ndim = head[3]!;
  if (ndim === 0) throw new IdxFormatError(`${what}: bad magic number ${hex}: zero dimensions`);
  const headerBytes = 4 + 4 * ndim;
  if (totalBytes < headerBytes || head.length < headerBytes)
    throw new IdxFormatError(
      `${what}: truncated: ${totalBytes} bytes, shorter than the ${headerBytes}-byte header of ${ndim} dimensions`,
    );
  const view = new DataView(head.buffer, head.byteOffset, headerBytes);
  const dims: number[] = [];
  let dataBytes = 1;
  for (let i = 0; i < ndim; i++) {
    const d = view.getUint32(4 + 4 * i, false);
    dims.push(d);
    dataBytes *= d;
  }
  if (!Number.isSafeInteger(dataBytes))
    throw new IdxFormatError(`${what}: dimensions ${dims.join(' x ')} are too large`);
  const expected = headerBytes + dataBytes;
  if (totalBytes < expected)
    throw new IdxFormatError(
      `${what}: truncated: ${totalBytes} bytes, but dimensions ${dims.join(' x ')} need ${expected}`,
    );
  if (totalBytes > expected)
    throw new IdxFormatError(
      `${what}: ${totalBytes - expected} trailing bytes after the ${expected} that dimensions ${dims.join(' x ')} need`,
    );
  return { dims, headerBytes, dataBytes };
}

function checkDims(dims: readonly number[], expected: readonly number[] | undefined, what: string): void {
  if (!expected) return;
  if (dims.length !== expected.length || dims.some((d, i) => d !== expected[i]))
    throw new IdxFormatError(`${what}: dimensions ${dims.join(' x ')}, expected ${expected.join(' x ')}`);
}

/** Parses a whole IDX buffer; `expectedDims`, when given, must match exactly. */
export function parseIdx(bytes: Uint8Array, expectedDims?: readonly number[], what = 'IDX data'): IdxArray {
  const header = parseIdxHeader(bytes, bytes.length, what);
  checkDims(header.dims, expectedDims, what);
  return { dims: header.dims, data: bytes.subarray(header.headerBytes) };
}

/** Reads and parses an IDX file. */
export function readIdxFile(path: string, expectedDims?: readonly number[]): IdxArray {
  return parseIdx(readFileSync(path), expectedDims, path);
}

/** Reads only the header of an IDX file and checks it against the file's size (and `expectedDims`). */
export function readIdxFileHeader(path: string, expectedDims?: readonly number[]): IdxHeader {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const head = new Uint8Array(Math.min(size, 4 + 4 * 255));
    const got = readSync(fd, head, 0, head.length, 0);
    const header = parseIdxHeader(head.subarray(0, got), size, path);
    checkDims(header.dims, expectedDims, path);
    return header;
  } finally {
    closeSync(fd);
  }
}
