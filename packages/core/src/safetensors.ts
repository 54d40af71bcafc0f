import { AccSGDConfigError, AccSGDError, AccSGDStateError, describeError, formatValue } from './errors.js';
import { isGenuineFloatArray, memoryOf, typedArrayName, typedLength } from './lookup.js';

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

/**
 * Bounds on a file, for the reader (which rejects files beyond them) and the writer (which refuses
 * to write files beyond them, so that what it writes with a set of limits, the reader reads with
 * the same limits). Each is a safe integer >= 0; anything else is an AccSGDConfigError.
 */
export interface SafetensorsLimits {
  /** Largest JSON header, in bytes. Default 100,000,000 (the Rust safetensors reader's own cap). */
  maxHeaderBytes?: number;
  /** Most tensors in one file. Default 100,000. */
  maxTensors?: number;
}

const BYTES_PER_ELEMENT: Record<SafetensorsDType, number> = { F32: 4, F64: 8 };
/**
 * 100 MB, as the Rust safetensors crate (and so Python's `safetensors`) caps the header. It fits
 * every state of up to DEFAULT_MAX_TENSORS (100,000) buffers with names of up to 256 ASCII
 * characters and shapes of up to 8 dimensions: per buffer, the tensor entry
 * `"<name>.momentum_buffer":{"dtype":"F32","shape":[d1,...,d8],"data_offsets":[b,e]},` is at most
 * 256 + 21 + 24 + 8 * 17 + 19 + 2 * 17 + 2 = 492 bytes (a safe integer has at most 16 digits, plus
 * its comma), and the name in the `param_groups` string (escaped twice: `\"name\",`) at most
 * 256 + 5 = 261 more: 753 bytes, times 100,000 = 75.3 MB, plus the five hyperparameters and the
 * step of each group (under 150 bytes a group). Beyond that (longer names, more dimensions, names
 * that JSON escapes), the writer refuses with AccSGDStateError rather than write a file the reader
 * would reject; pass larger limits to both.
 */
const DEFAULT_MAX_HEADER_BYTES = 100_000_000;
const DEFAULT_MAX_TENSORS = 100_000;

const METADATA_KEY = '__metadata__';

const littleEndianHost = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function fail(message: string): never {
  throw new AccSGDStateError(`invalid safetensors file: ${message}`);
}

/**
 * The limits with their defaults, or AccSGDConfigError naming the bad one. `undefined` means the
 * defaults; otherwise a plain object with only `maxHeaderBytes` and `maxTensors`, each undefined
 * or a safe integer >= 0 (NaN, Infinity, 1.5, -1, "5" are refused, not read as "no limit").
 */
export function resolveLimits(limits: unknown): Required<SafetensorsLimits> {
  if (limits === undefined)
    return { maxHeaderBytes: DEFAULT_MAX_HEADER_BYTES, maxTensors: DEFAULT_MAX_TENSORS };
  const read: Record<string, unknown> = {};
  try {
    if (typeof limits !== 'object' || limits === null || Array.isArray(limits)) {
      throw new AccSGDConfigError('limits', limits, 'an object { maxHeaderBytes?, maxTensors? }');
    }
    for (const key of Object.keys(limits)) {
      if (key !== 'maxHeaderBytes' && key !== 'maxTensors') {
        throw new AccSGDConfigError(
          `limits.${key}`,
          (limits as Record<string, unknown>)[key],
          'maxHeaderBytes or maxTensors',
          'is not a safetensors limit (expected maxHeaderBytes or maxTensors)',
        );
      }
    }
    read.maxHeaderBytes = (limits as SafetensorsLimits).maxHeaderBytes;
    read.maxTensors = (limits as SafetensorsLimits).maxTensors;
  } catch (error) {
    if (error instanceof AccSGDConfigError) throw error;
    throw new AccSGDConfigError(
      'limits',
      limits,
      'a readable object',
      `could not be read (${describeError(error)})`,
    );
  }
  const check = (key: 'maxHeaderBytes' | 'maxTensors', fallback: number): number => {
    const value = read[key];
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
      throw new AccSGDConfigError(`limits.${key}`, value, 'a safe integer >= 0');
    return value;
  };
  return {
    maxHeaderBytes: check('maxHeaderBytes', DEFAULT_MAX_HEADER_BYTES),
    maxTensors: check('maxTensors', DEFAULT_MAX_TENSORS),
  };
}

