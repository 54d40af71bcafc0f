import { MUTANT_DESCRIPTIONS } from './mutants/index.js';
import { MUTANT_SIGNATURES, SIGNATURE_CHECKS } from './mutants/signatures.js';
import type { CheckResult, ConformanceReport } from './runner.js';

/** One failed check of a signature: its relative error and bound when the check measures. */
export interface SignatureFailure {
  error?: number;
  bound?: number;
  /** The step of the golden trajectory at which it left its bound. */
  step?: number;
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
    if (r.divergence) failure.step = r.divergence.step;
    out[r.check] = failure;
  }
  return out;
}

/** How closely a report's failures resemble a mutant's recorded ones. */
export interface SignatureMatch {
  /** 0 = the same checks fail with the same errors; 1 = nothing in common (see signatureDistance). */
  distance: number;
  /** Failed checks the report and the mutant have in common, and how many either fails. */
  shared: number;
  failing: number;
  /** Shared failures that left their bound at a different step. */
  otherSteps: number;
  /**
   * Over the shared numeric failures, the ratio of the larger error to the smaller: the worst, and
   * the geometric mean. 1 when there are none.
   */
  worstFactor: number;
  meanFactor: number;
}

export interface Diagnosis extends SignatureMatch {
  /** The mutant (a known mistake the suite owns) whose failures the report's match. */
  mutant: keyof typeof MUTANT_DESCRIPTIONS;
  /** What that mistake is, from MUTANT_DESCRIPTIONS. */
  description: string;
}

/**
 * A known mistake is named only for a tight match: the same checks fail, at the same steps, and
 * every shared error is within this factor of the mutant's. A different mistake that also breaks
 * the first step fails the same checks at the same steps; only the errors tell them apart
 * (`beta-for-alpha` against `skips-first-buffer-update`: a factor 2.7 on average), so a loose match
 * would send an author to the wrong formula. Two float32 implementations of one mistake agree to
 * far better than this (the suite's mutants reproduce their signatures to 3 digits).
 */
export const DIAGNOSIS_MAX_FACTOR = 1.25;

/**
 * How a report's failures compare with a mutant's recorded ones, over the checks the report ran (not
 * skipped) that were in the suite when the signatures were recorded. `distance`: for each check that
 * either fails, 1 when only one of them fails it; when both do, 0 for rule checks and for numeric
 * ones |log10 of the ratio of the two errors| / 4, at most 0.5 (errors, not error/bound ratios: a
 * mistake gives the same error in float32 and float64, while the bounds differ by 1e9); one numeric
 * and one rule failure cost 0.5. The sum is divided by the number of those checks.
 */
export function signatureDistance(report: ConformanceReport, signature: FailureSignature): SignatureMatch {
  const recorded = new Set(SIGNATURE_CHECKS);
  const mine = failureSignature(report);
  let cost = 0;
  let shared = 0;
  let failing = 0;
  let otherSteps = 0;
  let worstFactor = 1;
  let logFactors = 0;
  let numeric = 0;
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
    if (a.step !== b.step) otherSteps++;
    if (a.error === undefined && b.error === undefined) continue;
    if (a.error === undefined || b.error === undefined || a.error <= 0 || b.error <= 0) {
      cost += 0.5;
      worstFactor = Number.POSITIVE_INFINITY;
      continue;
    }
    const log = Math.abs(Math.log10(a.error / b.error));
    cost += Math.min(0.5, log / 4);
    worstFactor = Math.max(worstFactor, 10 ** log);
    logFactors += log;
    numeric++;
  }
  return {
    distance: failing === 0 ? 1 : cost / failing,
    shared,
    failing,
    otherSteps,
    worstFactor,
    meanFactor: numeric === 0 ? 1 : 10 ** (logFactors / numeric),
  };
}

/** Whether a match is tight enough to name the mistake (see DIAGNOSIS_MAX_FACTOR). */
export function isTightMatch(m: SignatureMatch): boolean {
  return (
    m.failing > 0 && m.shared === m.failing && m.otherSteps === 0 && m.worstFactor <= DIAGNOSIS_MAX_FACTOR
  );
}

/**
 * The known mistakes (the suite's mutants, src/mutants) whose recorded failure signatures the
 * report's failures match tightly (isTightMatch), best first: empty when the report passed or no
 * known mistake matches tightly. Signatures are recorded by running each mutant through the whole
 * suite (`npm run signatures`); `signatures` replaces them (e.g. to leave one mistake out).
 */
export function diagnose(
  report: ConformanceReport,
  signatures: Record<string, FailureSignature> = MUTANT_SIGNATURES,
): Diagnosis[] {
  if (report.results.every((r) => r.passed)) return [];
  return Object.entries(signatures)
    .map(([mutant, signature]) => ({
      mutant: mutant as keyof typeof MUTANT_DESCRIPTIONS,
      description: MUTANT_DESCRIPTIONS[mutant as keyof typeof MUTANT_DESCRIPTIONS],
      ...signatureDistance(report, signature),
    }))
    .filter((c) => c.description !== undefined && isTightMatch(c))
    .sort((a, b) => a.distance - b.distance);
}

