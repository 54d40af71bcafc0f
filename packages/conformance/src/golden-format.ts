import {
  AccSGDStateError,
  type ConformanceProblem,
  type ConformanceSnapshot,
  decodeSafetensors,
  encodeSafetensors,
  type SafetensorsTensor,
} from '@accsgd/core';

/**
 * Golden vectors: one safetensors file per case. Inputs (initial values, gradients) are stored as
 * F32 because they are float32-representable by construction; the truth after every step is F64.
 *   init/<param>            F32
 *   step<k>/grad/<param>     F32  (absent: no gradient at step k)
 *   step<k>/param/<param>    F64  truth after step k
 *   step<k>/buffer/<param>   F64  (absent: no buffer yet)
 * The metadata "case" holds the JSON below (without tensors). Steps are 1-based.
 */
export const GOLDEN_FORMAT = 'accsgd-golden';
export const GOLDEN_FORMAT_VERSION = '1';

export interface GoldenStep {
  /** Learning-rate changes applied before this step. */
  learningRates: { group: number; lr: number }[];
  grads: Record<string, Float64Array | null>;
  expected: ConformanceSnapshot;
}

export interface GoldenCase {
  name: string;
  description: string;
  problem: ConformanceProblem;
  steps: GoldenStep[];
}

interface CaseHeader {
  name: string;
  description: string;
  groups: ConformanceProblem['groups'];
  shapes: Record<string, number[]>;
  steps: { learningRates: { group: number; lr: number }[]; withGradient: string[] }[];
}

export function encodeGoldenCase(c: GoldenCase): Uint8Array {
  const names = Object.keys(c.problem.params);
  const header: CaseHeader = {
    name: c.name,
    description: c.description,
    groups: c.problem.groups,
    shapes: Object.fromEntries(names.map((n) => [n, c.problem.params[n]!.shape])),
    steps: c.steps.map((s) => ({
      learningRates: s.learningRates,
      withGradient: names.filter((n) => s.grads[n] != null),
    })),
  };
  const tensors: [string, SafetensorsTensor][] = [];
  const f32 = (shape: number[], values: Float64Array): SafetensorsTensor => {
    const data = Float32Array.from(values);
    if (data.some((v, i) => v !== values[i])) throw new Error('golden inputs must be float32-representable');
    return { dtype: 'F32', shape, data };
  };
  for (const n of names)
    tensors.push([`init/${n}`, f32(c.problem.params[n]!.shape, c.problem.params[n]!.init)]);
  c.steps.forEach((s, i) => {
    const k = i + 1;
    for (const n of names) {
      const shape = c.problem.params[n]!.shape;
      const grad = s.grads[n];
      if (grad) tensors.push([`step${k}/grad/${n}`, f32(shape, grad)]);
      tensors.push([`step${k}/param/${n}`, { dtype: 'F64', shape, data: s.expected.params[n]! }]);
      const buffer = s.expected.buffers[n];
      if (buffer) tensors.push([`step${k}/buffer/${n}`, { dtype: 'F64', shape, data: buffer }]);
    }
  });
  return encodeSafetensors(tensors, {
    format: GOLDEN_FORMAT,
    format_version: GOLDEN_FORMAT_VERSION,
    case: JSON.stringify(header),
  });
}

export function decodeGoldenCase(bytes: Uint8Array): GoldenCase {
  const file = decodeSafetensors(bytes, { maxHeaderBytes: 64 << 20, maxTensors: 1_000_000 });
  if (file.metadata.format !== GOLDEN_FORMAT || file.metadata.format_version !== GOLDEN_FORMAT_VERSION) {
    throw new AccSGDStateError(`not an ${GOLDEN_FORMAT} v${GOLDEN_FORMAT_VERSION} file`);
  }
  const header = JSON.parse(file.metadata.case!) as CaseHeader;
  const tensor = (key: string): Float64Array => {
    const t = file.tensors.get(key);
    if (!t) throw new AccSGDStateError(`golden case ${header.name}: missing tensor ${key}`);
    return Float64Array.from(t.data);
  };
  const names = Object.keys(header.shapes);
  const problem: ConformanceProblem = {
    groups: header.groups,
    params: Object.fromEntries(
      names.map((n) => [n, { shape: header.shapes[n]!, init: tensor(`init/${n}`) }]),
    ),
  };
  const steps = header.steps.map((s, i): GoldenStep => {
    const k = i + 1;
    const grads: Record<string, Float64Array | null> = {};
    const params: Record<string, Float64Array> = {};
    const buffers: Record<string, Float64Array | null> = {};
    for (const n of names) {
      grads[n] = s.withGradient.includes(n) ? tensor(`step${k}/grad/${n}`) : null;
      params[n] = tensor(`step${k}/param/${n}`);
      buffers[n] = file.tensors.has(`step${k}/buffer/${n}`) ? tensor(`step${k}/buffer/${n}`) : null;
    }
    return { learningRates: s.learningRates, grads, expected: { params, buffers } };
  });
  return { name: header.name, description: header.description, problem, steps };
}
