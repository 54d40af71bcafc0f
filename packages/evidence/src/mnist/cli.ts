import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import cliProgress from 'cli-progress';
import { firstExamples, loadMnist } from './data.js';
import { initialWeights } from './model.js';
import { trainOnnxRun } from './onnx-train.js';
import { describe, OPTIMIZERS, type OptimizerName } from './optimizers.js';
import { curvesPlot } from './plot.js';
import { MNIST_PRESETS, type MnistPreset } from './presets.js';
import { bestRun, divergence, type MnistResult, mnistMarkdown } from './report.js';
import { type RunResult, trainRun } from './train.js';

const started = performance.now();
const here = dirname(fileURLToPath(import.meta.url));
const packageRoot = resolve(here, '../..');

const { values } = parseArgs({
  options: {
    full: { type: 'boolean', default: false },
    seed: { type: 'string', default: '1' },
    epochs: { type: 'string' },
    train: { type: 'string' },
    cpu: { type: 'string' },
    onnx: { type: 'string' },
    out: { type: 'string' },
    render: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});

if (values.help) {
  process.stdout.write(
    [
      'Usage: tsx src/mnist/cli.ts [--full] [--seed N] [--epochs N] [--train N] [--cpu yes|no] [--onnx yes|no] [--out DIR] [--render FILE]',
      '  Trains a 784-256-10 MLP on MNIST with AccSGD, SGD, heavy ball, Nesterov and Adam on tfjs wasm.',
      '  --full        all 60,000 training images, 5 epochs, 3 learning rates per optimizer',
      '                (default: the quick preset, 10,000 images, 2 epochs, 1 learning rate each)',
      '  --seed N      seed of the initial weights and the batch order (default 1)',
      '  --epochs N    override the preset epochs; --train N: the first N training images',
      '  --cpu yes|no  also train AccSGD best setting on tfjs cpu (default: yes for --full)',
      '  --onnx yes|no also train AccSGD best setting as an ONNX Runtime train step on',
      '                onnxruntime-node cpu (default: yes)',
      '  --out DIR     report folder (default: reports/ for --full, reports/quick/ otherwise)',
      '  --render FILE write mnist.md and mnist.svg again from a mnist.json, without training;',
      '                with --onnx yes, first train only the ONNX run (AccSGD best setting of the',
      '                file, its seed and preset) and add it to the file',
      '',
    ].join('\n'),
  );
  process.exit(0);
}

for (const flag of ['cpu', 'onnx'] as const)
  if (values[flag] !== undefined && values[flag] !== 'yes' && values[flag] !== 'no')
    throw new Error(`--${flag} must be yes or no, got ${values[flag]}`);

const onnxruntimeVersion = (
  createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }
).version;

if (values.render !== undefined) {
  const file = resolve(values.render);
  const saved = JSON.parse(readFileSync(file, 'utf8')) as MnistResult;
  const addOnnx = values.onnx === 'yes';
  if (addOnnx) {
    // Only the ONNX run, from the file's seed, preset and AccSGD best setting; the rest is kept.
    const t0 = performance.now();
    const mnist = loadMnist();
    const spec = saved.runs[saved.best.AccSGD]!.spec;
    process.stderr.write(`ONNX Runtime run of AccSGD ${describe(spec)} (${saved.preset.name} preset)...\n`);
    const onnx = await trainOnnxRun({
      train: firstExamples(mnist.train, saved.preset.trainCount),
      test: mnist.test,
      weights: initialWeights(saved.seed),
      spec,
      epochs: saved.preset.epochs,
      batchSize: saved.preset.batchSize,
      seed: saved.seed,
      onStep: (step, loss) => {
        if (step % 500 === 0) process.stderr.write(`  step ${step}: loss ${loss.toFixed(4)}\n`);
      },
    });
    const seconds = (performance.now() - t0) / 1000;
    saved.onnx = onnx;
    saved.preset = { ...saved.preset, onnxCheck: true };
    saved.seconds = { ...saved.seconds, onnx: seconds, total: saved.seconds.total + seconds };
    saved.environment = { ...saved.environment, onnxruntime: onnxruntimeVersion };
    const base = saved.command ?? 'npm run report:mnist -w @accsgd/evidence';
    saved.command = `${base}\` then \`npm run mnist -w @accsgd/evidence -- --render ${relative(packageRoot, file)} --onnx yes`;
  }
  writeReports(saved, values.out ? resolve(values.out) : dirname(file), { json: addOnnx });
  process.exit(0);
}

