/**
 * One optimizer step over 16,777,216 float32 parameters, as one variable and as 1024 variables of
 * 16,384, on each tfjs backend available here: AccSGD (fused kernel; default non-finite check and
 * nonFinite: 'allow'; and the composite ops) beside tf.train.momentum(lr, 0.9) on the same backend,
 * the same variables and gradients, in the same process. Prints medians and ratios to momentum;
 * machines are noisy, so only the ratios mean anything.
 *
 *   npm run bench                       # cpu, wasm, and webgpu when an adapter is found
 *   ACCSGD_BENCH_BACKENDS=wasm npm run bench
 *   ACCSGD_BENCH_REPEATS=5 npm run bench
 */
import { findNodeWebGPU } from '@accsgd/conformance';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { accsgd } from '../src/index.js';

const TOTAL = 16_777_216;
const LAYOUTS = [
  { label: '1 x 16,777,216', count: 1, size: TOTAL },
  { label: '1024 x 16,384', count: 1024, size: TOTAL / 1024 },
];
const REPEATS = Number(process.env.ACCSGD_BENCH_REPEATS ?? 3);
const LR = 0.01;
const SYNCHRONOUS_BACKENDS = new Set(['cpu', 'wasm']);
/** Target for the fused step's ratio to momentum on each backend (webgpu: on SwiftShader). */
const TARGETS: Record<string, number> = { wasm: 0.5, cpu: 0.1, webgpu: 1.0 };
function verdict(backend: string, ratio: number): string {
  const target = TARGETS[backend];
  if (target === undefined) return 'no target';
  return `<= ${target}: ${ratio <= target ? 'met' : 'missed'}`;
}

tf.env().set('IS_TEST', true);

async function backends(): Promise<string[]> {
  const wanted = process.env.ACCSGD_BENCH_BACKENDS?.split(',') ?? ['cpu', 'wasm', 'webgpu'];
  const out: string[] = [];
  for (const name of wanted) {
    if (name === 'webgpu') {
      const found = await findNodeWebGPU();
      if (!found.available) {
        console.log(`webgpu: skipped (${found.reason})`);
        continue;
      }
      console.log(`webgpu adapter: ${found.description}`);
      await import('@tensorflow/tfjs-backend-webgpu');
    }
    out.push(name);
  }
  return out;
}

/**
 * Waits until the backend has finished everything queued so far, with a one-element read-back.
 * cpu and wasm run every kernel to completion inside the call, so there is nothing to wait for;
 * and a read-back there is not cheap: tfjs-backend-wasm's Slice copies the whole source tensor out
 * of the heap first (readSync), about 40 ms for 16.7M floats, which would be added to both sides
 * of the ratio and pull it towards 1.
 */
async function settle(v: tf.Variable): Promise<void> {
  if (SYNCHRONOUS_BACKENDS.has(tf.getBackend())) return;
  const one = tf.tidy(() => tf.slice(tf.reshape(v, [-1]), 0, 1));
  await one.data();
  one.dispose();
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function timeSteps(
  optimizer: tf.Optimizer,
  grads: tf.NamedTensor[],
  last: tf.Variable,
): Promise<number> {
  // The first step creates the optimizer's state; it is not timed.
  await step(optimizer, grads);
  await settle(last);
  const times: number[] = [];
  for (let r = 0; r < REPEATS; r++) {
    const start = performance.now();
    await step(optimizer, grads);
    await settle(last);
    times.push(performance.now() - start);
  }
  return median(times);
}

async function step(optimizer: tf.Optimizer, grads: tf.NamedTensor[]): Promise<void> {
  const async = (optimizer as { applyGradientsAsync?: (g: tf.NamedTensor[]) => Promise<void> })
    .applyGradientsAsync;
  if (async) await async.call(optimizer, grads);
  else optimizer.applyGradients(grads);
}

let run = 0;
const rows: string[][] = [
  [
    'backend',
    'layout',
    'momentum ms',
    'AccSGD ms',
    'ratio',
    'target',
    'AccSGD allow ms',
    'ratio',
    'composite ms',
    'ratio',
  ],
];
for (const backend of await backends()) {
  await tf.setBackend(backend);
  await tf.ready();
  for (const { label, count, size } of LAYOUTS) {
    const prefix = `bench${run++}`;
    const variables = Array.from({ length: count }, (_, i) =>
      tf.tidy(() => tf.variable(tf.randomUniform([size], -1, 1, 'float32', i + 1), true, `${prefix}/v${i}`)),
    );
    const grads = variables.map((v, i) => ({
      name: v.name,
      tensor: tf.tidy(() => tf.randomUniform([size], -0.1, 0.1, 'float32', 1000 + i)),
    }));
    const last = variables[variables.length - 1]!;
    const measure = async (make: () => tf.Optimizer) => {
      const optimizer = make();
      const ms = await timeSteps(optimizer, grads, last);
      optimizer.dispose();
      return ms;
    };
    const momentum = await measure(() => tf.train.momentum(LR, 0.9));
    const fused = await measure(() => accsgd({ lr: LR }));
    const allow = await measure(() => accsgd({ lr: LR, nonFinite: 'allow' }));
    const composite = await measure(() => accsgd({ lr: LR, nonFinite: 'allow', fused: false }));
    const r = (x: number) => (x / momentum).toFixed(3);
    rows.push([
      backend,
      label,
      momentum.toFixed(1),
      fused.toFixed(1),
      r(fused),
      verdict(backend, fused / momentum),
      allow.toFixed(1),
      r(allow),
      composite.toFixed(1),
      r(composite),
    ]);
    console.log(rows[rows.length - 1]!.join('  '));
    tf.dispose([...variables, ...grads.map((g) => g.tensor)]);
  }
}

const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
console.log(
  `\nOne step over ${TOTAL.toLocaleString('en')} float32 parameters, median of ${REPEATS} (first step not timed); ratio = AccSGD / momentum, lower is faster.\n`,
);
for (const row of rows) console.log(row.map((cell, c) => cell.padStart(widths[c]!)).join('  '));
console.log(
  `\nTargets for the fused step's ratio (AccSGD / momentum): ${Object.entries(TARGETS)
    .map(([backend, target]) => `${backend} <= ${target}`)
    .join(', ')} (webgpu measured on SwiftShader).`,
);
const verdicts = rows.slice(1).map((row) => `${row[0]} ${row[1]}: ${row[5]}`);
for (const v of verdicts) console.log(v);
