import { findNodeWebGPU } from '@accsgd/conformance';
import { AccSGDGradientError } from '@accsgd/core';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { forwardModel } from '../test-support/forward-models.js';
import { webgpuUnavailable } from '../test-support/webgpu.js';
import { OnnxTrainer } from './onnx-trainer.js';

const unavailable = await webgpuUnavailable(await findNodeWebGPU());
const required = process.env.ACCSGD_REQUIRE_WEBGPU === '1';
if (unavailable !== undefined && !required)
  console.warn(
    `[accsgd] SKIPPED BatchNormalization running statistics on onnxruntime-node webgpu: ${unavailable}`,
  );

/**
 * The running statistics on the GPU (strict placement): fed and written back as GPU tensors, and
 * checked there for non-finite values (one number read back per tensor) before a step commits.
 */
const model = forwardModel({
  inputs: { x: [4, 2] },
  params: {
    W: [
      [2, 2],
      [1, 0.5, -0.25, 1],
    ],
    g: [[2], [1, 1.5]],
    b: [[2], [0, 0.1]],
    m: [[2], [0.2, -0.1]],
    v: [[2], [1, 2]],
  },
  nodes: [
    ['MatMul', ['x', 'W'], ['h']],
    ['BatchNormalization', ['h', 'g', 'b', 'm', 'v'], ['y', 'rm', 'rv'], { training_mode: 1 }],
  ],
  outputs: { y: [4, 2] },
});
const labels = new Float32Array([0.5, -1, 1, 0, -0.5, 1, 0, 0.25]);

describe.skipIf(unavailable !== undefined && !required)(
  'running statistics on onnxruntime-node webgpu',
  () => {
    it('are written back on the GPU matching cpu; a step that would make one non-finite changes nothing', async () => {
      const options = { loss: 'mse' as const, hyperparams: { lr: 0.1 }, ort };
      const gpu = await OnnxTrainer.create(model, {
        ...options,
        executionProvider: 'webgpu',
        strictPlacement: true,
      });
      const cpu = await OnnxTrainer.create(model, { ...options, executionProvider: 'cpu' });
      for (const seed of [1, 2, 3]) {
        const x = new Float32Array(8).map((_, i) => Math.sin(seed * 7 + i * 1.3) * 2);
        await gpu.step({ x }, labels);
        await cpu.step({ x }, labels);
      }
      const [a, b] = [(await gpu.read()).statistics, (await cpu.read()).statistics];
      expect([...a.keys()]).toEqual(['m', 'v']);
      let worst = 0;
      for (const [name, values] of a)
        values.forEach((v, i) => {
          worst = Math.max(worst, Math.abs(v - b.get(name)![i]!));
        });
      console.log(`[running statistics on webgpu] max |gpu - cpu| after 3 steps ${worst.toExponential(2)}`);
      expect(worst).toBeLessThan(1e-5);
      // The batch variance overflows float32; loss and parameters stay finite.
      const huge = new Float32Array([1e20, 1, -1e20, 2, 1e20, 3, -1e20, 4]);
      const error = await gpu.step({ x: huge }, labels).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(AccSGDGradientError);
      expect((error as Error).message).toMatch(/would make its running statistic "v" non-finite/);
      expect((await gpu.read()).statistics).toEqual(a);
      expect(gpu.stepCount).toBe(3);
      await gpu.dispose();
      await cpu.dispose();
    }, 120_000);
  },
);
