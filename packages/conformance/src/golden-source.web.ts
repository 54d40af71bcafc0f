/**
 * The golden cases without a file system: the committed vectors' bytes, bundled as base64
 * (golden-vectors.generated.ts, written by `npm run vectors`; a test keeps it equal to vectors/).
 * Same signatures as golden-source.ts; `dir` exists only in Node and is rejected here.
 */
import { decodeGoldenCase, type GoldenCase } from './golden-format.js';
import { GOLDEN_CASE_NAMES, GOLDEN_VECTORS_BASE64 } from './golden-vectors.generated.js';

function rejectDir(dir: unknown): void {
  if (dir !== undefined)
    throw new TypeError(
      'golden vectors from a directory need Node; in a browser only the bundled ones exist',
    );
}

function fromBase64(base64: string): Uint8Array {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** Names of the bundled golden cases, in suite order. */
export async function listGoldenCases(dir?: unknown): Promise<string[]> {
  rejectDir(dir);
  return [...GOLDEN_CASE_NAMES];
}

export async function loadGoldenCase(name: string, dir?: unknown): Promise<GoldenCase> {
  rejectDir(dir);
  const base64 = GOLDEN_VECTORS_BASE64[name];
  if (base64 === undefined)
    throw new RangeError(`no bundled golden case "${name}"; the cases are ${GOLDEN_CASE_NAMES.join(', ')}`);
  return decodeGoldenCase(fromBase64(base64));
}
