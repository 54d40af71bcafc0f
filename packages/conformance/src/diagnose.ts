import { MUTANT_DESCRIPTIONS } from './mutants/index.js';
import { MUTANT_SIGNATURES, SIGNATURE_CHECKS } from './mutants/signatures.js';
import type { ConformanceReport } from './runner.js';

/** One failed check of a signature: its relative error and bound when the check measures. */
export interface SignatureFailure {
  error?: number;
  bound?: number;
}

/** Which checks a report failed, with the error each measured (recorded per mutant). */
export type FailureSignature = Record<string, SignatureFailure>;

/** The failures of a report as a signature (errors rounded to 3 significant digits). */
export function failureSignature(report: ConformanceReport): FailureSignature {
  const round = (x: number | undefined) => (x === undefined ? undefined : Number(x.toPrecision(3)));
  const out: FailureSignature = {};
  for (const r of report.results) {
    if (r.passed) continue;
    const failure: SignatureFailure = {};
    if (r.maxError !== undefined && Number.isFinite(r.maxError)) failure.error = round(r.maxError);
    if (r.bound !== undefined && Number.isFinite(r.bound)) failure.bound = round(r.bound);
    out[r.check] = failure;
  }
  return out;
}

export interface Diagnosis {
  /** The mutant (a known mistake the suite owns) whose failures the report's resemble. */
  mutant: keyof typeof MUTANT_DESCRIPTIONS;
  /** What that mistake is, from MUTANT_DESCRIPTIONS. */
  description: string;
  /** 0 = the same checks fail with the same errors; up to DIAGNOSIS_THRESHOLD. */
  distance: number;
  /** Failed checks the report and the mutant have in common, and how many either fails. */
  shared: number;
  failing: number;
}

/** A mutant is named only when the report's failures are at most this far from its signature. */
export const DIAGNOSIS_THRESHOLD = 0.25;
/** Candidates within this distance of the best are named too ("or ..."). */
const RUNNER_UP_MARGIN = 0.02;

/**
 * The distance between a report's failures and a mutant's recorded ones, over the checks the report
 * ran (not skipped) that were in the suite when the signatures were recorded: for each check that
 * either fails, 1 when only one of them fails it; when both do, 0 for rule checks and for numeric
 * ones |log10 of the ratio of the two errors| / 4, at most 0.5 (errors, not error/bound ratios: a
 * mistake gives the same error in float32 and float64, while the bounds differ by 1e9); one numeric
 * and one rule failure cost 0.5. The sum is divided by the number of those checks: 0 is an exact
 * match, 1 nothing in common.
 */
export function signatureDistance(
  report: ConformanceReport,
  signature: FailureSignature,
): { distance: number; shared: number; failing: number } {
  const recorded = new Set(SIGNATURE_CHECKS);
  const mine = failureSignature(report);
  let cost = 0;
  let shared = 0;
  let failing = 0;
  for (const r of report.results) {
    if (r.skipped || !recorded.has(r.check)) continue;
    const a = mine[r.check];
    const b = signature[r.check];
    if (!a && !b) continue;
    failing++;
    if (!a || !b) {
      cost += 1;
      continue;
    }
    shared++;
    if (a.error === undefined && b.error === undefined) continue;
    if (a.error === undefined || b.error === undefined || a.error <= 0 || b.error <= 0) {
      cost += 0.5;
      continue;
    }
    cost += Math.min(0.5, Math.abs(Math.log10(a.error / b.error)) / 4);
  }
  return { distance: failing === 0 ? 1 : cost / failing, shared, failing };
}

/**
 * The known mistakes (the suite's mutants, src/mutants) whose recorded failure signatures the
 * report's failures match, best first: empty when the report passed or resembles none. Signatures
 * are recorded by running each mutant through the whole suite (`npm run signatures`).
 */
export function diagnose(report: ConformanceReport): Diagnosis[] {
  if (report.results.every((r) => r.passed)) return [];
  const candidates = Object.entries(MUTANT_SIGNATURES)
    .map(([mutant, signature]) => ({
      mutant: mutant as keyof typeof MUTANT_DESCRIPTIONS,
      description: MUTANT_DESCRIPTIONS[mutant as keyof typeof MUTANT_DESCRIPTIONS],
      ...signatureDistance(report, signature),
    }))
    .filter((c) => c.description !== undefined && c.distance <= DIAGNOSIS_THRESHOLD)
    .sort((a, b) => a.distance - b.distance);
  const best = candidates[0];
  if (!best) return [];
  return candidates.filter((c) => c.distance <= best.distance + RUNNER_UP_MARGIN);
}

/** The diagnosis as sentences for a person, or '' when there is none. */
export function formatDiagnosis(diagnoses: Diagnosis[]): string {
  const [best, ...others] = diagnoses;
  if (!best) return '';
  const evidence = (d: Diagnosis) =>
    d.shared === d.failing
      ? `the suite's mutant fails the same ${plural(d.failing, 'check')}, with ${d.distance === 0 ? 'the same errors to 3 digits' : `errors within a factor ${(10 ** (4 * d.distance)).toPrecision(2)} on average`}`
      : `the suite's mutant fails ${d.shared} of the same checks, ${d.failing - d.shared} differ; distance ${d.distance.toPrecision(2)}, diagnosed up to ${DIAGNOSIS_THRESHOLD}`;
  const lines = [
    `diagnosis: this looks like the known mistake "${best.mutant}": ${best.description}`,
    `  (${evidence(best)})`,
  ];
  for (const d of others) lines.push(`  or like "${d.mutant}": ${d.description} (${evidence(d)})`);
  return lines.join('\n');
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
