/**
 * The side-by-side throughput report: every adapter and backend at 16,777,216 float32 parameters,
 * each beside its framework's own baseline, and the MNIST MLP's fused train step in steps per
 * second on ONNX Runtime and tfjs (train-step.ts). Runs each section in a child process, prints the
 * tables and targets, writes reports/throughput.{json,md,svg}.
 *
 *   npm run bench:side-by-side -w @accsgd/evidence
 *   npm run bench:side-by-side -w @accsgd/evidence -- --repeats 9 --sections core,torch:1,torch:2
 *   npm run bench:side-by-side -w @accsgd/evidence -- --render reports/throughput.json   # re-renders md/svg and the JSON's targets, measures nothing
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Table from 'cli-table3';
import { throughputPlot } from './plot.js';
import {
  bandwidthLines,
  COLUMNS,
  cells,
  type Environment,
  markdown,
  TRAIN_STEP_COLUMNS,
  targetCells,
  trainStepCells,
  trainStepSummary,
} from './report.js';
import { crossTargets } from './targets.js';
import { LAYOUTS, MANY, RESULT_MARKER, type SectionResult } from './types.js';

const here = dirname(fileURLToPath(import.meta.url));
const packageRoot = resolve(here, '..', '..');
const ALL = [
  'core',
  'torch:1',
  'torch:2',
  'onnx',
  'many',
  'tfjs:cpu',
  'tfjs:wasm',
  'tfjs:webgpu',
  'webgpu-kernel',
  'train-step',
  'conv-train-step',
];

const { values } = parseArgs({
  options: {
    repeats: { type: 'string', default: '5' },
    sections: { type: 'string', default: ALL.join(',') },
    out: { type: 'string' },
    timeout: { type: 'string', default: '900' },
    render: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});
if (values.help) {
  process.stdout.write(
    `Usage: bench:side-by-side [--repeats N] [--sections ${ALL.join(',')}] [--out DIR] [--timeout SECONDS] [--render JSON]\n`,
  );
  process.exit(0);
}
const repeats = Number(values.repeats);
if (!Number.isInteger(repeats) || repeats < 1) throw new Error(`--repeats must be a positive integer`);
const wanted = values.sections.split(',').map((s) => s.trim());
for (const s of wanted)
  if (!ALL.includes(s)) throw new Error(`unknown section ${s} (known: ${ALL.join(', ')})`);
const timeoutMs = Number(values.timeout) * 1000;
const outDir = resolve(values.out ?? join(packageRoot, 'reports'));

/** Runs one section in a child process; its output goes to stderr, its result comes back. */
function runSection(section: string): Promise<SectionResult> {
  return new Promise((done) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(here, 'section.ts'), section, String(repeats)],
      { cwd: packageRoot, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk;
    });
    child.stderr.on('data', (chunk: Buffer) => process.stderr.write(chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = stdout.split('\n').find((l) => l.startsWith(RESULT_MARKER));
      for (const l of stdout.split('\n'))
        if (l && !l.startsWith(RESULT_MARKER)) process.stderr.write(`  ${l}\n`);
      if (line) done(JSON.parse(line.slice(RESULT_MARKER.length)) as SectionResult);
      else
        done({
          section,
          rows: [],
          skipped: `failed (${signal === 'SIGKILL' ? `killed after ${values.timeout} s` : `exit ${code ?? signal}`}; its output is above)`,
        });
    });
  });
}

