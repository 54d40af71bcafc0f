import { AccSGDStateError } from './errors.js';

/**
 * A strict, bounded reader and a writer for the safetensors layout:
 *   8-byte little-endian header length N | N bytes of JSON header | raw little-endian tensor bytes.
 * The header maps tensor names to { dtype, shape, data_offsets: [begin, end] } (offsets relative
 * to the byte buffer after the header) plus an optional "__metadata__" map of strings.
 * Only the dtypes this project stores are accepted.
 */

export type SafetensorsDType = 'F32' | 'F64';

export interface SafetensorsTensor {
  dtype: SafetensorsDType;
  shape: number[];
  data: Float32Array | Float64Array;
}

export interface SafetensorsFile {
  metadata: Record<string, string>;
  /** In file order (ascending offsets). */
  tensors: Map<string, SafetensorsTensor>;
}

export interface SafetensorsLimits {
  /** Largest accepted JSON header, in bytes. Default 1 MiB. */
  maxHeaderBytes?: number;
  /** Most tensors in one file. Default 100,000. */
  maxTensors?: number;
}

const BYTES_PER_ELEMENT: Record<SafetensorsDType, number> = { F32: 4, F64: 8 };
const DEFAULT_MAX_HEADER_BYTES = 1 << 20;
const DEFAULT_MAX_TENSORS = 100_000;
const METADATA_KEY = '__metadata__';

const littleEndianHost = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function fail(message: string): never {
  throw new AccSGDStateError(`invalid safetensors file: ${message}`);
}

export function encodeSafetensors(
  tensors: Iterable<[string, SafetensorsTensor]>,
  metadata: Record<string, string>,
): Uint8Array {
  assertLittleEndianHost();
  const entries = [...tensors];
  const header: Record<string, unknown> = { [METADATA_KEY]: metadata };
  let offset = 0;
  for (const [name, tensor] of entries) {
    const byteLength = tensor.data.length * BYTES_PER_ELEMENT[tensor.dtype];
    if (tensor.data.BYTES_PER_ELEMENT !== BYTES_PER_ELEMENT[tensor.dtype]) {
      throw new AccSGDStateError(
        `tensor "${name}": data is ${tensor.data.constructor.name}, dtype is ${tensor.dtype}`,
      );
    }
    if (product(tensor.shape) !== tensor.data.length) {
      throw new AccSGDStateError(
        `tensor "${name}": shape [${tensor.shape.join(', ')}] holds ${product(tensor.shape)} elements, data has ${tensor.data.length}`,
      );
    }
    header[name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + byteLength] };
    offset += byteLength;
  }
  // Pad the header with spaces to a multiple of 8 so tensor data starts aligned, as the Rust writer does.
  let json = JSON.stringify(header);
  const jsonBytes = new TextEncoder().encode(json);
  const padded = Math.ceil(jsonBytes.length / 8) * 8;
  json += ' '.repeat(padded - jsonBytes.length);
  const out = new Uint8Array(8 + padded + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(new TextEncoder().encode(json), 8);
  let cursor = 8 + padded;
  for (const [, tensor] of entries) {
    out.set(new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength), cursor);
    cursor += tensor.data.byteLength;
  }
  return out;
}

/**
 * Parses and fully validates a safetensors file. Never allocates more than the file's size plus a
 * bounded header; every violation throws AccSGDStateError. The returned tensors are copies.
 */
