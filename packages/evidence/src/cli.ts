import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { type Estimator, PRESETS, runExperiment, tasksFor } from './experiment.js';
import { METHODS } from './optimizers.js';
import { iterationsPlot } from './plot.js';
import { markdown } from './report.js';

const here = dirname(fileURLToPath(import.meta.url));
const packageRoot = resolve(here, '..');

const { values } = parseArgs({
  options: {
    full: { type: 'boolean', default: false },
    seed: { type: 'string', default: '1' },
    estimator: { type: 'string', default: 'exact' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});

if (values.help) {
  process.stdout.write(
    [
      'Usage: accsgd-evidence [--full] [--seed N] [--estimator exact|mc] [--out DIR]',
      '  Reproduces the stochastic linear-regression experiment of Kidambi et al. (ICLR 2018).',
      '  --full        all kappas 2^4..2^12 and the fine grids (default: the quick preset)',
      '  --seed N      base seed of the Monte Carlo runs (default 1)',
      '  --estimator   exact (default): tune on the exact expected error; mc: on the seeded mean',
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
  `\nAccSGD evidence (${preset.name} preset, ${result.seconds.toFixed(1)} s): slopes of log(iterations) vs log(kappa)\n`,
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
