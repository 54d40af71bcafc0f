/**
 * One AccSGD step over 16,777,216 float32 parameters (one tensor) on ONNX Runtime, beside
 * @accsgd/core's AccSGD on the same data in the same process, median of repeats.
 *
 *   npm run bench                                  # from packages/onnx-training
 *   npm run bench -- --size 16777216 --repeats 9 --webgpu
 *
 * cpu: OnnxAccSGD.step on onnxruntime-node cpu and onnxruntime-web wasm (core's fused kernel on
 * the parameters in place) and with updateGraph: true (one session.run of the flat Mul/Add update
 * graph), each vs core AccSGD.step on ordinary arrays in the same process, with nonFinite 'error'
 * and then 'allow'; target ratio <= 1.5x.
 * many parameters (--params 5000, total --many-size elements): create + first step, and a later
 * step, of --params parameters vs one parameter of the same total size, on the same runtime;
 * target ratio < 2x.
 * webgpu (--webgpu; set VK_ICD_FILENAMES to SwiftShader when there is no GPU): OnnxAccSGD.step
 * with parameters resident on the GPU, beside an Identity session copying the same tensor to a new
 * GPU buffer; each timing ends with a 1-element read-back (a Slice session) so queued GPU work is
 * included. Prints; asserts nothing.
 */
import { parseArgs } from 'node:util';
import { AccSGD } from '@accsgd/core';
import * as ort from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { encodeModel, int64Initializer, node, tensorInfo } from '../src/graphs/onnx-proto.js';
import { buildIdentityModel } from '../src/graphs/utility-graphs.js';
import { OnnxAccSGD } from '../src/onnx-optimizer.js';
import type { OrtTensor } from '../src/runtime.js';

const { values: args } = parseArgs({
  options: {
    size: { type: 'string', default: '16777216' },
    repeats: { type: 'string', default: '9' },
    webgpu: { type: 'boolean', default: false },
    params: { type: 'string', default: '5000' },
    'many-size': { type: 'string', default: '1048576' },
  },
});
const n = Number(args.size);
const repeats = Number(args.repeats);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fill = (seed: number) => {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(i * 0.001 + seed) * 0.5;
  return a;
};
const grad = fill(2);

async function time(step: () => unknown | Promise<unknown>): Promise<number> {
  await step(); // first step: buffers created, sessions built
  await step();
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    await step();
    times.push(performance.now() - t0);
  }
  return median(times);
}

console.log(`AccSGD step over ${n.toLocaleString()} float32 parameters, median of ${repeats}`);
for (const nonFinite of ['error', 'allow'] as const) {
  const core = new AccSGD([fill(1)], { lr: 0.01 }, { nonFinite });
  const variants = [
    ['onnxruntime-node cpu', { ort, executionProvider: 'cpu' }],
    ['onnxruntime-web wasm', { ort: ortWeb, executionProvider: 'wasm' }],
    ['onnxruntime-node cpu, updateGraph', { ort, executionProvider: 'cpu', updateGraph: true }],
  ] as const;
  const steps: [string, () => unknown][] = [['core AccSGD', () => core.step([grad])]];
  const optimizers: OnnxAccSGD[] = [];
  for (const [title, options] of variants) {
    const onnx = await OnnxAccSGD.create(
      [{ params: [{ name: 'w', data: fill(1) }] }],
      { lr: 0.01 },
      {
        ...options,
        nonFinite,
      },
    );
    optimizers.push(onnx);
    steps.push([title, () => onnx.step({ w: grad })]);
  }
  // Two warm-up steps each (buffers created, sessions built), then the steps alternate between
  // core and each variant, so that load on a shared machine falls on all of them alike.
  for (const [, step] of steps) for (let k = 0; k < 2; k++) await step();
  const times = steps.map((): number[] => []);
  for (let r = 0; r < repeats; r++)
    for (const [k, [, step]] of steps.entries()) {
      const t0 = performance.now();
      await step();
      times[k]!.push(performance.now() - t0);
    }
  for (const onnx of optimizers) await onnx.dispose();
  const coreMs = median(times[0]!);
  const parts = steps
    .slice(1)
    .map(
      ([title], k) =>
        `${title} ${median(times[k + 1]!).toFixed(1)} ms (${(median(times[k + 1]!) / coreMs).toFixed(2)}x)`,
    );
  console.log(
    `cpu, nonFinite '${nonFinite}': core AccSGD ${coreMs.toFixed(1)} ms; ${parts.join('; ')}; target <= 1.5x`,
  );
}

/**
 * An optimizer over `count` parameters splitting `total` elements (nonFinite 'error'), created and
 * given its first step (timed), and a function that takes one more step.
 */