export function decodeSafetensors(bytes: Uint8Array, limits: SafetensorsLimits = {}): SafetensorsFile {
  assertLittleEndianHost();
  if (!(bytes instanceof Uint8Array)) fail(`expected a Uint8Array, got ${typeof bytes}`);
  const maxHeaderBytes = limits.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  const maxTensors = limits.maxTensors ?? DEFAULT_MAX_TENSORS;
  if (bytes.length < 8) fail(`file is ${bytes.length} bytes, shorter than the 8-byte header length`);
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLength > BigInt(maxHeaderBytes))
    fail(`header length ${headerLength} exceeds the limit of ${maxHeaderBytes} bytes`);
  const headerBytes = Number(headerLength);
  if (8 + headerBytes > bytes.length)
    fail(`header length ${headerBytes} runs past the end of the ${bytes.length}-byte file`);
  let text: string;
  try {
    // ignoreBOM keeps a byte-order mark in the text, so the "{" check below rejects it, as a JSON
    // parser reading the bytes would (TextDecoder would silently drop it otherwise).
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(
      bytes.subarray(8, 8 + headerBytes),
    );
  } catch {
    fail('header is not valid UTF-8');
  }
  if (!text.startsWith('{')) fail('header does not start with "{"');
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (error) {
    fail(`header is not JSON (${(error as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header))
    fail('header is not a JSON object');
  const duplicate = firstDuplicateKey(text);
  if (duplicate !== undefined)
    fail(`key ${JSON.stringify(duplicate)} appears more than once in one object of the header`);

  // No prototype: a "__proto__" key must land as a key (and be rejected as unknown), not vanish.
  const metadata: Record<string, string> = Object.create(null);
  const raw = header as Record<string, unknown>;
  const names = Object.keys(raw).filter((k) => k !== METADATA_KEY);
  if (names.length > maxTensors) fail(`${names.length} tensors exceed the limit of ${maxTensors}`);
  if (METADATA_KEY in raw) {
    const meta = raw[METADATA_KEY];
    if (typeof meta !== 'object' || meta === null || Array.isArray(meta))
      fail('__metadata__ is not an object');
    for (const [key, value] of Object.entries(meta as Record<string, unknown>)) {
      if (typeof value !== 'string') fail(`__metadata__.${key} is not a string`);
      metadata[key] = value;
    }
  }

  const dataStart = 8 + headerBytes;
  const dataLength = bytes.length - dataStart;
  const layout: { name: string; dtype: SafetensorsDType; shape: number[]; begin: number; end: number }[] = [];
  for (const name of names) {
    const entry = raw[name];
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry))
      fail(`tensor "${name}" is not an object`);
    const { dtype, shape, data_offsets: offsets, ...rest } = entry as Record<string, unknown>;
    const extra = Object.keys(rest);
    if (extra.length > 0) fail(`tensor "${name}" has unknown field "${extra[0]}"`);
    if (dtype !== 'F32' && dtype !== 'F64')
      fail(`tensor "${name}" has dtype ${JSON.stringify(dtype)}; expected "F32" or "F64"`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`tensor "${name}" has shape ${JSON.stringify(shape)}; expected an array of non-negative integers`);
    }
    // Even with a zero dimension, the others must not multiply past 2^53 - 1 (no tensor library
    // can describe such a shape). Partial products of safe integers below that bound are exact.
    let nonZero = 1;
    for (const d of shape as number[]) if (d > 0) nonZero *= d;
    if (nonZero > Number.MAX_SAFE_INTEGER)
      fail(`tensor "${name}" has shape ${JSON.stringify(shape)}, whose dimensions multiply past 2^53 - 1`);
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      fail(
        `tensor "${name}" has data_offsets ${JSON.stringify(offsets)}; expected [begin, end] with 0 <= begin <= end`,
      );
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataLength)
      fail(`tensor "${name}" ends at byte ${end}, past the ${dataLength}-byte data section`);
    const elements = product(shape as number[]);
    if (elements * BYTES_PER_ELEMENT[dtype] !== end - begin) {
      fail(
        `tensor "${name}" has shape [${(shape as number[]).join(', ')}] of ${dtype} (${elements * BYTES_PER_ELEMENT[dtype]} bytes) but data_offsets span ${end - begin} bytes`,
      );
    }
    layout.push({ name, dtype, shape: shape as number[], begin, end });
  }
  // Tensors must tile the data section exactly: no overlap, no hole, nothing trailing.
  layout.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  for (const t of layout) {
    if (t.begin < expected)
      fail(
        `tensor "${t.name}" overlaps the tensor before it (starts at ${t.begin}, previous ends at ${expected})`,
      );
    if (t.begin > expected) fail(`gap of ${t.begin - expected} bytes before tensor "${t.name}"`);
    expected = t.end;
  }
  if (expected !== dataLength) fail(`${dataLength - expected} trailing bytes after the last tensor`);

  const tensors = new Map<string, SafetensorsTensor>();
  for (const t of layout) {
    // Uint8Array's slice copies; a Node Buffer's slice would be a view into a shared pool, so call
    // Uint8Array's own (a file read with readFileSync is a Buffer).
    const copy = Uint8Array.prototype.slice.call(bytes, dataStart + t.begin, dataStart + t.end);
    const data = t.dtype === 'F32' ? new Float32Array(copy.buffer) : new Float64Array(copy.buffer);
    tensors.set(t.name, { dtype: t.dtype, shape: t.shape, data });
  }
  return { metadata, tensors };
}

/**
 * JSON.parse keeps the last of two equal keys without a word, so a duplicate tensor name (or a
 * duplicate "param_groups" in the metadata) would go unnoticed. This scans the (already valid)
 * JSON text and returns the first key repeated within one object, at any depth.
 */
export function firstDuplicateKey(text: string): string | undefined {
  const open: (Set<string> | null)[] = []; // one entry per open object ({}: keys) or array ([]: null)
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '{') open.push(new Set());
    else if (ch === '[') open.push(null);
    else if (ch === '}' || ch === ']') open.pop();
    else if (ch === '"') {
      const start = i;
      for (i++; text[i] !== '"'; i++) if (text[i] === '\\') i++;
      const keys = open[open.length - 1];
      if (!keys) continue;
      let j = i + 1;
      while (text[j] === ' ' || text[j] === '\n' || text[j] === '\r' || text[j] === '\t') j++;
      if (text[j] !== ':') continue;
      const key = JSON.parse(text.slice(start, i + 1)) as string;
      if (keys.has(key)) return key;
      keys.add(key);
    }
  }
  return undefined;
}

export function product(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function assertLittleEndianHost(): void {
  if (!littleEndianHost) throw new AccSGDStateError('safetensors I/O needs a little-endian host');
}
