import Table from 'cli-table3';
import { diagnose, formatDiagnosis } from './diagnose.js';
import type { CheckResult, ConformanceReport } from './runner.js';

export interface FormatOptions {
  /** The full table of every check, passing ones included, instead of one line per check family. */
  verbose?: boolean;
  /** ANSI colours (the CLI turns them on only for a TTY without NO_COLOR). Default: off. */
  color?: boolean;
  /** Say which known mistake (a mutant of the suite) the failures look like. Default: on. */
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
 * A readable report: by default one line per check family (passed and failed counts, the worst
 * error / bound), then the details of failures only, then a diagnosis when the failures match a
 * known mistake; with `verbose`, the full table of every check instead of the family lines.
 */
export function formatReport(report: ConformanceReport, options: FormatOptions = {}): string {
  const c = paint(options.color);
  const out: string[] = [];
  const failures = report.results.filter((r) => !r.passed);
  const skipped = report.results.filter((r) => r.skipped).length;
  const headline = `${report.adapter} (${report.dtype}): ${report.results.length - failures.length} passed, ${failures.length} failed${skipped ? ` (${skipped} skipped: not applicable)` : ''}`;

  out.push(c.bold(`${report.adapter} (${report.dtype})`));
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
    out.push('', c.bold('failures:'));
    for (const r of failures) {
      const x = ratio(r);
      const numbers =
        r.maxError !== undefined && r.bound !== undefined
          ? ` (error ${fmt(r.maxError)}, bound ${fmt(r.bound)}${x === undefined ? '' : `, ${short(x)}x the bound`})`
          : '';
      out.push(`  ${c.red('FAIL')} ${r.check}${numbers}`, `       ${r.detail}`);
    }
  }

  if (options.diagnosis !== false) {
    const diagnosis = formatDiagnosis(diagnose(report));
    if (diagnosis) out.push('', c.yellow(diagnosis));
  }
  out.push(failures.length ? c.red(headline) : c.green(headline));
  return out.join('\n');
}