function integer(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new Error(`--${name} must be an integer in ${min}..${max}, got ${v}`);
  return n;
}

const seed = integer('seed', values.seed, -(2 ** 31), 2 ** 31 - 1)!;
const base = values.full ? MNIST_PRESETS.full : MNIST_PRESETS.quick;
const preset: MnistPreset = {
  ...base,
  epochs: integer('epochs', values.epochs, 1, 1000) ?? base.epochs,
  trainCount: integer('train', values.train, 1, 60_000) ?? base.trainCount,
  cpuCheck: values.cpu === undefined ? base.cpuCheck : values.cpu === 'yes',
  onnxCheck: values.onnx === undefined ? base.onnxCheck === true : values.onnx === 'yes',
};
const outDir = resolve(values.out ?? join(packageRoot, values.full ? 'reports' : 'reports/quick'));

const tLoad = performance.now();
const mnist = loadMnist();
const train = firstExamples(mnist.train, preset.trainCount);
const loadSeconds = (performance.now() - tLoad) / 1000;

await import('@tensorflow/tfjs-backend-wasm');
if (!(await tf.setBackend('wasm'))) throw new Error("tf.setBackend('wasm') failed");
await tf.ready();
const environment = {
  node: process.versions.node,
  cpu: cpus()[0]?.model.trim() ?? 'unknown',
  cores: cpus().length,
  loadAverageAtStart: Number(loadavg()[0]!.toFixed(2)),
  tfjs: tf.version_core,
  wasmSimd: Boolean(tf.env().getBool('WASM_HAS_SIMD_SUPPORT')),
  wasmThreads: Boolean(tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT')),
  ...(preset.onnxCheck ? { onnxruntime: onnxruntimeVersion } : {}),
};

const weights = initialWeights(seed);
const specs = OPTIMIZERS.flatMap((name) => preset.lrs[name].map((lr) => ({ name, lr })));
const stepsPerRun = preset.epochs * Math.ceil(preset.trainCount / preset.batchSize);
const total = stepsPerRun * (specs.length + (preset.cpuCheck ? 1 : 0) + (preset.onnxCheck ? 1 : 0));
const bar = new cliProgress.SingleBar(
  {
    stream: process.stderr,
    format: '{bar} {percentage}% | {value}/{total} steps | {run} | loss {loss} | {duration_formatted}',
    hideCursor: true,
  },
  cliProgress.Presets.shades_classic,
);
bar.start(total, 0, { run: '', loss: '-' });
let done = 0;
let runIndex = 0;
async function run(spec: (typeof specs)[number]): Promise<RunResult> {
  const label = `${spec.name} lr=${spec.lr} (${tf.getBackend()})`;
  bar.update(done, { run: label, loss: '-' });
  const r = await trainRun({
    train,
    test: mnist.test,
    weights,
    spec,
    epochs: preset.epochs,
    batchSize: preset.batchSize,
    seed,
    prefix: `mnist${runIndex++}`,
    onStep: (step, loss) => {
      if (step % 10 === 0) bar.update(done + step, { loss: loss.toFixed(3) });
    },
  });
  done += stepsPerRun;
  bar.update(done);
  return r;
}

const tSweep = performance.now();
const runs: RunResult[] = [];
for (const spec of specs) runs.push(await run(spec));
const sweepSeconds = (performance.now() - tSweep) / 1000;
const best = Object.fromEntries(OPTIMIZERS.map((n) => [n, bestRun(runs, n, preset.epochs)])) as Record<
  OptimizerName,
  number
>;

let cpu: RunResult | undefined;
let cpuSeconds: number | undefined;
if (preset.cpuCheck) {
  tf.env().set('IS_TEST', true); // no "install tfjs-node" banner
  await import('@tensorflow/tfjs-backend-cpu');
  if (!(await tf.setBackend('cpu'))) throw new Error("tf.setBackend('cpu') failed");
  await tf.ready();
  const t = performance.now();
  cpu = await run(runs[best.AccSGD]!.spec);
  cpuSeconds = (performance.now() - t) / 1000;
}
let onnx: RunResult | undefined;
let onnxSeconds: number | undefined;
if (preset.onnxCheck) {
  const spec = runs[best.AccSGD]!.spec;
  bar.update(done, { run: `${spec.name} lr=${spec.lr} (onnxruntime-node cpu)`, loss: '-' });
  const t = performance.now();
  onnx = await trainOnnxRun({
    train,
    test: mnist.test,
    weights,
    spec,
    epochs: preset.epochs,
    batchSize: preset.batchSize,
    seed,
    onStep: (step, loss) => {
      if (step % 10 === 0) bar.update(done + step, { loss: loss.toFixed(3) });
    },
  });
  onnxSeconds = (performance.now() - t) / 1000;
  done += stepsPerRun;
}
bar.update(total, { run: 'done' });
bar.stop();

const args = process.argv.slice(2).filter((a) => a !== '--full');
const result: MnistResult = {
  preset,
  seed,
  runs,
  best,
  ...(cpu ? { cpu } : {}),
  ...(onnx ? { onnx } : {}),
  seconds: {
    load: loadSeconds,
    sweep: sweepSeconds,
    ...(cpuSeconds !== undefined ? { cpu: cpuSeconds } : {}),
    ...(onnxSeconds !== undefined ? { onnx: onnxSeconds } : {}),
    total: (performance.now() - started) / 1000,
  },
  environment,
  command: `npm run ${values.full ? 'report:mnist' : 'mnist'} -w @accsgd/evidence${args.length > 0 ? ` -- ${args.join(' ')}` : ''}`,
};

writeReports(result, outDir, { json: true });

/** Writes mnist.svg, mnist.md (and mnist.json) to `dir` and prints the summary. */
function writeReports(result: MnistResult, dir: string, o: { json: boolean }): void {
  const { preset, runs, best, cpu, onnx } = result;
  mkdirSync(dir, { recursive: true });
  const plotName = 'mnist.svg';
  const shown = [...OPTIMIZERS.map((n) => runs[best[n]]!), ...(cpu ? [cpu] : []), ...(onnx ? [onnx] : [])];
  writeFileSync(
    join(dir, plotName),
    curvesPlot(
      shown,
      preset.epochs,
      `MNIST 784-256-10 MLP, tfjs wasm, best setting per optimizer (${preset.name} preset)`,
    ),
  );
  const command =
    result.command ?? `npm run ${preset.name === 'full' ? 'report:mnist' : 'mnist'} -w @accsgd/evidence`;
  writeFileSync(join(dir, 'mnist.md'), mnistMarkdown(result, plotName, command));
  if (o.json) writeFileSync(join(dir, 'mnist.json'), `${JSON.stringify(result, null, 1)}\n`);

  const rel = relative(process.cwd(), dir) || '.';
  process.stdout.write(
    `\nMNIST 784-256-10 MLP on tfjs wasm (${preset.name} preset: ${preset.trainCount} training images, ${preset.epochs} epochs, ${result.seconds.total.toFixed(1)} s)\n`,
  );
  for (const name of OPTIMIZERS) {
    const r = runs[best[name]]!;
    const f = r.epochs[r.epochs.length - 1]!;
    process.stdout.write(
      `  ${name.padEnd(9)} ${describe(r.spec).padEnd(48)} test accuracy ${(100 * f.testAccuracy).toFixed(2)}%  train loss ${f.trainLoss.toFixed(4)}${r.diverged ? '  DIVERGED' : ''}\n`,
    );
  }
  if (cpu) {
    const d = divergence(runs[best.AccSGD]!, cpu);
    process.stdout.write(
      `  AccSGD on tfjs cpu: largest difference from wasm ${d.loss.toExponential(2)} in loss, ${(100 * d.accuracy).toFixed(2)} points in accuracy\n`,
    );
  }
  if (onnx) {
    const d = divergence(runs[best.AccSGD]!, onnx);
    process.stdout.write(
      `  AccSGD on ONNX Runtime (onnxruntime-node cpu): largest difference from wasm ${d.loss.toExponential(2)} in loss, ${(100 * d.accuracy).toFixed(2)} points in accuracy\n`,
    );
  }
  process.stdout.write(`Report: ${join(rel, 'mnist.md')}\n`);
}
