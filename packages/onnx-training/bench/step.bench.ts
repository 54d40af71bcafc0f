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
 * Many parameters against one of the same total size (the < 2x target) are measured by
 * `npm run bench -- --sections many` at the repository root (packages/evidence/src/throughput).
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

const firstElement = encodeModel({
  name: 'first_element',
  nodes: [node('Slice', ['x', 'starts', 'ends'], ['y'])],
  inputs: [tensorInfo('x', ['n'])],
  outputs: [tensorInfo('y', [1])],
  initializers: [int64Initializer('starts', [0]), int64Initializer('ends', [1])],
});
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
