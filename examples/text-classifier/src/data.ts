import { readFileSync } from 'node:fs';
import { LABELS } from './tiny-bert.js';

export interface Example {
  text: string;
  /** Index into LABELS: 0 NEGATIVE, 1 POSITIVE. */
  label: number;
}

export interface SentimentData {
  train: Example[];
  test: Example[];
}

export const SENTIMENT_TSV = new URL('../data/sentiment.tsv', import.meta.url);

const HEADER = 'split\tlabel\ttext';

/** Parses the example's TSV strictly: the header, then `train|test <tab> 0|1 <tab> text` per line. */
export function parseSentimentTsv(source: string): SentimentData {
  const lines = source.split('\n');
  if (lines.at(-1) === '') lines.pop();
  if (lines[0] !== HEADER)
    throw new Error(`the first line is ${JSON.stringify(lines[0])}, expected the header`);
  const data: SentimentData = { train: [], test: [] };
  lines.slice(1).forEach((line, k) => {
    const where = `line ${k + 2}`;
    const fields = line.split('\t');
    if (fields.length !== 3) throw new Error(`${where}: ${fields.length} fields, expected 3`);
    const [split, label, text] = fields as [string, string, string];
    if (split !== 'train' && split !== 'test')
      throw new Error(`${where}: split "${split}", expected train or test`);
    if (!/^[0-9]+$/.test(label) || Number(label) >= LABELS.length)
      throw new Error(`${where}: label "${label}", expected 0..${LABELS.length - 1}`);
    if (text.trim() === '') throw new Error(`${where}: empty text`);
    data[split].push({ text, label: Number(label) });
  });
  return data;
}

export function loadSentiment(): SentimentData {
  return parseSentimentTsv(readFileSync(SENTIMENT_TSV, 'utf8'));
}

/** Token ids of a set of texts, padded (or truncated) to one length, row-major [count, length]. */
export interface EncodedTexts {
  count: number;
  length: number;
  input_ids: BigInt64Array;
  attention_mask: BigInt64Array;
  token_type_ids: BigInt64Array;
}

export const ENCODED_INPUTS = ['input_ids', 'attention_mask', 'token_type_ids'] as const;

/** Rows `indices` of `encoded` and their labels as float one-hot rows: one training batch. */
export function gatherBatch(
  encoded: EncodedTexts,
  labels: readonly number[],
  indices: ArrayLike<number>,
): { inputs: Record<(typeof ENCODED_INPUTS)[number], BigInt64Array>; labels: Float32Array } {
  const L = encoded.length;
  const pick = (source: BigInt64Array) => {
    const out = new BigInt64Array(indices.length * L);
    for (let r = 0; r < indices.length; r++)
      out.set(source.subarray(indices[r]! * L, (indices[r]! + 1) * L), r * L);
    return out;
  };
  const oneHot = new Float32Array(indices.length * LABELS.length);
  for (let r = 0; r < indices.length; r++) oneHot[r * LABELS.length + labels[indices[r]!]!] = 1;
  return {
    inputs: {
      input_ids: pick(encoded.input_ids),
      attention_mask: pick(encoded.attention_mask),
      token_type_ids: pick(encoded.token_type_ids),
    },
    labels: oneHot,
  };
}