function refuse(message: string): never {
  throw new AccSGDStateError(`cannot write safetensors file: ${message}`);
}

/** Why a shape is invalid for `length` elements (the reader's rules), or undefined when it is fine. */
export function shapeProblem(shape: unknown, length: number | undefined): string | undefined {
  if (!Array.isArray(shape)) return 'is not an array';
  const dims: number[] = [];
  for (let i = 0; i < shape.length; i++) {
    const d: unknown = shape[i];
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0)
      return `has dimension ${i} = ${formatValue(d)}; expected an integer >= 0`;
    dims.push(d);
  }
  let nonZero = 1;
  for (const d of dims) if (d > 0) nonZero *= d;
  if (nonZero > Number.MAX_SAFE_INTEGER) return 'has dimensions that multiply past 2^53 - 1';
  if (length !== undefined && product(dims) !== length)
    return `holds ${product(dims)} elements, but the data has ${length}`;
  return undefined;
}

/**
 * Writes a safetensors file. Refuses, with AccSGDStateError and before writing anything, whatever
 * decodeSafetensors would reject under the same limits (default: the reader's defaults): a name
 * twice, "__metadata__" as a name, a shape that is not a list of non-negative safe integers matching the data, data that is not the dtype's array,
 * more tensors than `maxTensors` or a header over `maxHeaderBytes`.
 */
export function encodeSafetensors(
  tensors: Iterable<[string, SafetensorsTensor]>,
  metadata: Record<string, string>,
  limits?: SafetensorsLimits,
): Uint8Array {
  assertLittleEndianHost();
  const resolved = resolveLimits(limits);
  try {
    return encodeChecked(tensors, metadata, resolved);
  } catch (error) {
    // A getter or Proxy trap in the caller's objects threw: still a typed refusal.
    if (error instanceof AccSGDError) throw error;
    refuse(`the tensors or metadata could not be read (${describeError(error)})`);
  }
}

