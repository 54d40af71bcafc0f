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
  const coreParam = fill(1);
  const core = new AccSGD([coreParam], { lr: 0.01 }, { nonFinite });
  const coreMs = await time(() => core.step([grad]));
  const variants = [
    ['onnxruntime-node cpu', { ort, executionProvider: 'cpu' }],
    ['onnxruntime-web wasm', { ort: ortWeb, executionProvider: 'wasm' }],
    ['onnxruntime-node cpu, updateGraph', { ort, executionProvider: 'cpu', updateGraph: true }],
  ] as const;
  const parts: string[] = [];
  for (const [title, options] of variants) {
    const onnx = await OnnxAccSGD.create(
      [{ params: [{ name: 'w', data: fill(1) }] }],
      { lr: 0.01 },
      {
        ...options,
        nonFinite,
      },
    );
    const onnxMs = await time(() => onnx.step({ w: grad }));
    await onnx.dispose();
    parts.push(`${title} ${onnxMs.toFixed(1)} ms (${(onnxMs / coreMs).toFixed(2)}x)`);
  }
  console.log(
    `cpu, nonFinite '${nonFinite}': core AccSGD ${coreMs.toFixed(1)} ms; ${parts.join('; ')}; target <= 1.5x`,
  );
}

/**
 * Create + first step, then the median later step, of `count` parameters splitting `total`
 * elements (nonFinite 'error'), on one runtime.
 */
async function manyParams(
  count: number,
  total: number,
  options: Parameters<typeof OnnxAccSGD.create>[2],
): Promise<{ createMs: number; stepMs: number }> {
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
  await opt.step(grads);
  const createMs = performance.now() - t0;
  const stepMs = await time(() => opt.step(grads));
  await opt.dispose();
  return { createMs, stepMs };
}

const manyCount = Number(args.params);
const manySize = Number(args['many-size']);
const manyRuntimes: [string, Parameters<typeof OnnxAccSGD.create>[2]][] = [
  ['onnxruntime-node cpu', { ort, executionProvider: 'cpu' }],
  ['onnxruntime-web wasm', { ort: ortWeb, executionProvider: 'wasm' }],
  ['onnxruntime-node cpu, updateGraph', { ort, executionProvider: 'cpu', updateGraph: true }],
  ...(args.webgpu ? [['onnxruntime-node webgpu', { ort, executionProvider: 'webgpu' }] as const] : []),
];
for (const [title, options] of manyRuntimes) {
  const one = await manyParams(1, manySize, options);
  const many = await manyParams(manyCount, manySize, options);
  console.log(
    `${manyCount.toLocaleString('en')} parameters vs 1 of ${manySize.toLocaleString('en')} elements, ${title}: create + first step ${many.createMs.toFixed(1)} vs ${one.createMs.toFixed(1)} ms (${(many.createMs / one.createMs).toFixed(2)}x), step ${many.stepMs.toFixed(2)} vs ${one.stepMs.toFixed(2)} ms (${(many.stepMs / one.stepMs).toFixed(2)}x); target < 2x`,
  );
}

if (args.webgpu) {
  const slice = encodeModel({
    name: 'first_element',
    nodes: [node('Slice', ['x', 'starts', 'ends'], ['y'])],
    inputs: [tensorInfo('x', ['n'])],
    outputs: [tensorInfo('y', [1])],
    initializers: [int64Initializer('starts', [0]), int64Initializer('ends', [1])],
  });
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
