import { findNodeWebGPU } from '@accsgd/conformance';
import { AccSGD, AccSGDGradientError, accuracyBound, relativeError } from '@accsgd/core';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { forwardModel } from '../test-support/forward-models.js';
import { webgpuUnavailable } from '../test-support/webgpu.js';
import { OnnxTrainer } from './onnx-trainer.js';

const unavailable = await webgpuUnavailable(await findNodeWebGPU());
const required = process.env.ACCSGD_REQUIRE_WEBGPU === '1';
if (unavailable !== undefined && !required)
  console.warn(`[accsgd] SKIPPED OnnxTrainer non-finite check on onnxruntime-node webgpu: ${unavailable}`);
const suite = unavailable !== undefined && !required ? describe.skip : describe;

suite('OnnxTrainer on onnxruntime-node webgpu: parameters a finite loss would make non-finite', () => {
  it('checks the new GPU tensors on the GPU (strict placement) and refuses the step, changing nothing', async () => {
    expect(unavailable).toBeUndefined();
    // loss = sum(sqrt(x * W)): at x = 0 the loss is 0 and the gradient 0 / 0 = NaN.
    const model = forwardModel({
      inputs: { x: [3] },
      params: { W: [[3], [1, 2, 3]] },
      nodes: [
        ['Mul', ['x', 'W'], ['m']],
        ['Sqrt', ['m'], ['s']],
        ['ReduceSum', ['s'], ['y'], { keepdims: 0 }],
      ],
      outputs: { y: [] },
    });
    const trainer = await OnnxTrainer.create(model, {
      loss: 'scalar',
      hyperparams: { lr: 0.1 },
      ort,
      executionProvider: 'webgpu',
      strictPlacement: true,
    });
    const error = await trainer.step({ x: new Float32Array(3) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AccSGDGradientError);
    expect((error as Error).message).toMatch(
      /step 1 would make its parameter non-finite \(element 0 is NaN\)/,
    );
    expect(Array.from((await trainer.read()).params.get('W')!)).toEqual([1, 2, 3]);
    expect(trainer.stepCount).toBe(0);
    expect(await trainer.step({ x: new Float32Array([1, 1, 1]) })).toBeCloseTo(
      1 + Math.SQRT2 + Math.sqrt(3),
      5,
    );
    expect(trainer.stepCount).toBe(1);
    await trainer.dispose();
  });

  it('keeps the subnormal gradient multipliers of lr = 1e-40, which the WebGPU EP flushes to zero', async () => {
    // loss = sum(x * W): the gradient is x, near 1e25, and W near 1e-15, so the gradient term
    // (about 1e-15) is as large as W. Before, the flushed multipliers dropped it (0.65 relative).
    const size = 8;
    const init = Array.from({ length: size }, (_, i) => (1 + (i % 7)) * 1e-15);
    const x = new Float32Array(size).map((_, i) => ((i % 5) - 2) * 1e25 + 3e24);
    const model = forwardModel({
      inputs: { x: [size] },
      params: { W: [[size], init] },
      nodes: [
        ['Mul', ['x', 'W'], ['m']],
        ['ReduceSum', ['m'], ['y'], { keepdims: 0 }],
      ],
      outputs: { y: [] },
    });
    const trainer = await OnnxTrainer.create(model, {
      loss: 'scalar',
      hyperparams: { lr: 1e-40 },
      ort,
      executionProvider: 'webgpu',
      strictPlacement: true,
    });
    const w = Float32Array.from(init);
    const core = new AccSGD([w], { lr: 1e-40 });
    for (let t = 0; t < 3; t++) {
      await trainer.step({ x });
      core.step([x]);
    }
    expect(relativeError(w, init)).toBeGreaterThan(0.1);
    expect(relativeError((await trainer.read()).params.get('W')!, w)).toBeLessThanOrEqual(
      accuracyBound('float32', 3),
    );
    // A learning rate whose multipliers are normal goes back to the train step without scales.
    trainer.setLearningRate(0.01);
    expect(Number.isFinite(await trainer.step({ x: new Float32Array(size).fill(1e-3) }))).toBe(true);
    await trainer.dispose();
  });
});
