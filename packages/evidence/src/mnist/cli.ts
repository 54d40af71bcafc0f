import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import cliProgress from 'cli-progress';
import { initialConvWeights } from './conv-model.js';
import { type ConvResult, convCaveats, convTerminal } from './conv-report.js';
import { firstExamples, IMAGE_SIZE, loadMnist } from './data.js';
import { analyzeMapping, mappingSpecs } from './mapping.js';
import { initialWeights } from './model.js';
import { trainOnnxRun } from './onnx-train.js';
import {
  describe,
  OPTIMIZER_LABELS,
  OPTIMIZERS,
  type OptimizerName,
  type OptimizerSpec,
} from './optimizers.js';
import { curvesPlot, mappingPlot } from './plot.js';
import { MNIST_PRESETS, type MnistPreset } from './presets.js';
import {
  bestRun,
  caveats,
  convMappingTerminal,
  divergence,
  type MnistResult,
  mnistMarkdown,
  pctSpread,
  ruleText,
  withoutUnchosenTests,
} from './report.js';
import { aggregateSeeds } from './seeds.js';
import { validationSplit } from './split.js';
import { type RunResult, trainRun } from './train.js';

const started = performance.now();
const here = dirname(fileURLToPath(import.meta.url));
const packageRoot = resolve(here, '../..');

