import {
  accuracyBound,
  accuracyFloor,
  decodeState,
  type Hyperparams,
  type OptimizerState,
  relativeError,
} from '@accsgd/core';
import type { Reading } from './drivers.js';
import type { Trace } from './run.js';

type Values = Float32Array | Float64Array;

/** What one adapter showed over every case: exactness and the worst error, as a fraction of the bound. */
export interface AdapterStats {
  cases: number;
  tensorsCompared: number;
  /** Every parameter and buffer bit-identical to core float32 so far. */
  exact: boolean;
  /**
   * Every difference from core float32 so far is at flush level, |got - want| < 16 * 2^-126:
   * subnormal inputs or intermediates flushed to zero (WGSL permits it; SPEC §3's floor budgets
   * up to 16 flushes of less than 2^-126 each per element and step).
   */
  exactButFlushes: boolean;
  /** Elements that differed from core float32, and how many of them at flush level (< 16 * 2^-126). */
  differing: number;
  flushes: number;
  /** Worst relativeError against core float32 and against the float64 truth, over the bound at that step. */
  worstVsCore32: number;
  worstVsTruth: number;
  /** Unawaited runs: calls issued while earlier ones were pending, and waits the API imposed. */
  overlapped: number;
  barriers: number;
}

export function newStats(): AdapterStats {
  return {
    cases: 0,
    tensorsCompared: 0,
    exact: true,
    exactButFlushes: true,
    differing: 0,
    flushes: 0,
    worstVsCore32: 0,
    worstVsTruth: 0,
    overlapped: 0,
    barriers: 0,
  };
}

/** Bit-for-bit as float32 (-0 and 0 differ; so would two NaNs with different payloads). */
export function sameBits(a: Values, b: Values): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(Float32Array.from(a).buffer);
  const y = new Uint32Array(Float32Array.from(b).buffer);
  return x.every((v, i) => v === y[i]);
}

const FLUSH_LEVEL = 16 * 2 ** -126;

/** Counts the elements that differ from core float32, and those that are flushes (see AdapterStats). */
function countDifferences(got: Values, want: Values, stats: AdapterStats): void {
  for (let i = 0; i < want.length; i++) {
    const a = Math.fround(got[i]!);
    const b = Math.fround(want[i]!);
    if (Object.is(a, b)) continue;
    stats.differing++;
    if (Math.abs(a - b) < FLUSH_LEVEL) stats.flushes++;
    else stats.exactButFlushes = false;
  }
}

function firstBitDifference(a: Values, b: Values): string {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (!Object.is(Math.fround(a[i] ?? Number.NaN), Math.fround(b[i] ?? Number.NaN)))
      return `element ${i}: ${a[i]} vs core/float32 ${b[i]}`;
  }
  return 'same';
}

interface Reference {
  core32: { values: Values | null; floorHyper: Hyperparams[] };
  truth: Values | null;
}

/**
 * Compares one tensor against the reference: bit for bit when `exactRequired`, otherwise within
 * SPEC §3's float32 bound after `steps` steps, both against core float32 and the float64 truth.
 * Returns a problem description, or null.
 */
function compareTensor(
  what: string,
  got: Values | null,
  ref: Reference,
  steps: number,
  exactRequired: boolean,
  stats: AdapterStats,
): string | null {
  const want = ref.core32.values;
  if ((got === null) !== (want === null))
    return `${what}: ${got === null ? 'no buffer' : 'a buffer'} where core/float32 has ${want === null ? 'none' : 'one'}`;
  if (got === null || want === null) return null;
  stats.tensorsCompared++;
  if (got.length !== want.length) return `${what}: ${got.length} elements, core/float32 has ${want.length}`;
  const exact = sameBits(got, want);
  if (!exact) {
    stats.exact = false;
    countDifferences(got, want, stats);
  }
  if (exactRequired)
    return exact ? null : `${what}: not bit-identical to core/float32 (${firstBitDifference(got, want)})`;
  const bound = accuracyBound('float32', steps);
  const floor = accuracyFloor('float32', ref.core32.floorHyper);
  const vs32 = relativeError(got, want, floor) / bound;
  const vsTruth = ref.truth ? relativeError(got, ref.truth, floor) / bound : 0;
  stats.worstVsCore32 = Math.max(stats.worstVsCore32, vs32);
  stats.worstVsTruth = Math.max(stats.worstVsTruth, vsTruth);
  if (!(vs32 <= 1) || !(vsTruth <= 1))
    return `${what}: relative error ${(vs32 * bound).toExponential(3)} against core/float32 and ${(vsTruth * bound).toExponential(3)} against the float64 truth; the bound after ${steps} steps is ${bound.toExponential(3)} (${firstBitDifference(got, want)})`;
  return null;
}

