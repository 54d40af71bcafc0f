import { findNodeWebGPU } from '@accsgd/conformance';
import { AccSGD } from '@accsgd/core';
import * as ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { describe, expect, it } from 'vitest';
import { OnnxAccSGD, type OnnxAccSGDOptions } from './onnx-optimizer.js';
import { countingOrt, sameBits, seeded } from './test-support/counting-ort.js';
import { webgpuUnavailable } from './test-support/webgpu.js';

// Thousands of small parameters (per-layer tensors of a real model), kept small in total so that
// software Vulkan steps them quickly. Before flat storage, 2,000 parameters took 42 s a step and
// 5,000 never finished their first step: the update graph had nodes per parameter and each
// pattern of present gradients built a session.
const COUNT = 3000;
/** Lengths 1..7: most not a multiple of 4 (padding in the CPU store, uneven Split parts). */
const lengthOf = (i: number) => 1 + (i % 7);
const names = Array.from({ length: COUNT }, (_, i) => `layer${i}`);
/** Group 0 holds the first 2,000 parameters, group 1 the rest, with other hyperparameters. */
const SPLIT = 2000;
const initial = names.map((_, i) => seeded(lengthOf(i), i + 1));

/** Step t's gradients: every parameter on steps 0 and 2; on step 1 every third is missing. */
function gradsAt(t: number): (Float32Array | null)[] {
  return names.map((_, i) => (t === 1 && i % 3 === 0 ? null : seeded(lengthOf(i), 10_000 * (t + 1) + i)));
}

async function compareWithCore(options: OnnxAccSGDOptions): Promise<{ created: number }> {
  const counting = countingOrt(options.ort!);
  const opt = await OnnxAccSGD.create(
    [
      { params: names.slice(0, SPLIT).map((name, i) => ({ name, data: initial[i]! })) },
      {
        lr: 0.03,
        kappa: 100,
        weightDecay: 0.01,
        params: names.slice(SPLIT).map((name, k) => ({ name, data: initial[SPLIT + k]! })),
      },
    ],
    { lr: 0.1 },
    { ...options, ort: counting.ort },
  );
  const twins = initial.map((a) => a.slice());
  const core = new AccSGD(
    [
      { params: twins.slice(0, SPLIT) },
      { lr: 0.03, kappa: 100, weightDecay: 0.01, params: twins.slice(SPLIT) },
    ],
    { lr: 0.1 },
  );
  for (let t = 0; t < 4; t++) {
    // Step 3: only the parameters that missed step 1, which take their first step now beside
    // the others' later ones ('masked' on the graph path).
    const grads =
      t === 3 ? names.map((_, i) => (i % 3 === 0 ? seeded(lengthOf(i), 7 + i) : null)) : gradsAt(t);
    await opt.step(grads);
    core.step(grads);
  }
  const { params, buffers } = await opt.read();
  let mismatches = 0;
  names.forEach((name, i) => {
    if (!sameBits(params.get(name)!, twins[i]!)) mismatches++;
    if (!sameBits(buffers.get(name)!, core.buffer(i) as Float32Array)) mismatches++;
  });
  expect(mismatches).toBe(0);
  // The handed-out tensor of the last parameter holds its current values.
  expect(sameBits(await opt.download(opt.paramTensor(names[COUNT - 1]!)), twins[COUNT - 1]!)).toBe(true);
  expect(opt.groups.map((g) => g.step)).toEqual([4, 4]);
  const created = counting.created();
  await opt.dispose();
  return { created };
}

describe(`OnnxAccSGD with ${COUNT.toLocaleString('en')} parameters`, () => {
  it("matches core's float32 AccSGD bit for bit on onnxruntime-node cpu (core's kernel, no session)", async () => {
    expect((await compareWithCore({ ort: ortNode, executionProvider: 'cpu' })).created).toBe(0);
  });

  it("matches core's float32 AccSGD bit for bit on onnxruntime-web wasm (core's kernel, no session)", async () => {
    expect((await compareWithCore({ ort: ortWeb, executionProvider: 'wasm' })).created).toBe(0);
  });

  it("matches core's float32 AccSGD bit for bit with the update graph on cpu, from a handful of sessions", async () => {
    const { created } = await compareWithCore({ ort: ortNode, executionProvider: 'cpu', updateGraph: true });
    // Update graphs: 'first', 'masked', 'later'; cutting: Slice + Split of 7 and of the remainders
    // (2,000 = 285 x 7 + 5, 1,000 = 142 x 7 + 6): 6, whatever the parameter count.
    expect(created).toBe(6);
  });

  it('takes a gradient that is a parameter tensor’s own data on cpu (copied before the in-place update)', async () => {
    const opt = await OnnxAccSGD.create(
      [
        {
          params: [
            { name: 'a', data: [1, 2, 3] },
            { name: 'b', data: [4, 5, 6] },
          ],
        },
      ],
      { lr: 0.1 },
      { ort: ortNode },
    );
    const a = new Float32Array([1, 2, 3]);
    const b = new Float32Array([4, 5, 6]);
    const core = new AccSGD([a, b], { lr: 0.1 });
    // b's gradient is a's live memory: a is updated before b in the same step.
    await opt.step({ a: new Float32Array([1, 1, 1]), b: opt.paramTensor('a').data as Float32Array });
    core.step([new Float32Array([1, 1, 1]), new Float32Array([1, 2, 3])]);
    const { params } = await opt.read();
    expect(sameBits(params.get('a')!, a)).toBe(true);
    expect(sameBits(params.get('b')!, b)).toBe(true);
    await opt.dispose();
  });
});

const unavailable = await webgpuUnavailable(await findNodeWebGPU());
const required = process.env.ACCSGD_REQUIRE_WEBGPU === '1';
if (unavailable !== undefined && !required)
  console.warn(`[accsgd] SKIPPED onnxruntime-node webgpu, many parameters: ${unavailable}`);
(unavailable !== undefined && !required ? describe.skip : describe)(
  `OnnxAccSGD with ${COUNT.toLocaleString('en')} parameters on onnxruntime-node webgpu`,
  () => {
    it('has its execution provider (ACCSGD_REQUIRE_WEBGPU=1 fails here instead of skipping)', () => {
      expect(unavailable).toBeUndefined();
    });

    it("matches core's float32 AccSGD bit for bit with every node on the GPU, from a handful of sessions", async () => {
      const { created } = await compareWithCore({
        ort: ortNode,
        executionProvider: 'webgpu',
        strictPlacement: true,
      });
      // The update graphs and the cutting sessions as on cpu, plus upload and download Identities,
      // plus the one probe of the adapter's Split width (released at once).
      expect(created).toBe(9);
    });
  },
);