const { values } = parseArgs({
  options: {
    full: { type: 'boolean', default: false },
    seeds: { type: 'string' },
    epochs: { type: 'string' },
    train: { type: 'string' },
    cpu: { type: 'string' },
    onnx: { type: 'string' },
    mapping: { type: 'string' },
    conv: { type: 'string' },
    'conv-mapping': { type: 'string' },
    out: { type: 'string' },
    render: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});

if (values.help) {
  process.stdout.write(
    [
      'Usage: tsx src/mnist/cli.ts [--full] [--seeds 1,2,3] [--epochs N] [--train N] [--cpu yes|no] [--onnx yes|no] [--mapping yes|no|only] [--conv yes|no|only] [--conv-mapping yes|no|only] [--out DIR] [--render FILE]',
      '  Trains a 784-256-10 MLP on MNIST with AccSGD, SGD, heavy ball, Nesterov and Adam on tfjs wasm,',
      "  chooses each optimizer's learning rate on a validation split carved from the training images,",
      '  then trains the chosen settings with every seed and scores them on the test set; with --full (or',
      '  --conv yes) the same for a LeNet-style conv net on 10,000 images, and AccSGD through OnnxTrainer.',
      '  --full          50,000 training images (10,000 more for validation), 5 epochs, 3 learning rates',
      '                  each, and the momentum-to-AccSGD sweep (default: the quick preset, 10,000',
      '                  training images, 2 epochs, 1 learning rate each)',
      '  --seeds LIST    seeds of the initial weights and batch order (default 1,2,3; the sweep uses the first)',
      '  --epochs N      override the preset epochs; --train N: that many training images',
      '  --cpu yes|no    also train AccSGD chosen setting on tfjs cpu (default: yes for --full)',
      '  --onnx yes|no   also train it as an ONNX Runtime train step on onnxruntime-node cpu (default: yes)',
      '  --mapping yes|no|only  the momentum-to-AccSGD sweep on the MLP (default: yes for --full); only:',
      '                  just it, saved as mnist-mapping.json and merged into a report without one',
      '  --conv yes|no|only  the LeNet-style conv net comparison (default: yes for --full); only: just it,',
      '                  saved as mnist-conv.json and merged into the report by --render or a run without it',
      '  --conv-mapping yes|no|only  the momentum-to-AccSGD sweep on the conv net (default: yes for',
      '                  --full); only: just it, saved as mnist-conv-mapping.json and merged likewise',
      '  --out DIR       report folder (default: reports/ for --full, reports/quick/ otherwise)',
      '  --render FILE   write mnist.md and the plots again from a mnist.json, without training',
      '',
    ].join('\n'),
  );
  process.exit(0);
}

const STAGES = ['mapping', 'conv', 'conv-mapping'] as const;
for (const flag of ['cpu', 'onnx', ...STAGES] as const) {
  const stage = (STAGES as readonly string[]).includes(flag);
  if (
    values[flag] !== undefined &&
    values[flag] !== 'yes' &&
    values[flag] !== 'no' &&
    !(stage && values[flag] === 'only')
  )
    throw new Error(`--${flag} must be yes or no${stage ? ' or only' : ''}, got ${values[flag]}`);
}
const onlys = STAGES.filter((f) => values[f] === 'only');
if (onlys.length > 1) throw new Error(`${onlys.map((f) => `--${f} only`).join(' and ')}: pick one`);

/** A mapping sweep saved on its own (`--mapping only`), merged into a report without one. */
interface SavedMapping {
  mapping: NonNullable<MnistResult['mapping']>;
  preset: MnistPreset;
  seconds: number;
  command: string;
}
const MAPPING_FILE = 'mnist-mapping.json';
function withSavedMapping(result: MnistResult, dir: string): MnistResult {
  const file = join(dir, MAPPING_FILE);
  if (result.mapping || !existsSync(file)) return result;
  const saved = JSON.parse(readFileSync(file, 'utf8')) as SavedMapping;
  return {
    ...result,
    preset: { ...result.preset, mapping: saved.preset.mapping! },
    mapping: saved.mapping,
    seconds: { ...result.seconds, mapping: saved.seconds },
    command: `${result.command}\` and \`${saved.command}`,
  };
}

/** The conv net's mapping sweep saved on its own (`--conv-mapping only`), merged likewise. */
const CONV_MAPPING_FILE = 'mnist-conv-mapping.json';
function withSavedConvMapping(result: MnistResult, dir: string): MnistResult {
  const file = join(dir, CONV_MAPPING_FILE);
  if (result.convMapping || !existsSync(file)) return result;
  const saved = JSON.parse(readFileSync(file, 'utf8')) as SavedMapping;
  return {
    ...result,
    preset: { ...result.preset, convMapping: saved.preset.convMapping! },
    convMapping: { ...saved.mapping, seconds: saved.seconds, command: saved.command },
    command: `${result.command}\` and \`${saved.command}`,
  };
}
/** Every stage saved on its own in `dir` that `result` lacks. */
const withSaved = (result: MnistResult, dir: string) =>
  withSavedConvMapping(withSavedConv(withSavedMapping(result, dir), dir), dir);

/** A conv comparison saved on its own (`--conv only`), merged into a report without one. */
const CONV_FILE = 'mnist-conv.json';
function withSavedConv(result: MnistResult, dir: string): MnistResult {
  const file = join(dir, CONV_FILE);
  if (result.conv || !existsSync(file)) return result;
  const conv = JSON.parse(readFileSync(file, 'utf8')) as ConvResult;
  return {
    ...result,
    preset: { ...result.preset, conv: conv.preset },
    conv,
    command: `${result.command}\` and \`${conv.command}`,
  };
}

if (values.render !== undefined) {
  const file = resolve(values.render);
  const saved = JSON.parse(readFileSync(file, 'utf8')) as MnistResult;
  const dir = values.out ? resolve(values.out) : dirname(file);
  writeReports(withSaved(saved, dirname(file)), dir);
  process.exit(0);
}

function integer(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new Error(`--${name} must be an integer in ${min}..${max}, got ${v}`);
  return n;
}

const base = values.full ? MNIST_PRESETS.full : MNIST_PRESETS.quick;
const seeds =
  values.seeds === undefined
    ? base.seeds
    : values.seeds.split(',').map((s) => integer('seeds', s.trim(), -(2 ** 31), 2 ** 31 - 1)!);
if (new Set(seeds).size !== seeds.length || seeds.length === 0)
  throw new Error(`--seeds must list distinct integers, got ${values.seeds}`);
const preset: MnistPreset = {
  ...base,
  seeds,
  epochs: integer('epochs', values.epochs, 1, 1000) ?? base.epochs,
  trainCount: integer('train', values.train, 1, 60_000 - base.validationCount) ?? base.trainCount,
  cpuCheck: values.cpu === undefined ? base.cpuCheck : values.cpu === 'yes',
  onnxCheck: values.onnx === undefined ? base.onnxCheck === true : values.onnx === 'yes',
};
if (values.conv === 'no') delete preset.conv;
else if (values.conv !== undefined && !preset.conv) preset.conv = MNIST_PRESETS.full.conv!;
const convOnly = values.conv === 'only';
if (values.mapping === 'no') delete preset.mapping;
else if (values.mapping !== undefined && !preset.mapping) preset.mapping = MNIST_PRESETS.full.mapping!;
const mappingOnly = values.mapping === 'only';
if (values['conv-mapping'] === 'no' || mappingOnly || convOnly) delete preset.convMapping;
else if (values['conv-mapping'] !== undefined && !preset.convMapping)
  preset.convMapping = MNIST_PRESETS.full.convMapping!;
const convMappingOnly = values['conv-mapping'] === 'only';
if (convMappingOnly) {
  delete preset.mapping;
  delete preset.conv;
}
if (convOnly) delete preset.mapping;
const outDir = resolve(values.out ?? join(packageRoot, values.full ? 'reports' : 'reports/quick'));

const tLoad = performance.now();
const mnist = loadMnist();
const split = validationSplit(mnist.train, preset.validationCount, preset.splitSeed, preset.trainCount);
const { train, validation } = split;
const loadSeconds = (performance.now() - tLoad) / 1000;

await import('@tensorflow/tfjs-backend-wasm');
if (!(await tf.setBackend('wasm'))) throw new Error("tf.setBackend('wasm') failed");
await tf.ready();
const onnxruntimeVersion = (
  createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }
).version;
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

