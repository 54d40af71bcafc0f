import Table from 'cli-table3';
import { diagnose, formatDiagnosis } from './diagnose.js';
import type { CheckResult, ConformanceReport } from './runner.js';

export interface FormatOptions {
  /** The full table of every check, passing ones included, instead of one line per check family. */
  verbose?: boolean;
  /** ANSI colours (the CLI turns them on only for a TTY without NO_COLOR). Default: off. */
  color?: boolean;
  /** Say which known mistake (a mutant of the suite) the failures match, or what they show. Default: on. */
  diagnosis?: boolean;
}

/** The families of checks, in report order: the part of a check's name before the first colon. */
export const CHECK_FAMILIES = [
  'golden',
  'resume',
  'in use',
  'state file',
  'bad input',
  'portability',
] as const;

const fmt = (x: number | undefined) => (x === undefined ? '' : x.toExponential(2));
const short = (x: number) => (x === 0 ? '0' : x.toPrecision(2));

function family(check: string): string {
  const i = check.indexOf(':');
  return i < 0 ? check : check.slice(0, i);
}

/** error / bound, for checks that measure. */
function ratio(r: CheckResult): number | undefined {
  return r.maxError !== undefined && r.bound !== undefined && r.bound > 0 ? r.maxError / r.bound : undefined;
}

function paint(color: boolean | undefined) {
  const wrap = (code: number) => (s: string) => (color ? `\u001b[${code}m${s}\u001b[0m` : s);
  return { red: wrap(31), green: wrap(32), yellow: wrap(33), bold: wrap(1), dim: wrap(2) };
}

/**
 * A readable report: the first divergence (firstDivergence), then by default one line per check
 * family (passed and failed counts, the worst error / bound), then the details of failures only,
 * those with one cause as one entry (groupFailures), then a diagnosis: a known mistake when the
 * failures match one tightly, else what they show (diagnose.ts); with `verbose`, the full table of
 * every check instead of the family lines and failure details.
 */
