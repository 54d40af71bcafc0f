/**
 * What crosses between Node and the page. Runs on both sides (the page gets it through the
 * bundle), so it must not import anything from Node.
 *
 * Typed arrays travel as base64 of their bytes rather than through Playwright's own serializer,
 * so every bit survives (NaN payloads, -0, subnormals) and the element type comes back as sent.
 * Byte order is the platform's on both ends; Node and Chromium run on the same machine.
 */

const TYPED_ARRAYS = {
  Float64Array,
  Float32Array,
  Int32Array,
  Uint32Array,
  Int16Array,
  Uint16Array,
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
} as const;

export type TypedArrayName = keyof typeof TYPED_ARRAYS;

export interface WireTypedArray {
  $typedArray: TypedArrayName;
  base64: string;
}

/** An error thrown on the other side, reduced to what can be rebuilt here. */
export interface WireError {
  name: string;
  message: string;
  stack?: string;
  /** Own fields of the error that are plain values, e.g. AccSGDGradientError's `param`. */
  fields: Record<string, string | number | boolean | null>;
}

export type WireReply = { ok: true; value: unknown } | { ok: false; error: WireError };

export const SESSION_METHODS = [
  'step',
  'setLearningRate',
  'read',
  'exportState',
  'importState',
  'close',
  'leastSquaresGradient',
] as const;
export type SessionMethod = (typeof SESSION_METHODS)[number];

/** The requests the page host answers; see page-host.ts. */
export type WireRequest =
  | { op: 'create'; options: unknown }
  | { op: 'open'; problem: unknown }
  | { op: 'session'; session: number; method: SessionMethod; args: unknown[] }
  | { op: 'run'; args: unknown }
  | { op: 'describe-webgpu' };

/** The name the page host is installed under on globalThis. */
export const PAGE_HOST_GLOBAL = '__accsgd';

function typedArrayName(value: ArrayBufferView): TypedArrayName | undefined {
  for (const [name, arrayType] of Object.entries(TYPED_ARRAYS)) {
    if (value instanceof arrayType) return name as TypedArrayName;
  }
  return undefined;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

export function encodeWire(value: unknown): unknown {
  if (ArrayBuffer.isView(value)) {
    const name = typedArrayName(value);
    if (!name)
      throw new TypeError(`cannot send a ${value.constructor.name} to the other side; use a typed array`);
    const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    return { $typedArray: name, base64: bytesToBase64(bytes) } satisfies WireTypedArray;
  }
  if (Array.isArray(value)) return value.map(encodeWire);
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) out[key] = encodeWire(item);
    return out;
  }
  return value;
}

export function decodeWire(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(decodeWire);
  if (isPlainObject(value)) {
    if (typeof value.$typedArray === 'string' && typeof value.base64 === 'string') {
      const arrayType = TYPED_ARRAYS[value.$typedArray as TypedArrayName];
      if (!arrayType) throw new TypeError(`unknown typed array ${value.$typedArray}`);
      // A fresh copy, so the result is aligned and owns its whole buffer.
      const bytes = base64ToBytes(value.base64);
      return new arrayType(bytes.buffer, 0, bytes.byteLength / arrayType.BYTES_PER_ELEMENT);
    }
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) out[key] = decodeWire(item);
    return out;
  }
  return value;
}

export function encodeError(thrown: unknown): WireError {
  if (!(thrown instanceof Error))
    return { name: 'Error', message: `non-Error thrown: ${String(thrown)}`, fields: {} };
  const fields: WireError['fields'] = {};
  for (const [key, value] of Object.entries(thrown)) {
    if (key === 'name' || key === 'message' || key === 'stack') continue;
    if (value === null || ['string', 'number', 'boolean'].includes(typeof value))
      fields[key] = value as string | number | boolean | null;
  }
  return { name: thrown.name, message: thrown.message, stack: thrown.stack, fields };
}

type WithBase64 = { toBase64?: () => string };
type NodeBufferLike = {
  from(buffer: ArrayBufferLike, offset: number, length: number): { toString(encoding: 'base64'): string };
  from(base64: string, encoding: 'base64'): Uint8Array;
};
type Base64Decoder = { fromBase64?: (base64: string) => Uint8Array };

// Native codecs where present (Chromium has Uint8Array.toBase64, Node has Buffer); atob/btoa
// over binary strings otherwise, in chunks so String.fromCharCode's argument list stays short.
function bytesToBase64(bytes: Uint8Array): string {
  const native = (bytes as WithBase64).toBase64;
  if (typeof native === 'function') return native.call(bytes);
  const NodeBuffer = (globalThis as { Buffer?: NodeBufferLike }).Buffer;
  if (NodeBuffer) return NodeBuffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
  let binary = '';
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}

function base64ToBytes(base64: string): Uint8Array<ArrayBuffer> {
  const native = (Uint8Array as Base64Decoder).fromBase64;
  if (typeof native === 'function') return native(base64) as Uint8Array<ArrayBuffer>;
  const NodeBuffer = (globalThis as { Buffer?: NodeBufferLike }).Buffer;
  // Copied: a small Buffer is a view into a shared pool.
  if (NodeBuffer) return new Uint8Array(NodeBuffer.from(base64, 'base64'));
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
