import { findNodeWebGPU } from '@accsgd/conformance';
import { AccSGD } from '@accsgd/core';
import { OnnxAccSGD } from '@accsgd/onnx-training';
import { encodeModel, int64Initializer, node, valueInfo } from '@accsgd/onnx-training/model-builder';
import * as ort from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { type Target, verdict } from './stats.js';
import { filled, timeInterleaved } from './timing.js';
import { MANY, type Row, type SectionResult } from './types.js';

const LR = 0.01;
/** The target: 5,000 parameters create and step in under 2x one parameter of the same total size. */
export const MANY_TARGET: Target = { op: '<', limit: 2 };

/** `count` lengths that add up to `total`, as even as they can be. */
export function evenLengths(count: number, total: number): number[] {
  return Array.from({ length: count }, (_, i) => Math.floor(total / count) + (i < total % count ? 1 : 0));
}

type Options = Parameters<typeof OnnxAccSGD.create>[2];

/**
 * The per-parameter cost of a step: @accsgd/core's AccSGD and OnnxAccSGD on each runtime, with
 * MANY.tensors parameters beside one parameter of the same total size, in the same process.
 * OnnxAccSGD's "create" is OnnxAccSGD.create plus its first step (sessions built, buffers made);
 * on webgpu each timing ends with a one-element read-back of the last parameter, so queued GPU
 * work is counted.
 */
export async function runMany(repeats: number): Promise<SectionResult> {
  const rows: Row[] = [];
  const layout = MANY.label;
  const shapes = { many: evenLengths(MANY.tensors, MANY.total), one: [MANY.total] };
  // The target is OnnxAccSGD's (issue item 3); core's row, which ONNX's CPU path stands on, is shown beside it.
  const add = (framework: string, backend: string, variant: string, ms: number, baselineMs: number) => {
    const ratio = ms / baselineMs;
    const target = framework === '@accsgd/onnx-training' ? MANY_TARGET : null;
    rows.push({
      framework,
      backend,
      layout,
      variant,
      ms,
      baseline: `1 parameter of ${MANY.total.toLocaleString('en')}`,
      baselineMs,
      ratio,
      ...(target ? { target, verdict: verdict(ratio, target) } : {}),
    });
  };

  const core = Object.fromEntries(
    Object.entries(shapes).map(([k, lengths]) => [
      k,
      {
        opt: new AccSGD(
          lengths.map((n, i) => filled(n, i + 1, 0.5)),
          { lr: LR },
        ),
        grads: lengths.map((n, i) => filled(n, i + 2, 1e-2)),
      },
    ]),
  ) as Record<'many' | 'one', { opt: AccSGD; grads: Float32Array[] }>;
  // More repeats than the other sections: a step here is about a millisecond, and the JIT needs a
  // few hundred of them before it settles.
  const steps = Math.max(repeats * 40, 200);
  const coreMs = await timeInterleaved(
    { many: () => core.many.opt.step(core.many.grads), one: () => core.one.opt.step(core.one.grads) },
    steps,
  );
  add(
    '@accsgd/core',
    'Float32Array',
    `AccSGD.step, ${MANY.tensors.toLocaleString('en')} tensors`,
    coreMs.many,
    coreMs.one,
  );

  const webgpu = await findNodeWebGPU();
  const runtimes: [string, Options][] = [
    ['onnxruntime-node cpu', { ort, executionProvider: 'cpu' }],
    ['onnxruntime-web wasm', { ort: ortWeb, executionProvider: 'wasm' }],
    ...(webgpu.available
      ? ([[`onnxruntime-node webgpu (${webgpu.description})`, { ort, executionProvider: 'webgpu' }]] as [
          string,
          Options,
        ][])
      : []),
  ];
  for (const [backend, options] of runtimes) {
    const made: Record<
      'many' | 'one',
      {
        createMs: number[];
        step: () => Promise<void>;
        stepArray: () => Promise<void>;
        dispose: () => Promise<void>;
      }
    > = {
      many: await manyParams(shapes.many, options),
      one: await manyParams(shapes.one, options),
    };
    // Two more creations each, interleaved, for a median of three.
    for (let r = 0; r < 2; r++)
      for (const k of ['many', 'one'] as const) {
        const again = await manyParams(shapes[k], options);
        made[k].createMs.push(...again.createMs);
        await again.dispose();
      }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
    add(
      '@accsgd/onnx-training',
      backend,
      'OnnxAccSGD.create + first step',
      median(made.many.createMs),
      median(made.one.createMs),
    );
    const isGpu = options?.executionProvider === 'webgpu';
    const ms = await timeInterleaved(
      { many: made.many.step, manyArray: made.many.stepArray, one: made.one.step },
      isGpu ? repeats : steps,
    );
    add('@accsgd/onnx-training', backend, 'OnnxAccSGD.step, gradients keyed by name', ms.many, ms.one);
    add(
      '@accsgd/onnx-training',
      backend,
      'OnnxAccSGD.step, gradients in parameter order (an array)',
      ms.manyArray,
      ms.one,
    );
    await made.many.dispose();
    await made.one.dispose();
  }
  return { section: 'many', rows };
}

async function manyParams(
  lengths: readonly number[],
  options: Options,
): Promise<{
  createMs: number[];
  step: () => Promise<void>;
  stepArray: () => Promise<void>;
  dispose: () => Promise<void>;
}> {
  const sync =
    options?.executionProvider === 'webgpu'
      ? await ort.InferenceSession.create(FIRST_ELEMENT, { executionProviders: ['webgpu'] })
      : null;
  const names = lengths.map((_, i) => `p${i}`);
  const gradList = lengths.map((n, i) => filled(n, i + 2, 1e-2));
  const grads = Object.fromEntries(gradList.map((g, i) => [names[i]!, g]));
  const t0 = performance.now();
  const opt = await OnnxAccSGD.create(
    [{ params: lengths.map((n, i) => ({ name: names[i]!, data: filled(n, i + 1, 0.5) })) }],
    { lr: LR },
    options,
  );
  const settle = async () => {
    if (sync) await sync.run({ x: opt.paramTensor(names[names.length - 1]!) as ort.Tensor });
  };
  const step = async () => {
    await opt.step(grads);
    await settle();
  };
  // The same gradients aligned with the parameters, as PyTorch users hand over p.grad in order:
  // no 5,000-key object to enumerate.
  const stepArray = async () => {
    await opt.step(gradList);
    await settle();
  };
  await step();
  const createMs = performance.now() - t0;
  return {
    createMs: [createMs],
    step,
    stepArray,
    dispose: async () => {
      await opt.dispose();
      await sync?.release();
    },
  };
}

/** y = x[0:1]: a one-element read-back that waits for the GPU work queued before it. */
const FIRST_ELEMENT = encodeModel({
  name: 'first_element',
  nodes: [node('Slice', ['x', 'starts', 'ends'], ['y'])],
  inputs: [valueInfo('x', ['n'])],
  outputs: [valueInfo('y', [1])],
  initializers: [int64Initializer('starts', [1], [0]), int64Initializer('ends', [1], [1])],
});