const stageOnly = mappingOnly || convOnly || convMappingOnly;
const specs = stageOnly ? [] : OPTIMIZERS.flatMap((name) => preset.lrs[name].map((lr) => ({ name, lr })));
const mapSpecs = preset.mapping ? mappingSpecs(preset.mapping) : [];
const convMapSpecs = preset.convMapping ? mappingSpecs(preset.convMapping) : [];
const stepsPer = (count: number, epochs: number) => epochs * Math.ceil(count / preset.batchSize);
const stepsPerRun = stepsPer(preset.trainCount, preset.epochs);
const convSpecs = preset.conv
  ? OPTIMIZERS.flatMap((name) => preset.conv!.lrs[name].map((lr) => ({ name, lr })))
  : [];
const convCount = preset.conv ? Math.min(preset.conv.trainCount, train.count) : 0;
const total =
  (preset.conv
    ? stepsPer(convCount, preset.conv.epochs) *
      (convSpecs.length + OPTIMIZERS.length * (seeds.length - 1) + (preset.conv.onnxCheck ? 1 : 0))
    : 0) +
  (stageOnly
    ? 0
    : stepsPerRun *
      (specs.length +
        OPTIMIZERS.length * (seeds.length - 1) +
        (preset.cpuCheck ? 1 : 0) +
        (preset.onnxCheck ? 1 : 0))) +
  (preset.mapping ? mapSpecs.length * stepsPer(preset.mapping.trainCount, preset.mapping.epochs) : 0) +
  (preset.convMapping
    ? convMapSpecs.length * stepsPer(preset.convMapping.trainCount, preset.convMapping.epochs)
    : 0);
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
async function run(
  spec: OptimizerSpec,
  seed: number,
  o: { trainSplit?: typeof train; epochs?: number; test: boolean; conv?: boolean },
): Promise<RunResult> {
  const trainSplit = o.trainSplit ?? train;
  const epochs = o.epochs ?? preset.epochs;
  bar.update(done, {
    run: `${o.conv ? 'conv ' : ''}${spec.name} ${describe(spec)} seed ${seed} (${tf.getBackend()})`,
    loss: '-',
  });
  const r = await trainRun({
    train: trainSplit,
    validation,
    ...(o.test ? { test: mnist.test } : {}),
    weights: o.conv ? initialConvWeights(seed) : initialWeights(seed),
    spec,
    epochs,
    batchSize: preset.batchSize,
    seed,
    prefix: `mnist${runIndex++}`,
    onStep: (step, loss) => {
      if (step % 10 === 0) bar.update(done + step, { loss: loss.toFixed(3) });
    },
  });
  done += stepsPer(trainSplit.count, epochs);
  bar.update(done);
  return r;
}