const GOLDEN = 'golden: ';

/**
 * What the failures themselves show, for when no known mistake matches: at which steps the
 * trajectories leave their bounds, whether the buffer or the parameter does, and which golden cases
 * fail. Sentences for a person; empty when the report passed.
 */
export function describeEvidence(report: ConformanceReport): string[] {
  const failures = report.results.filter((r) => !r.passed);
  if (!failures.length) return [];
  const lines: string[] = [];
  const located = failures.filter(
    (r): r is CheckResult & { divergence: NonNullable<CheckResult['divergence']> } => Boolean(r.divergence),
  );
  if (located.length) {
    const steps = located.map((r) => r.divergence.step);
    const first = Math.min(...steps);
    const trajectories = plural(located.length, 'failing trajectory', 'failing trajectories');
    const every =
      located.length === failures.length ? 'every failure is' : 'every failing trajectory leaves its bound';
    if (steps.every((s) => s === 1))
      lines.push(`${every} at step 1 (${trajectories}): the first step's buffer or parameter update`);
    else if (steps.every((s) => s === first)) lines.push(`${every} at step ${first} (${trajectories})`);
    else
      lines.push(
        `the ${trajectories} leave their bounds between steps ${first} and ${Math.max(...steps)}; the earliest at step ${first} (${located.find((r) => r.divergence.step === first)!.check})`,
      );
    let both = 0;
    let paramOnly = 0;
    let bufferOnly = 0;
    for (const { divergence: d } of located) {
      const param = d.outOfBound.some((o) => o.tensor === d.tensor && o.quantity === 'param');
      const buffer = d.outOfBound.some((o) => o.tensor === d.tensor && o.quantity === 'buffer');
      if (param && buffer) both++;
      else if (param) paramOnly++;
      else bufferOnly++;
    }
    const parts = [
      both && `the parameter and its momentum buffer both leave their bounds in ${both}`,
      paramOnly && `only the parameter (its buffer still within bound: the parameter update) in ${paramOnly}`,
      bufferOnly && `only the momentum buffer (the parameter still within bound) in ${bufferOnly}`,
    ].filter(Boolean);
    lines.push(`at the first step out of bound, ${parts.join('; ')}`);
  }
  const golden = report.results.filter((r) => r.check.startsWith(GOLDEN) && !r.skipped);
  const goldenFailed = golden.filter((r) => !r.passed);
  if (goldenFailed.length) {
    const names = (rs: CheckResult[]) => rs.map((r) => r.check.slice(GOLDEN.length)).join(', ');
    const passing = golden.filter((r) => r.passed);
    lines.push(
      passing.length === 0
        ? `every golden trajectory fails (${golden.length})`
        : passing.length <= goldenFailed.length
          ? `${goldenFailed.length} of ${golden.length} golden trajectories fail; these pass: ${names(passing)}`
          : `${goldenFailed.length} of ${golden.length} golden trajectories fail: ${names(goldenFailed)}`,
    );
  } else if (located.length === 0) {
    lines.push(
      `every golden trajectory passes; what fails is ${plural(failures.length, 'rule check')} (details above)`,
    );
  }
  return lines;
}

/** The diagnosis as sentences for a person, or '' when the report passed. */
export function formatDiagnosis(diagnoses: Diagnosis[], report?: ConformanceReport): string {
  const located = report?.results.some((r) => r.divergence) ?? true;
  const [best, ...others] = diagnoses;
  if (!best) {
    const evidence = report ? describeEvidence(report) : [];
    if (!evidence.length) return '';
    return [
      `diagnosis: no known mistake matches closely (same failing checks at the same steps, errors within a factor ${DIAGNOSIS_MAX_FACTOR}); what the failures show:`,
      ...evidence.map((l) => `  - ${l}`),
    ].join('\n');
  }
  const evidence = (d: Diagnosis) =>
    `the suite's mutant fails the same ${plural(d.failing, 'check')}${located ? ' at the same steps' : ''}, with ${d.worstFactor === 1 ? 'the same errors to 3 digits' : `errors within a factor ${d.worstFactor.toPrecision(3)} (${d.meanFactor.toPrecision(3)} on average)`}`;
  const lines = [
    `diagnosis: this matches the known mistake "${best.mutant}": ${best.description}`,
    `  (${evidence(best)})`,
  ];
  for (const d of others) lines.push(`  or "${d.mutant}": ${d.description} (${evidence(d)})`);
  return lines.join('\n');
}

const plural = (n: number, word: string, words = `${word}s`) => `${n} ${n === 1 ? word : words}`;