let sections: SectionResult[];
let env: Environment;
if (values.render) {
  // Re-render the Markdown and the chart from a report's JSON (targets recomputed), measuring nothing.
  const saved = JSON.parse(readFileSync(values.render, 'utf8')) as {
    environment: Environment;
    sections: SectionResult[];
  };
  sections = saved.sections;
  env = saved.environment;
} else {
  const start = performance.now();
  const loadBefore = loadavg();
  sections = [];
  for (const section of wanted) {
    const t0 = performance.now();
    process.stderr.write(`[${section}] running...\n`);
    const result = await runSection(section);
    sections.push(result);
    process.stderr.write(
      `[${section}] ${result.skipped ? `skipped: ${result.skipped}` : `${result.rows.length + (result.trainStep?.rows.length ?? 0)} rows`} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
    );
  }
  const args = process.argv.slice(2);
  env = {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    command: `npm run bench:side-by-side -w @accsgd/evidence${args.length ? ` -- ${args.join(' ')}` : ''}`,
    repeats,
    wallSeconds: (performance.now() - start) / 1000,
    node: process.version,
    cpus: `${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? '?'})`,
    cpuCount: cpus().length,
    loadBefore,
    loadAfter: loadavg(),
  };
}
const { wallSeconds, loadBefore, loadAfter } = env;
const rows = sections.flatMap((s) => s.rows);
const targets = crossTargets(
  rows,
  LAYOUTS.map((l) => l.label),
);

mkdirSync(outDir, { recursive: true });
const plotFile = 'throughput.svg';
const trainStep = sections.find((s) => s.trainStep)?.trainStep;
// The figure is of the 16.7M-parameter layouts; the many-parameters rows (a millisecond or so
// each, other row labels) are in the tables only.
const plotted = rows.filter((r) => LAYOUTS.some((l) => l.label === r.layout));
writeFileSync(join(outDir, plotFile), throughputPlot(plotted, trainStep?.rows));
writeFileSync(join(outDir, 'throughput.md'), markdown(sections, targets, env, plotFile));
// Also on --render, so that the JSON's targets match the Markdown's.
writeFileSync(
  join(outDir, 'throughput.json'),
  `${JSON.stringify({ environment: env, sections, targets }, null, 1)}\n`,
);

const out = process.stdout;
out.write(
  `\nOne optimizer step over 16,777,216 float32 parameters: median of ${env.repeats} (first step not timed), wall ${wallSeconds.toFixed(0)} s, load average ${loadBefore.map((x) => x.toFixed(2)).join(' ')} -> ${loadAfter.map((x) => x.toFixed(2)).join(' ')} on ${env.cpus}\n`,
);
for (const layout of [...LAYOUTS, MANY]) {
  const table = new Table({ head: ['layout', ...COLUMNS], style: { head: [], border: [] } });
  for (const r of rows.filter((x) => x.layout === layout.label)) table.push([r.layout, ...cells(r)]);
  out.write(`${table.toString()}\n`);
}
const t = new Table({
  head: ['layout', 'target', 'value', 'verdict', 'note'],
  style: { head: [], border: [] },
});
for (const x of targets) t.push(targetCells(x));
out.write(`${t.toString()}\n`);
const bandwidths = bandwidthLines(sections);
if (bandwidths.length > 0)
  out.write(`\nEffective bandwidth on WebGPU:\n${bandwidths.map((l) => `  ${l}\n`).join('')}`);
if (trainStep) {
  out.write(`\nTrain step: ${trainStepSummary(trainStep)}\n`);
  const table = new Table({ head: [...TRAIN_STEP_COLUMNS], style: { head: [], border: [] } });
  for (const r of trainStep.rows) table.push(trainStepCells(r));
  if (trainStep.rows.length > 0) out.write(`${table.toString()}\n`);
  for (const s of trainStep.skipped) out.write(`train-step: ${s.runtime} skipped (${s.reason})\n`);
}
const convTrainStep = sections.find((s) => s.convTrainStep)?.convTrainStep;
if (convTrainStep) {
  out.write(`\nConv net train step: ${trainStepSummary(convTrainStep)}\n`);
  const table = new Table({ head: [...TRAIN_STEP_COLUMNS], style: { head: [], border: [] } });
  for (const r of convTrainStep.rows) table.push(trainStepCells(r));
  if (convTrainStep.rows.length > 0) out.write(`${table.toString()}\n`);
  for (const s of convTrainStep.skipped) out.write(`conv-train-step: ${s.runtime} skipped (${s.reason})\n`);
}
for (const s of sections) if (s.skipped) out.write(`${s.section}: skipped (${s.skipped})\n`);
out.write(`Report: ${join(relative(process.cwd(), outDir) || '.', 'throughput.md')}\n`);