let mapping: MnistResult['mapping'];
let mappingSeconds: number | undefined;
if (preset.mapping) {
  const m = preset.mapping;
  const t = performance.now();
  const mapCount = Math.min(m.trainCount, train.count);
  const mapTrain = {
    count: mapCount,
    images: train.images.subarray(0, mapCount * IMAGE_SIZE),
    labels: train.labels.subarray(0, mapCount),
  };
  const mapRuns: RunResult[] = [];
  for (const spec of mapSpecs)
    mapRuns.push(await run(spec, seeds[0]!, { trainSplit: mapTrain, epochs: m.epochs, test: false }));
  mapping = { runs: mapRuns, analysis: analyzeMapping(mapRuns) };
  mappingSeconds = (performance.now() - t) / 1000;
  if (mappingOnly) {
    bar.stop();
    mkdirSync(outDir, { recursive: true });
    const saved: SavedMapping = {
      mapping,
      preset,
      seconds: mappingSeconds,
      command: `npm run ${values.full ? 'report:mnist' : 'mnist'} -w @accsgd/evidence -- ${process.argv
        .slice(2)
        .filter((a) => a !== '--full')
        .join(' ')}`,
    };
    writeFileSync(join(outDir, MAPPING_FILE), `${JSON.stringify(saved, null, 1)}\n`);
    process.stdout.write(
      `\n${ruleText(mapping.analysis).replace(/\*\*/g, '')}\nSaved: ${join(relative(process.cwd(), outDir) || '.', MAPPING_FILE)}\n`,
    );
    process.exit(0);
  }
}

let convMapping: MnistResult['convMapping'];
if (preset.convMapping) {
  const m = preset.convMapping;
  const t = performance.now();
  const mapTrain = firstExamples(train, Math.min(m.trainCount, train.count));
  const mapRuns: RunResult[] = [];
  for (const spec of convMapSpecs)
    mapRuns.push(
      await run(spec, seeds[0]!, { trainSplit: mapTrain, epochs: m.epochs, test: false, conv: true }),
    );
  convMapping = {
    runs: mapRuns,
    analysis: analyzeMapping(mapRuns),
    seconds: (performance.now() - t) / 1000,
  };
  if (convMappingOnly) {
    bar.stop();
    mkdirSync(outDir, { recursive: true });
    const command = `npm run ${values.full ? 'report:mnist' : 'mnist'} -w @accsgd/evidence -- ${process.argv
      .slice(2)
      .filter((a) => a !== '--full')
      .join(' ')}`;
    const saved: SavedMapping = {
      mapping: { runs: convMapping.runs, analysis: convMapping.analysis },
      preset,
      seconds: convMapping.seconds,
      command,
    };
    writeFileSync(join(outDir, CONV_MAPPING_FILE), `${JSON.stringify(saved, null, 1)}\n`);
    process.stdout.write(
      `\n${convMappingTerminal({ ...convMapping, command }, m).join('\n')}\nSaved: ${join(relative(process.cwd(), outDir) || '.', CONV_MAPPING_FILE)}\n`,
    );
    process.exit(0);
  }
}

