import Table from 'cli-table3';
import type { ConformanceReport } from './runner.js';

const fmt = (x: number | undefined) => (x === undefined ? '' : x.toExponential(2));

/** A readable per-check table. */
export function formatReport(report: ConformanceReport, options: { verbose?: boolean } = {}): string {
  const table = new Table({
    head: ['check', 'result', 'max rel. error', 'bound', 'ms', 'detail'],
    colWidths: [44, 8, 15, 11, 8, 70],
    wordWrap: true,
  });
  for (const r of report.results) {
    const detail =
      r.passed && !options.verbose ? r.detail.slice(0, 66) + (r.detail.length > 66 ? '…' : '') : r.detail;
    table.push([r.check, r.passed ? 'pass' : 'FAIL', fmt(r.maxError), fmt(r.bound), r.ms.toFixed(0), detail]);
  }
  const failed = report.results.filter((r) => !r.passed).length;
  const summary = `${report.adapter} (${report.dtype}): ${report.results.length - failed} passed, ${failed} failed`;
  return `${table.toString()}\n${summary}`;
}