/** Group index of each parameter name, from a state's groups. */
function groupOfName(state: OptimizerState): Map<string, number> {
  return new Map(state.groups.flatMap((g, i) => g.params.map((n) => [n, i] as const)));
}

function hyperOf(history: Hyperparams[][] | undefined, group: number): Hyperparams[] {
  return history?.[group] ?? [];
}

/** Compares two readings (parameters and buffers); problems are appended to `problems`. */
export function compareReading(
  label: string,
  got: Reading,
  core32: Reading,
  truth: Reading | null,
  groupOf: Map<string, number>,
  hyper: Hyperparams[][] | undefined,
  steps: number,
  exactRequired: boolean,
  stats: AdapterStats,
  problems: string[],
): void {
  for (const [name, want] of core32.params) {
    const g = groupOf.get(name) ?? 0;
    const floorHyper = hyperOf(hyper, g);
    const p = compareTensor(
      `${label}: parameter ${name}`,
      got.params.get(name) ?? null,
      { core32: { values: want, floorHyper }, truth: truth?.params.get(name) ?? null },
      steps,
      exactRequired,
      stats,
    );
    if (p) problems.push(p);
    const b = compareTensor(
      `${label}: buffer of ${name}`,
      got.buffers.get(name) ?? null,
      {
        core32: { values: core32.buffers.get(name) ?? null, floorHyper },
        truth: truth?.buffers.get(name) ?? null,
      },
      steps,
      exactRequired,
      stats,
    );
    if (b) problems.push(b);
  }
}

/**
 * Compares two state files decoded with core's decodeState: the same groups (hyperparameters,
 * member names, step counts, exactly) and the same buffers (bit for bit, or within the bound).
 */
export function compareState(
  label: string,
  gotBytes: Uint8Array,
  core32Bytes: Uint8Array,
  truthBytes: Uint8Array | null,
  hyper: Hyperparams[][] | undefined,
  steps: number,
  exactRequired: boolean,
  stats: AdapterStats,
  problems: string[],
): void {
  let got: OptimizerState;
  try {
    got = decodeState(gotBytes);
  } catch (error) {
    problems.push(`${label}: decodeState fails: ${(error as Error).message}`);
    return;
  }
  const want = decodeState(core32Bytes);
  const truth = truthBytes ? decodeState(truthBytes) : null;
  const groups = (s: OptimizerState) => JSON.stringify(s.groups);
  if (groups(got) !== groups(want))
    problems.push(`${label}: groups ${groups(got)}, core/float32 has ${groups(want)}`);
  const names = (s: OptimizerState) => JSON.stringify([...s.buffers.keys()].sort());
  if (names(got) !== names(want))
    problems.push(`${label}: buffers for ${names(got)}, core/float32 has ${names(want)}`);
  const groupOf = groupOfName(want);
  for (const [name, buffer] of want.buffers) {
    const mine = got.buffers.get(name);
    if (!mine) continue;
    if (JSON.stringify(mine.shape) !== JSON.stringify(buffer.shape))
      problems.push(`${label}: buffer ${name} has shape ${mine.shape}, core/float32 has ${buffer.shape}`);
    if (!(mine.data instanceof Float32Array))
      problems.push(`${label}: buffer ${name} is ${mine.data.constructor.name}, expected F32`);
    const p = compareTensor(
      `${label}: state buffer ${name}`,
      mine.data,
      {
        core32: { values: buffer.data, floorHyper: hyperOf(hyper, groupOf.get(name) ?? 0) },
        truth: truth?.buffers.get(name)?.data ?? null,
      },
      steps,
      exactRequired,
      stats,
    );
    if (p) problems.push(p);
  }
}