let conv: ConvResult | undefined;
if (preset.conv) {
  const c = preset.conv;
  const convTrain = firstExamples(train, convCount);
  const t = performance.now();
  const sweepRuns: RunResult[] = [];
  for (const spec of convSpecs)
    sweepRuns.push(
      await run(spec, seeds[0]!, { trainSplit: convTrain, epochs: c.epochs, test: true, conv: true }),
    );
  const tSeeds = performance.now();
  const convBest = Object.fromEntries(OPTIMIZERS.map((n) => [n, bestRun(sweepRuns, n, c.epochs)])) as Record<
    OptimizerName,
    number
  >;
  const convRuns = withoutUnchosenTests(sweepRuns, Object.values(convBest));
  const convSeedRuns = {} as Record<OptimizerName, RunResult[]>;
  for (const name of OPTIMIZERS) {
    const chosen = convRuns[convBest[name]]!;
    convSeedRuns[name] = [chosen];
    for (const seed of seeds.slice(1))
      convSeedRuns[name].push(
        await run(chosen.spec, seed, { trainSplit: convTrain, epochs: c.epochs, test: true, conv: true }),
      );
  }
  const tOnnx = performance.now();
  let convOnnx: RunResult | undefined;
  if (c.onnxCheck) {
    const spec = convRuns[convBest.AccSGD]!.spec;
    bar.update(done, { run: `conv AccSGD ${describe(spec)} (onnxruntime-node cpu)`, loss: '-' });
    convOnnx = await trainOnnxRun({
      train: convTrain,
      validation,
      test: mnist.test,
      weights: initialConvWeights(seeds[0]!),
      spec,
      epochs: c.epochs,
      batchSize: preset.batchSize,
      seed: seeds[0]!,
      onStep: (step, loss) => {
        if (step % 10 === 0) bar.update(done + step, { loss: loss.toFixed(3) });
      },
    });
    done += stepsPer(convCount, c.epochs);
  }
  conv = {
    preset: c,
    seeds,
    batchSize: preset.batchSize,
    runs: convRuns,
    best: convBest,
    seedRuns: convSeedRuns,
    ...(convOnnx ? { onnx: convOnnx } : {}),
    seconds: {
      sweep: (tSeeds - t) / 1000,
      seeds: (tOnnx - tSeeds) / 1000,
      ...(convOnnx ? { onnx: (performance.now() - tOnnx) / 1000 } : {}),
    },
  };
  if (convOnly) {
    bar.stop();
    mkdirSync(outDir, { recursive: true });
    conv.command = `npm run ${values.full ? 'report:mnist' : 'mnist'} -w @accsgd/evidence -- ${process.argv
      .slice(2)
      .filter((a) => a !== '--full')
      .join(' ')}`;
    writeFileSync(join(outDir, CONV_FILE), `${JSON.stringify(conv, null, 1)}\n`);
    process.stdout.write(`\n${convTerminal(conv).join('\n')}\n  Caveats:\n`);
    for (const line of convCaveats(conv)) process.stdout.write(`  - ${line}\n`);
    process.stdout.write(
      `Saved: ${join(relative(process.cwd(), outDir) || '.', CONV_FILE)} (training ${((performance.now() - t) / 1000).toFixed(1)} s)\n`,
    );
    process.exit(0);
  }
}

// The sweep scores the test set too, once at the end of each run, so that the chosen settings'
// first seed need not be trained twice; the choice reads only the validation accuracy, and the
// test accuracies of the settings not chosen are dropped before anything is written.
const tSweep = performance.now();
const sweep: RunResult[] = [];
for (const spec of specs) sweep.push(await run(spec, seeds[0]!, { test: true }));
const sweepSeconds = (performance.now() - tSweep) / 1000;
const best = Object.fromEntries(OPTIMIZERS.map((n) => [n, bestRun(sweep, n, preset.epochs)])) as Record<
  OptimizerName,
  number
