import { findNodeWebGPU } from '@accsgd/conformance';
import { AccSGD, accuracyBound, relativeError } from '@accsgd/core';
import * as ortNode from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { OnnxAccSGD } from './onnx-optimizer.js';
import type { OrtModule } from './runtime.js';
import { countingOrt, sameBits, seeded } from './test-support/counting-ort.js';
import { webgpuUnavailable } from './test-support/webgpu.js';

const ort: OrtModule = ortNode;
const unavailable = await webgpuUnavailable(await findNodeWebGPU());
const required = process.env.ACCSGD_REQUIRE_WEBGPU === '1';
if (unavailable !== undefined && !required)
  console.warn(`[accsgd] SKIPPED onnxruntime-node webgpu: ${unavailable}`);
const suite = unavailable !== undefined && !required ? describe.skip : describe;

const grads = (t: number) => ({ w: seeded(4096, 10 + t), b: seeded(7, 20 + t) });

suite('OnnxAccSGD on onnxruntime-node webgpu', () => {
  it('has its execution provider (ACCSGD_REQUIRE_WEBGPU=1 fails here instead of skipping)', () => {
    expect(unavailable).toBeUndefined();
  });

  const create = (options = {}) =>
    OnnxAccSGD.create(
      [
        {
          lr: 0.1,
          weightDecay: 0.001,
          params: [
            { name: 'w', shape: [64, 64], data: seeded(4096, 1) },
            { name: 'b', data: seeded(7, 2) },
          ],
        },
      ],
      { lr: 0.1 },
      { ort, executionProvider: 'webgpu', strictPlacement: true, ...options },
    );

  it('keeps parameters and buffers on the GPU between steps and disposes the previous tensors', async () => {
    const opt = await create();
    expect(opt.paramTensor('w').location).toBe('gpu-buffer'); // uploaded at create
    const initial = opt.paramTensor('w');
    await opt.step(grads(0));
    expect(initial.location).toBe('none'); // disposed by the step that replaced it
    for (let t = 1; t < 4; t++) {
      const previous = opt.paramTensor('b');
      await opt.step(grads(t));
      expect(previous.location).toBe('none');
      expect(opt.paramTensor('w').location).toBe('gpu-buffer');
      expect(opt.paramTensor('b').location).toBe('gpu-buffer');
    }
    await opt.dispose();
  });

  it('download() of a paramTensor kept past its step is AccSGDStateError, never a read of freed GPU memory', async () => {
    // Before: a RangeError from ORT, then a segfault of the process in 2 of 4 runs.
    const opt = await create();
    const stale = opt.paramTensor('b');
    await opt.step(grads(0));
    for (let k = 0; k < 4; k++)
      await expect(opt.download(stale)).rejects.toThrow(
        /^this tensor was disposed: a paramTensor\(\) handle is valid until the next step/,
      );
    const current = await opt.download(opt.paramTensor('b'));
    expect(Array.from(current)).toEqual(Array.from((await opt.read()).params.get('b')!));
    await opt.dispose();
    await expect(opt.download(stale)).rejects.toThrow(/this tensor was disposed/);
  });

  it("matches core's float32 AccSGD (bit-identical here; the contract is SPEC §3's bound)", async () => {
    // strictPlacement: every session is created with disable_cpu_ep_fallback, so the update, the
    // Identity uploads and read-backs all run on the WebGPU EP or fail.
    const opt = await create();
    const w = seeded(4096, 1);
    const b = seeded(7, 2);
    const core = new AccSGD([{ lr: 0.1, weightDecay: 0.001, params: [w, b], names: ['w', 'b'] }], {
      lr: 0.1,
    });
    for (let t = 0; t < 5; t++) {
      if (t === 2) {
        opt.setLearningRate(0.03);
        core.setLearningRate(0.03);
      }
      await opt.step(grads(t));
      core.step(grads(t));
    }
    const { params, buffers } = await opt.read();
    expect(relativeError(params.get('w')!, w)).toBeLessThanOrEqual(accuracyBound('float32', 5));
    expect(relativeError(buffers.get('b')!, core.buffer('b')!)).toBeLessThanOrEqual(
      accuracyBound('float32', 5),
    );
    // Observed on SwiftShader: Mul and Add are separate WGSL dispatches, so no contraction into FMA.
    expect(sameBits(params.get('w')!, w)).toBe(true);
    expect(sameBits(params.get('b')!, b)).toBe(true);
    await opt.dispose();
  });

  it('keeps the subnormal gradient multipliers of lr = 1e-40, which the WebGPU EP flushes to zero', async () => {
    // Parameters near 1e-15, gradients near 1e25: the gradient term (about 1e-15) is as large as the
    // parameters. Before, the flushed multipliers dropped it: 0.6 relative error, 2.3e5x the bound.
    const size = 64;
    const init = new Float32Array(size).map((_, i) => (1 + (i % 7)) * 1e-15);
    const grad = () => new Float32Array(size).map((_, i) => ((i % 5) - 2) * 1e25 + 3e24);
    const opt = await OnnxAccSGD.create(
      [{ params: [{ name: 'w', data: init }] }],
      { lr: 1e-40 },
      { ort, executionProvider: 'webgpu', strictPlacement: true },
    );
    const w = init.slice();
    const core = new AccSGD([w], { lr: 1e-40 });
    for (let t = 0; t < 3; t++) {
      await opt.step({ w: grad() });
      core.step([grad()]);
    }
    expect(relativeError(w, init)).toBeGreaterThan(0.1);
    expect(relativeError((await opt.read()).params.get('w')!, w)).toBeLessThanOrEqual(
      accuracyBound('float32', 3),
    );
    await opt.dispose();
  });

  it('round-trips the state file through GPU buffers and releases every session on dispose', async () => {
    const counting = countingOrt(ort);
    const opt = await create({ ort: counting.ort });
    await opt.step(grads(0));
    const state = await opt.exportState();
    await opt.step(grads(1));
    await opt.importState(state);
    expect(await opt.exportState()).toEqual(state);
    expect(opt.paramTensor('w').location).toBe('gpu-buffer');
    // upload (Identity to gpu-buffer), download (Identity to cpu), first-step and later update
    // graphs, the Slice + Split that cuts the group's flat tensor into w and b, and the probe of
    // the adapter's Split width (released as soon as it has run).
    expect(counting.created()).toBe(6);
    await opt.dispose();
    expect(counting.released()).toBe(6);
  });
});
