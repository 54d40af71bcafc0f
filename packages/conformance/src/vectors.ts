import { readFile } from 'node:fs/promises';
import { decodeGoldenCase, type GoldenCase } from './golden-format.js';

// The format itself has no Node imports, so that the browser entry (web.ts) can decode bundled vectors.
export {
  decodeGoldenCase,
  encodeGoldenCase,
  GOLDEN_FORMAT,
  GOLDEN_FORMAT_VERSION,
  type GoldenCase,
  type GoldenStep,
} from './golden-format.js';

export const VECTORS_DIR = new URL('../vectors/', import.meta.url);

/** Names of the committed golden cases, in suite order. */
export async function listGoldenCases(dir: URL = VECTORS_DIR): Promise<string[]> {
  const index = JSON.parse(await readFile(new URL('index.json', dir), 'utf8')) as { cases: string[] };
  return index.cases;
}

export async function loadGoldenCase(name: string, dir: URL = VECTORS_DIR): Promise<GoldenCase> {
  return decodeGoldenCase(new Uint8Array(await readFile(new URL(`${name}.safetensors`, dir))));
}