>;
const runs = withoutUnchosenTests(sweep, Object.values(best));

const tSeeds = performance.now();
const seedRuns = {} as Record<OptimizerName, RunResult[]>;
for (const name of OPTIMIZERS) {
  const chosen = runs[best[name]]!;
  seedRuns[name] = [chosen];
  for (const seed of seeds.slice(1)) seedRuns[name].push(await run(chosen.spec, seed, { test: true }));
}
const seedsSeconds = (performance.now() - tSeeds) / 1000;

let cpu: RunResult | undefined;
let cpuSeconds: number | undefined;
let onnx: RunResult | undefined;
let onnxSeconds: number | undefined;
const accChosen = runs[best.AccSGD]!.spec;
if (preset.onnxCheck) {
  bar.update(done, { run: `AccSGD ${describe(accChosen)} (onnxruntime-node cpu)`, loss: '-' });
  const t = performance.now();
  onnx = await trainOnnxRun({
    train,
    validation,
    test: mnist.test,
    weights: initialWeights(seeds[0]!),
    spec: accChosen,
    epochs: preset.epochs,
    batchSize: preset.batchSize,
    seed: seeds[0]!,
    onStep: (step, loss) => {
      if (step % 10 === 0) bar.update(done + step, { loss: loss.toFixed(3) });
    },
  });
  onnxSeconds = (performance.now() - t) / 1000;
  done += stepsPerRun;
}

if (preset.cpuCheck) {
  tf.env().set('IS_TEST', true); // no "install tfjs-node" banner
  await import('@tensorflow/tfjs-backend-cpu');
  if (!(await tf.setBackend('cpu'))) throw new Error("tf.setBackend('cpu') failed");
  await tf.ready();
  const t = performance.now();
  cpu = await run(accChosen, seeds[0]!, { test: true });
  cpuSeconds = (performance.now() - t) / 1000;
}
bar.update(total, { run: 'done' });
bar.stop();

const args = process.argv.slice(2).filter((a) => a !== '--full');
const result: MnistResult = {
  preset,
  runs,
  best,
  seedRuns,
  ...(cpu ? { cpu } : {}),
  ...(onnx ? { onnx } : {}),
  ...(mapping ? { mapping } : {}),
  ...(conv ? { conv } : {}),
  ...(convMapping ? { convMapping } : {}),
  seconds: {
    load: loadSeconds,
    sweep: sweepSeconds,
    seeds: seedsSeconds,
    ...(cpuSeconds !== undefined ? { cpu: cpuSeconds } : {}),
    ...(onnxSeconds !== undefined ? { onnx: onnxSeconds } : {}),
    ...(mappingSeconds !== undefined ? { mapping: mappingSeconds } : {}),
    total: (performance.now() - started) / 1000,
  },
  environment,
  command: `npm run ${values.full ? 'report:mnist' : 'mnist'} -w @accsgd/evidence${args.length > 0 ? ` -- ${args.join(' ')}` : ''}`,
};

// mnist.json holds this run's own results only: a stage saved on its own stays in its own file, so
// that --render (and the next run) merges the newest of each rather than a copy from this run.
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'mnist.json'), `${JSON.stringify(result, null, 1)}\n`);
writeReports(withSaved(result, outDir), outDir);