async function manyParams(
  count: number,
  total: number,
  options: Parameters<typeof OnnxAccSGD.create>[2],
): Promise<{ createMs: number; step: () => Promise<void>; dispose: () => Promise<void> }> {
  // On webgpu a run returns before the GPU is done: each timing ends with a 1-element read-back
  // of the last parameter, which waits for every queued step and cut.
  const sync =
    options?.executionProvider === 'webgpu'
      ? await ort.InferenceSession.create(firstElement, { executionProviders: ['webgpu'] })
      : null;
  const lengths = Array.from({ length: count }, (_, i) =>
    i < total % count ? Math.floor(total / count) + 1 : Math.floor(total / count),
  );
  const data = lengths.map((n, i) => new Float32Array(n).fill(0.5 + i * 1e-6));
  const grads = Object.fromEntries(lengths.map((n, i) => [`p${i}`, new Float32Array(n).fill(0.01)]));
  const t0 = performance.now();
  const opt = await OnnxAccSGD.create(
    [{ params: data.map((d, i) => ({ name: `p${i}`, data: d })) }],
    { lr: 0.01 },
    options,
  );
  const step = async () => {
    await opt.step(grads);
    if (sync) await sync.run({ x: opt.paramTensor(`p${count - 1}`) as ort.Tensor });
  };
  await step();
  const createMs = performance.now() - t0;
  await step();
  return {
    createMs,
    step,
    dispose: async () => {
      await opt.dispose();
      await sync?.release();
    },
  };
}

const firstElement = encodeModel({
  name: 'first_element',
  nodes: [node('Slice', ['x', 'starts', 'ends'], ['y'])],
  inputs: [tensorInfo('x', ['n'])],
  outputs: [tensorInfo('y', [1])],
  initializers: [int64Initializer('starts', [0]), int64Initializer('ends', [1])],
});
const manyCount = Number(args.params);
const manySize = Number(args['many-size']);
const manyRuntimes: [string, Parameters<typeof OnnxAccSGD.create>[2]][] = [
  ['onnxruntime-node cpu', { ort, executionProvider: 'cpu' }],
  ['onnxruntime-web wasm', { ort: ortWeb, executionProvider: 'wasm' }],
  ['onnxruntime-node cpu, updateGraph', { ort, executionProvider: 'cpu', updateGraph: true }],
  ...(args.webgpu ? [['onnxruntime-node webgpu', { ort, executionProvider: 'webgpu' }] as const] : []),
];
{
  // core's own AccSGD on ordinary arrays, for comparison: its per-tensor work is in its step too.
  const coreStep = async (count: number) => {
    const lengths = Array.from({ length: count }, (_, i) =>
      i < manySize % count ? Math.floor(manySize / count) + 1 : Math.floor(manySize / count),
    );
    const core = new AccSGD(
      lengths.map((len) => new Float32Array(len).fill(0.5)),
      { lr: 0.01 },
    );
    const grads = lengths.map((len) => new Float32Array(len).fill(0.01));
    return time(() => core.step(grads));
  };
  const one = await coreStep(1);
  const many = await coreStep(manyCount);
  console.log(
    `${manyCount.toLocaleString('en')} parameters vs 1 of ${manySize.toLocaleString('en')} elements, core AccSGD: step ${many.toFixed(2)} vs ${one.toFixed(2)} ms (${(many / one).toFixed(2)}x)`,
  );
}
for (const [title, options] of manyRuntimes) {
  const one = await manyParams(1, manySize, options);
  const many = await manyParams(manyCount, manySize, options);
  // Steps alternate between the two, so that load on a shared machine falls on both alike.
  const oneMs: number[] = [];
  const manyMs: number[] = [];
  for (let r = 0; r < repeats; r++) {
    for (const [which, times] of [
      [one, oneMs],
      [many, manyMs],
    ] as const) {
      const t0 = performance.now();
      await which.step();
      times.push(performance.now() - t0);
    }
  }
  await one.dispose();
  await many.dispose();
  const [oneStep, manyStep] = [median(oneMs), median(manyMs)];
  console.log(
    `${manyCount.toLocaleString('en')} parameters vs 1 of ${manySize.toLocaleString('en')} elements, ${title}: create + first step ${many.createMs.toFixed(1)} vs ${one.createMs.toFixed(1)} ms (${(many.createMs / one.createMs).toFixed(2)}x), step ${manyStep.toFixed(2)} vs ${oneStep.toFixed(2)} ms (${(manyStep / oneStep).toFixed(2)}x); target < 2x`,
  );
}

if (args.webgpu) {
  const slice = firstElement;
  const options = { executionProviders: ['webgpu'] };
  const sync = await ort.InferenceSession.create(slice, options);
  const copy = await ort.InferenceSession.create(buildIdentityModel(), {
    ...options,
    preferredOutputLocation: { y: 'gpu-buffer' },
  });
  const onnx = await OnnxAccSGD.create(
    [{ params: [{ name: 'w', data: fill(1) }] }],
    { lr: 0.01 },
    {
      ort: ort,
      executionProvider: 'webgpu',
      nonFinite: 'allow',
    },
  );
  const settle = async (t: OrtTensor) => (await sync.run({ x: t as ort.Tensor })).y!.data;
  const stepMs = await time(async () => {
    await onnx.step({ w: grad });
    await settle(onnx.paramTensor('w'));
  });
  const copyMs = await time(async () => {
    const { y } = await copy.run({ x: onnx.paramTensor('w') as ort.Tensor });
    await settle(y as OrtTensor);
    y!.dispose();
  });
  console.log(
    `webgpu (parameters resident; gradient uploaded each step): step ${stepMs.toFixed(1)} ms, Identity copy of the same tensor ${copyMs.toFixed(1)} ms, ratio ${(stepMs / copyMs).toFixed(2)}x`,
  );
  await onnx.dispose();
  await sync.release();
  await copy.release();
}