/** Compares an adapter's trace with the reference (core float32) and the truth (core float64). */
export function compareTraces(
  label: string,
  got: Trace,
  core32: Trace,
  truth: Trace,
  groupOf: Map<string, number>,
  exactRequired: boolean,
  stats: AdapterStats,
): string[] {
  const problems: string[] = [];
  if (got.exports.length !== core32.exports.length)
    problems.push(`${label}: ${got.exports.length} exports, core/float32 made ${core32.exports.length}`);
  got.exports.forEach((bytes, i) => {
    if (i >= core32.exports.length) return;
    compareState(
      `${label}, export #${i}`,
      bytes,
      core32.exports[i]!,
      truth.exports[i] ?? null,
      core32.exportHyper?.[i],
      core32.exportSteps[i]!,
      exactRequired,
      stats,
      problems,
    );
  });
  // The awaited run reads at every export and at the end; the unawaited one only at the end.
  const checkpoints =
    got.checkpoints.length === core32.checkpoints.length
      ? got.checkpoints.map((c, i) => [c, i] as const)
      : [[got.checkpoints.at(-1)!, core32.checkpoints.length - 1] as const];
  for (const [c, i] of checkpoints) {
    const ref = core32.checkpoints[i]!;
    compareReading(
      `${label}, ${ref.at}`,
      c.reading,
      ref.reading,
      truth.checkpoints[i]?.reading ?? null,
      groupOf,
      ref.hyper,
      ref.steps,
      exactRequired,
      stats,
      problems,
    );
  }
  return problems;
}

/** The unawaited run against the awaited one on the same adapter: the same exports and end state, bit for bit. */
export function compareOrderings(label: string, unawaited: Trace, awaited: Trace): string[] {
  const problems: string[] = [];
  if (unawaited.exports.length !== awaited.exports.length)
    problems.push(
      `${label}: ${unawaited.exports.length} exports, the awaited run made ${awaited.exports.length}`,
    );
  unawaited.exports.forEach((bytes, i) => {
    const other = awaited.exports[i];
    if (!other) return;
    const a = decodeState(bytes);
    const b = decodeState(other);
    if (JSON.stringify(a.groups) !== JSON.stringify(b.groups))
      problems.push(
        `${label}, export #${i}: groups ${JSON.stringify(a.groups)}, awaited run ${JSON.stringify(b.groups)}`,
      );
    const keys = (s: OptimizerState) => [...s.buffers.keys()].sort().join(',');
    if (keys(a) !== keys(b))
      problems.push(`${label}, export #${i}: buffers ${keys(a)}, awaited run ${keys(b)}`);
    for (const [name, buf] of b.buffers) {
      const mine = a.buffers.get(name);
      if (mine && !sameBits(mine.data, buf.data))
        problems.push(`${label}, export #${i}: buffer ${name} differs from the awaited run`);
    }
  });
  const end = unawaited.checkpoints.at(-1)!.reading;
  const ref = awaited.checkpoints.at(-1)!.reading;
  for (const [name, want] of ref.params) {
    const got = end.params.get(name);
    if (!got || !sameBits(got, want))
      problems.push(`${label}, end: parameter ${name} differs from the awaited run`);
    const wb = ref.buffers.get(name) ?? null;
    const gb = end.buffers.get(name) ?? null;
    if ((wb === null) !== (gb === null) || (wb && gb && !sameBits(gb, wb)))
      problems.push(`${label}, end: buffer of ${name} differs from the awaited run`);
  }
  return problems;
}