/** Writes mnist.svg, mnist.md (and the conv and mapping plots) to `dir` and prints the summary. */
function writeReports(result: MnistResult, dir: string): void {
  const { preset, cpu, onnx, seedRuns } = result;
  mkdirSync(dir, { recursive: true });
  const plotName = 'mnist.svg';
  writeFileSync(
    join(dir, plotName),
    curvesPlot(
      seedRuns,
      [...(cpu ? [cpu] : []), ...(onnx ? [onnx] : [])],
      preset.epochs,
      `MNIST MLP on tfjs wasm: chosen setting per optimizer, ${preset.seeds.length} seeds (${preset.name} preset)`,
    ),
  );
  let mapName: string | undefined;
  if (result.mapping) {
    mapName = 'mnist-mapping.svg';
    writeFileSync(
      join(dir, mapName),
      mappingPlot(
        result.mapping.runs,
        result.mapping.analysis,
        'From heavy ball to AccSGD on the MNIST MLP: validation accuracy by steady-state step',
      ),
    );
  }
  let convName: string | undefined;
  if (result.conv) {
    convName = 'mnist-conv.svg';
    writeFileSync(
      join(dir, convName),
      curvesPlot(
        result.conv.seedRuns,
        result.conv.onnx ? [result.conv.onnx] : [],
        result.conv.preset.epochs,
        `MNIST LeNet-style conv net on tfjs wasm: chosen setting per optimizer, ${result.conv.seeds.length} seeds (${preset.name} preset)`,
      ),
    );
  }
  let convMapName: string | undefined;
  if (result.convMapping) {
    convMapName = 'mnist-conv-mapping.svg';
    writeFileSync(
      join(dir, convMapName),
      mappingPlot(
        result.convMapping.runs,
        result.convMapping.analysis,
        'From heavy ball to AccSGD on the MNIST conv net: validation accuracy by steady-state step',
      ),
    );
  }
  const command =
    result.command ?? `npm run ${preset.name === 'full' ? 'report:mnist' : 'mnist'} -w @accsgd/evidence`;
  writeFileSync(
    join(dir, 'mnist.md'),
    mnistMarkdown(result, plotName, command, mapName, convName, convMapName),
  );

  const rel = relative(process.cwd(), dir) || '.';
  process.stdout.write(
    `\nMNIST 784-256-10 MLP on tfjs wasm (${preset.name} preset: ${preset.trainCount} training images, ${preset.validationCount} validation images, ${preset.epochs} epochs, seeds ${preset.seeds.join(', ')}, ${result.seconds.total.toFixed(1)} s)\n  chosen on validation; test accuracy mean ± std (min–max) over seeds:\n`,
  );
  for (const name of OPTIMIZERS) {
    const a = aggregateSeeds(seedRuns[name]);
    process.stdout.write(
      `  ${OPTIMIZER_LABELS[name].padEnd(28)} ${describe(seedRuns[name][0]!.spec).padEnd(44)} test ${pctSpread(a.testAccuracy)}${a.diverged > 0 ? `  ${a.diverged} DIVERGED` : ''}\n`,
    );
  }
  for (const [label, other] of [
    ['tfjs cpu', cpu],
    ['ONNX Runtime (onnxruntime-node cpu)', onnx],
  ] as const) {
    if (!other) continue;
    const d = divergence(seedRuns.AccSGD[0]!, other);
    process.stdout.write(
      `  AccSGD on ${label}: largest difference from wasm ${d.loss.toExponential(2)} in loss, ${(100 * d.accuracy).toFixed(2)} points in validation accuracy\n`,
    );
  }
  if (result.conv) process.stdout.write(`${convTerminal(result.conv).join('\n')}\n`);
  else
    process.stdout.write(
      `Conv net: not in this run (${preset.name === 'quick' ? 'the quick preset leaves it out to stay near two minutes; ' : ''}\`--conv yes\` adds about 45 minutes on a free core).\n`,
    );
  if (result.mapping) process.stdout.write(`  ${ruleText(result.mapping.analysis).replace(/\*\*/g, '')}\n`);
  if (result.convMapping && preset.convMapping)
    process.stdout.write(`${convMappingTerminal(result.convMapping, preset.convMapping).join('\n')}\n`);
  process.stdout.write('  Caveats:\n');
  for (const c of caveats(preset)) process.stdout.write(`  - ${c}\n`);
  if (result.conv) for (const c of convCaveats(result.conv)) process.stdout.write(`  - ${c}\n`);
  process.stdout.write(`Report: ${join(rel, 'mnist.md')}\n`);
}
