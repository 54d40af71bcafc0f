#!/usr/bin/env node
import type { ConformanceAdapter } from '@accsgd/core';
import { Command, InvalidArgumentError } from 'commander';
import { loadAdapter } from './load-adapter.js';
import { formatReport } from './report.js';
import { type ConformanceReport, runConformance, runPortability } from './runner.js';

function json(value: string): Record<string, unknown> {
  try {
    const parsed = JSON.parse(value) as unknown;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new Error('not an object');
    return parsed as Record<string, unknown>;
  } catch (error) {
    throw new InvalidArgumentError(
      `expected a JSON object, e.g. '{"dtype":"float32"}' (${(error as Error).message})`,
    );
  }
}

const program = new Command()
  .name('accsgd-conformance')
  .description(
    'Checks an AccSGD adapter against the @accsgd/core spec: golden trajectories, resume, state file, bad input.',
  )
  .requiredOption(
    '--adapter <module>',
    'file path (relative to the current directory) or package specifier of the adapter module',
  )
  .option('--export <name>', 'name of the factory export', 'conformanceAdapter')
  .option('--options <json>', 'JSON object passed to the factory', json)
  .option('--browser', 'run the adapter in headless Chromium (bundled with esbuild, served on 127.0.0.1)')
  .option(
    '--portability <module>',
    'also check that state exported by the adapter continues in this second adapter (and back)',
  )
  .option('--portability-options <json>', "JSON object passed to the second adapter's factory", json)
  .option('--only <text...>', 'only checks whose name contains one of these strings')
  .option('--json', 'print the report(s) as JSON instead of a table')
  .option('--verbose', 'print the full table of every check instead of one line per check family')
  .addHelpText(
    'after',
    `
By default: where the adapter first left the truth (check, step, parameter or buffer, by how much),
one line per check family (golden, resume, in use, state file, bad input, portability) with
passed/failed counts and the worst error/bound, the failures (those with one cause as one entry),
and a diagnosis: the known mistake (a mutant of the suite) the failures match tightly, or else what
they show. Colours only on a terminal, and never when NO_COLOR is set.`,
  );

program.parse();
const options = program.opts<{
  adapter: string;
  export: string;
  options?: Record<string, unknown>;
  browser?: boolean;
  portability?: string;
  portabilityOptions?: Record<string, unknown>;
  only?: string[];
  json?: boolean;
  verbose?: boolean;
}>();

const disposers: (() => Promise<void>)[] = [];
async function open(
  module: string,
  exportName: string,
  factoryOptions?: Record<string, unknown>,
): Promise<ConformanceAdapter> {
  if (!options.browser) return loadAdapter(module, exportName, factoryOptions);
  const { openBrowserAdapter } = await import('./browser/index.js');
  const adapter = await openBrowserAdapter({ module, exportName, options: factoryOptions });
  disposers.push(() => adapter.dispose());
  if (!options.json) console.error(`browser: ${adapter.environment}`);
  return adapter;
}

let exitCode = 0;
try {
  const adapter = await open(options.adapter, options.export, options.options);
  const reports: ConformanceReport[] = [await runConformance(adapter, { only: options.only })];
  if (options.portability) {
    const other = await open(options.portability, 'conformanceAdapter', options.portabilityOptions);
    reports.push(await runPortability(adapter, other, { only: options.only }));
    reports.push(await runPortability(other, adapter, { only: options.only }));
  }
  if (options.json) console.log(JSON.stringify(reports, null, 2));
  else {
    // No ANSI colours when NO_COLOR is set (to anything non-empty) or stdout is not a terminal.
    const color = Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
    for (const report of reports) console.log(formatReport(report, { verbose: options.verbose, color }));
  }
  exitCode = reports.every((r) => r.passed) ? 0 : 1;
} catch (error) {
  console.error(`accsgd-conformance: ${(error as Error).message ?? error}`);
  exitCode = 1;
} finally {
  for (const dispose of disposers) await dispose().catch(() => {});
}
process.exit(exitCode);