export function formatReport(report: ConformanceReport, options: FormatOptions = {}): string {
  const c = paint(options.color);
  const out: string[] = [];
  const failures = report.results.filter((r) => !r.passed);
  const skipped = report.results.filter((r) => r.skipped).length;
  const headline = `${report.adapter} (${report.dtype}): ${report.results.length - failures.length} passed, ${failures.length} failed${skipped ? ` (${skipped} skipped: not applicable)` : ''}`;

  out.push(c.bold(`${report.adapter} (${report.dtype})`));
  const first = firstDivergence(report);
  if (first) out.push(c.red(first));
  if (options.verbose) {
    const table = new Table({
      head: ['check', 'result', 'max rel. error', 'bound', 'ms', 'detail'],
      colWidths: [44, 8, 15, 11, 8, 70],
      wordWrap: true,
      style: { head: [], border: [] },
    });
    for (const r of report.results) {
      const result = r.passed ? (r.skipped ? c.yellow('skip') : c.green('pass')) : c.red('FAIL');
      table.push([r.check, result, fmt(r.maxError), fmt(r.bound), r.ms.toFixed(0), r.detail]);
    }
    out.push(table.toString());
  } else {
    const families = [...new Set(report.results.map((r) => family(r.check)))].sort(
      (a, b) =>
        (CHECK_FAMILIES.indexOf(a as never) + 1 || 99) - (CHECK_FAMILIES.indexOf(b as never) + 1 || 99),
    );
    const width = Math.max(...families.map((f) => f.length));
    for (const f of families) {
      const rows = report.results.filter((r) => family(r.check) === f);
      const failed = rows.filter((r) => !r.passed).length;
      const skippedHere = rows.filter((r) => r.skipped).length;
      const ratios = rows.map(ratio).filter((x): x is number => x !== undefined);
      const worst = ratios.length ? Math.max(...ratios) : undefined;
      const counts = `${String(rows.length - failed).padStart(3)} passed, ${String(failed).padStart(2)} failed`;
      const line = [
        f.padEnd(width),
        failed ? c.red(counts) : c.green(counts),
        worst === undefined ? '' : `worst error/bound ${short(worst)}`,
        skippedHere ? `(${skippedHere} skipped)` : '',
      ]
        .filter(Boolean)
        .join('  ');
      out.push(`  ${line}`);
    }
  }

  if (failures.length && !options.verbose) {
    const groups = groupFailures(failures);
    out.push(
      '',
      c.bold(
        groups.length === failures.length
          ? 'failures:'
          : `failures (${plural(failures.length, 'check')}, ${plural(groups.length, 'distinct failure')}):`,
      ),
    );
    for (const [r, ...same] of groups) {
      const x = ratio(r!);
      const numbers =
        r!.maxError !== undefined && r!.bound !== undefined
          ? ` (error ${fmt(r!.maxError)}, bound ${fmt(r!.bound)}${x === undefined ? '' : `, ${short(x)}x the bound`})`
          : '';
      out.push(`  ${c.red('FAIL')} ${r!.check}${numbers}`, `       ${r!.detail}`);
      if (same.length)
        out.push(
          `       the same failure (same step, tensor and error) in ${plural(same.length, 'more check')}: ${summarize(same)}`,
        );
    }
  }

  if (options.diagnosis !== false) {
    const diagnosis = formatDiagnosis(diagnose(report), report);
    if (diagnosis) out.push('', c.yellow(diagnosis));
  }
  out.push(failures.length ? c.red(headline) : c.green(headline));
  return out.join('\n');
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** Failures with one cause: the same trajectory leaving its bound at the same step with the same error. */
function causeOf(r: CheckResult): string | undefined {
  const d = r.divergence;
  return d && `${d.case}|${d.step}|${d.tensor}|${d.quantity}|${d.error}|${d.bound}`;
}

/**
 * Failures grouped by cause, in report order: a resume check and the bad-input checks replay a
 * golden trajectory, so one mistake in it fails them all with the same numbers.
 */
export function groupFailures(failures: CheckResult[]): CheckResult[][] {
  const groups: CheckResult[][] = [];
  const byCause = new Map<string, CheckResult[]>();
  for (const r of failures) {
    const cause = causeOf(r);
    const group = cause === undefined ? undefined : byCause.get(cause);
    if (group) group.push(r);
    else {
      const fresh = [r];
      groups.push(fresh);
      if (cause !== undefined) byCause.set(cause, fresh);
    }
  }
  return groups;
}

/** Check names, one family's many collapsed to a count ("11 bad input checks"). */
function summarize(results: CheckResult[]): string {
  const byFamily = new Map<string, string[]>();
  for (const r of results) byFamily.set(family(r.check), [...(byFamily.get(family(r.check)) ?? []), r.check]);
  return [...byFamily]
    .map(([f, names]) => (names.length <= 2 ? names.join(', ') : `${names.length} ${f} checks`))
    .join(', ');
}

/**
 * One line naming where the adapter first left the truth: among the failed trajectories the one that
 * diverged at the earliest step (the first in report order on a tie), its parameter or buffer, and
 * by how much; for a report whose failures are all rule checks, the first of them.
 */
export function firstDivergence(report: ConformanceReport): string | undefined {
  const failures = report.results.filter((r) => !r.passed);
  if (!failures.length) return undefined;
  let first: CheckResult | undefined;
  for (const r of failures)
    if (r.divergence && (!first || r.divergence.step < first.divergence!.step)) first = r;
  if (!first) return `first failure: ${failures[0]!.check}: ${failures[0]!.detail}`;
  const d = first.divergence!;
  const what = d.quantity === 'param' ? `param "${d.tensor}"` : `buffer of "${d.tensor}"`;
  const by =
    d.error === undefined
      ? d.quantity === 'buffer'
        ? 'is present or absent wrongly'
        : 'is missing'
      : `left its bound: error ${fmt(d.error)}, ${short(d.error / d.bound!)}x the bound ${fmt(d.bound)}`;
  const others = d.outOfBound
    .slice(1)
    .map((o) => (o.quantity === 'param' ? `param "${o.tensor}"` : `buffer of "${o.tensor}"`));
  const where = first.check.endsWith(`: ${d.case}`) ? first.check : `${first.check} (case "${d.case}")`;
  return `first divergence: ${where}, step ${d.step}, ${what} ${by}${others.length ? `; also out of bound at that step: ${others.join(', ')}` : ''}`;
}