function encodeChecked(
  tensors: Iterable<[string, SafetensorsTensor]>,
  metadata: Record<string, string>,
  { maxHeaderBytes, maxTensors }: Required<SafetensorsLimits>,
): Uint8Array {
  const entries = [...tensors] as [unknown, unknown][];
  if (entries.length > maxTensors) refuse(`${entries.length} tensors exceed the limit of ${maxTensors}`);
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata))
    refuse(`metadata must be an object of strings; got ${formatValue(metadata)}`);
  const meta: Record<string, string> = Object.create(null);
  for (const key of Object.keys(metadata)) {
    const value: unknown = metadata[key];
    if (typeof value !== 'string')
      refuse(`metadata ${formatValue(key)} is ${formatValue(value)}; expected a string`);
    meta[key] = value;
  }
  // No prototype: a tensor named "__proto__" must become a key, not replace the prototype.
  const header: Record<string, unknown> = Object.create(null);
  header[METADATA_KEY] = meta;
  const seen = new Set<string>();
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const entry of entries) {
    if (!Array.isArray(entry) || entry.length !== 2)
      refuse(`each tensor must be a [name, tensor] pair; got ${formatValue(entry)}`);
    const [name, tensor] = entry as [unknown, SafetensorsTensor];
    if (typeof name !== 'string') refuse(`tensor name ${formatValue(name)} is not a string`);
    if (name === METADATA_KEY) refuse(`"${METADATA_KEY}" is reserved and cannot name a tensor`);
    if (seen.has(name)) refuse(`tensor "${name}" appears twice`);
    seen.add(name);
    if (typeof tensor !== 'object' || tensor === null)
      refuse(`tensor "${name}" is ${formatValue(tensor)}; expected { dtype, shape, data }`);
    const { dtype, shape, data } = tensor;
    if (dtype !== 'F32' && dtype !== 'F64')
      refuse(`tensor "${name}" has dtype ${formatValue(dtype)}; expected "F32" or "F64"`);
    if (
      !isGenuineFloatArray(data) ||
      typedArrayName(data) !== (dtype === 'F32' ? 'Float32Array' : 'Float64Array')
    ) {
      refuse(`tensor "${name}": data is ${formatValue(data)}, dtype is ${dtype}`);
    }
    const length = typedLength(data);
    const problem = shapeProblem(shape, length);
    if (problem !== undefined) refuse(`tensor "${name}": shape ${formatValue(shape)} ${problem}`);
    const byteLength = length * BYTES_PER_ELEMENT[dtype];
    const memory = memoryOf(data);
    chunks.push(new Uint8Array(memory.buffer, memory.begin, byteLength));
    header[name] = { dtype, shape: [...(shape as number[])], data_offsets: [offset, offset + byteLength] };
    offset += byteLength;
  }
  // Pad the header with spaces to a multiple of 8 so tensor data starts aligned, as the Rust writer does.
  const jsonBytes = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(jsonBytes.length / 8) * 8;
  if (padded > maxHeaderBytes) {
    refuse(
      `the header would be ${padded} bytes, over the limit of ${maxHeaderBytes} bytes that the reader applies (pass larger limits to both the writer and the reader)`,
    );
  }
  let out: Uint8Array;
  try {
    out = new Uint8Array(8 + padded + offset);
  } catch {
    refuse(`a file of ${8 + padded + offset} bytes is too large to allocate`);
  }
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(jsonBytes, 8);
  out.fill(0x20, 8 + jsonBytes.length, 8 + padded);
  let cursor = 8 + padded;
  for (const chunk of chunks) {
    out.set(chunk, cursor);
    cursor += chunk.length;
  }
  return out;
}

/**
 * Parses and fully validates a safetensors file. Never allocates more than the file's size plus a
 * bounded header; every violation throws AccSGDStateError. The returned tensors are copies.
 */
export function decodeSafetensors(input: Uint8Array, limits?: SafetensorsLimits): SafetensorsFile {
  assertLittleEndianHost();
  const { maxHeaderBytes, maxTensors } = resolveLimits(limits);
  if (typedArrayName(input) !== 'Uint8Array') fail(`expected a Uint8Array, got ${formatValue(input)}`);
  // A fresh view through the intrinsics: an own `length` or a Proxy cannot lie about the bytes.
  const memory = memoryOf(input as Uint8Array);
  const bytes = new Uint8Array(memory.buffer, memory.begin, memory.end - memory.begin);
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
    // A copy: TextDecoder refuses views of a SharedArrayBuffer.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(
      Uint8Array.prototype.slice.call(bytes, 8, 8 + headerBytes),
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
    fail(`key ${formatValue(duplicate)} appears more than once in one object of the header`);

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
      if (typeof value !== 'string') fail(`__metadata__ ${formatValue(key)} is not a string`);
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
      fail(`tensor "${name}" has dtype ${formatValue(dtype)}; expected "F32" or "F64"`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`tensor "${name}" has shape ${formatValue(shape)}; expected an array of non-negative integers`);
    }
    // Even with a zero dimension, the others must not multiply past 2^53 - 1 (no tensor library
    // can describe such a shape). Partial products of safe integers below that bound are exact.
    let nonZero = 1;
    for (const d of shape as number[]) if (d > 0) nonZero *= d;
    if (nonZero > Number.MAX_SAFE_INTEGER)
      fail(`tensor "${name}" has shape ${formatValue(shape)}, whose dimensions multiply past 2^53 - 1`);
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      fail(
        `tensor "${name}" has data_offsets ${formatValue(offsets)}; expected [begin, end] with 0 <= begin <= end`,
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
