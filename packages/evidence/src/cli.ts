import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { type Estimator, PRESETS, runExperiment, tasksFor } from './experiment.js';
import { METHODS } from './optimizers.js';
import { PAPER_PRESETS, paperTasks, runPaperExperiment } from './paper-experiment.js';
import { EXPECTED_SLOPES_LINE, gridVerdict, paperMarkdown } from './paper-report.js';
import { inverseRatePlot, iterationsPlot } from './plot.js';
import { markdown } from './report.js';

const here = dirname(fileURLToPath(import.meta.url));
const packageRoot = resolve(here, '..');

const { values } = parseArgs({
  options: {
    full: { type: 'boolean', default: false },
    seed: { type: 'string', default: '1' },
    estimator: { type: 'string', default: 'exact' },
    protocol: { type: 'string', default: 'ours' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});

if (values.help) {
  process.stdout.write(
    [
      'Usage: accsgd-evidence [--full] [--seed N] [--estimator exact|mc] [--protocol ours|paper] [--out DIR]',
      '  Reproduces the stochastic linear-regression experiment of Kidambi et al. (ICLR 2018).',
      '  --full        all kappas 2^4..2^12 and the fine grids (default: the quick preset)',
      '  --seed N      base seed of the Monte Carlo runs (default 1)',
      '  --estimator   exact (default): tune on the exact expected error; mc: on the seeded mean',
      "  --protocol    ours (default): iterations to 1e-4 on our grids; paper: the paper's protocol",
      '                (100 runs of 5 kappa iterations, 1/rate, its 10x10 grid) beside ours',
      '  --out DIR     report folder (default: reports/ for --full, reports/quick/ otherwise)',
      '',
    ].join('\n'),
  );
  process.exit(0);
}

const seed = Number(values.seed);
if (!Number.isInteger(seed)) throw new Error(`--seed must be an integer, got ${values.seed}`);
if (values.estimator !== 'exact' && values.estimator !== 'mc')
  throw new Error(`--estimator must be exact or mc, got ${values.estimator}`);
const estimator = values.estimator as Estimator;
const preset = values.full ? PRESETS.full : PRESETS.quick;
const outDir = resolve(values.out ?? join(packageRoot, values.full ? 'reports' : 'reports/quick'));
if (values.protocol !== 'ours' && values.protocol !== 'paper')
  throw new Error(`--protocol must be ours or paper, got ${values.protocol}`);
if (values.protocol === 'paper') {
  if (values.estimator !== 'exact') throw new Error('--estimator applies to --protocol ours only');
  runPaperProtocol();
  process.exit(0);
}

const total = tasksFor(preset).reduce((n, t) => n + t.grid.length, 0);
const bar = new cliProgress.SingleBar(
  {
    stream: process.stderr,
    format: '{bar} {percentage}% | {value}/{total} settings | {task} | {duration_formatted}',
    hideCursor: true,
  },
  cliProgress.Presets.shades_classic,
);
bar.start(total, 0, { task: '' });
let before = 0;
let current = 0;
const result = runExperiment(preset, seed, estimator, {
  onTaskStart: (task) => {
    before += current;
    current = 0;
    bar.update(before, { task: `${task.distribution} κ=2^${Math.log2(task.kappa)} ${task.method}` });
  },
  onProgress: (done) => {
    current = done;
    bar.update(before + done);
  },
});
bar.update(total, { task: 'done' });
bar.stop();

mkdirSync(outDir, { recursive: true });
const plotName = 'linear-regression.svg';
writeFileSync(join(outDir, plotName), iterationsPlot(result.cells));
const command = `npm run ${values.full ? 'report:full' : 'linear-regression'} -w @accsgd/evidence${estimator === 'mc' ? ' -- --estimator mc' : ''}`;
writeFileSync(join(outDir, 'linear-regression.md'), markdown(result, plotName, command));
writeFileSync(
  join(outDir, 'linear-regression.json'),
  `${JSON.stringify(
    {
      ...result,
      cells: result.cells.map((c) => ({
        ...c,
        iterations: finite(c.iterations),
        mcIterations: finite(c.mcIterations),
      })),
    },
    null,
    1,
  )}\n`,
);

const rel = relative(process.cwd(), outDir) || '.';
process.stdout.write(
  `\nAccSGD evidence (${preset.name} preset, ${result.seconds.toFixed(1)} s): slopes of log(iterations) vs log(kappa)\n  (${EXPECTED_SLOPES_LINE})\n`,
);
for (const d of preset.distributions) {
  const row = METHODS.map((m) => {
    const s = result.slopes.find((x) => x.distribution === d && x.method === m)!.slope;
    return `${m} ${Number.isFinite(s) ? s.toFixed(2) : 'n/a'}`;
  });
  process.stdout.write(`  ${d.padEnd(9)} ${row.join('  ')}\n`);
}
process.stdout.write(`Report: ${join(rel, 'linear-regression.md')}\n`);

function finite(n: number): number | null {
  return Number.isFinite(n) ? n : null;
}

/** --protocol paper: writes linear-regression-paper.{md,json,svg} and prints both protocols' slopes. */
function runPaperProtocol(): void {
  const paperPreset = values.full ? PAPER_PRESETS.full : PAPER_PRESETS.quick;
  const tasks = paperTasks(paperPreset);
  const settings = tasks.reduce((n, t) => n + t.settings, 0);
  const progress = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: '{bar} {percentage}% | {value}/{total} settings | {task} | {duration_formatted}',
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  progress.start(settings, 0, { task: '' });
  let finished = 0;
  const r = runPaperExperiment(paperPreset, seed, {
    onTask: (t) =>
      progress.update(finished, {
        task: `${t.distribution} κ=2^${Math.log2(t.kappa)} ${t.method} (${t.grid})`,
      }),
    onTaskDone: (t) => {
      finished += t.settings;
      progress.update(finished);
    },
  });
  progress.stop();
  // Our protocol's slopes, from its report in the same folder (npm start writes it first).
  const oursFile = join(outDir, 'linear-regression.json');
  const ours = existsSync(oursFile)
    ? (
        JSON.parse(readFileSync(oursFile, 'utf8')) as {
          slopes: { distribution: string; method: string; slope: number }[];
        }
      ).slopes
    : undefined;
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'linear-regression-paper.svg'), inverseRatePlot(r.cells));
  const command = `npm run ${values.full ? 'report:full' : 'linear-regression'} -w @accsgd/evidence -- --protocol paper`;
  writeFileSync(
    join(outDir, 'linear-regression-paper.md'),
    paperMarkdown(r, 'linear-regression-paper.svg', command, ours),
  );
  writeFileSync(
    join(outDir, 'linear-regression-paper.json'),
    `${JSON.stringify(r, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 1)}\n`,
  );
  const show = (x: number | undefined) => (x !== undefined && Number.isFinite(x) ? x.toFixed(2) : 'n/a');
  process.stdout.write(
    `\nAccSGD evidence, the paper's protocol (${paperPreset.name} preset, ${r.seconds.toFixed(1)} s): slopes of log(1/rate) vs log(kappa)\n  (${EXPECTED_SLOPES_LINE}; the paper reports discrete 0.93/0.85/0.98/0.55, gaussian 0.87/0.88/0.95/0.51)\n`,
  );
  for (const d of ['gaussian', 'discrete'] as const) {
    const get = (m: string, g: string) =>
      r.slopes.find((x) => x.distribution === d && x.method === m && x.grid === g && x.eligibility === 'all')
        ?.slope;
    process.stdout.write(
      `  ${d.padEnd(9)} paper grid/fixed: SGD ${show(get('SGD', 'paper'))}  HB ${show(get('HB', 'paper'))}  NAG ${show(get('NAG', 'paper'))}  AccSGD ${show(get('AccSGD', 'paper'))}   extended grid: HB ${show(get('HB', 'extended'))}  NAG ${show(get('NAG', 'extended'))}\n`,
    );
    if (ours) {
      const o = (m: string) => ours.find((x) => x.distribution === d && x.method === m)?.slope;
      process.stdout.write(
        `  ${''.padEnd(9)} our protocol (iterations, extended grid): SGD ${show(o('SGD'))}  HB ${show(o('HB'))}  NAG ${show(o('NAG'))}  AccSGD ${show(o('AccSGD'))}\n`,
      );
    }
  }
  process.stdout.write(`  ${gridVerdict(r).replace(/\*\*/g, '')}\n`);
  process.stdout.write(
    `Report: ${join(relative(process.cwd(), outDir) || '.', 'linear-regression-paper.md')}\n`,
  );
}
