import { findNodeWebGPU } from '@accsgd/conformance';
import * as ortNode from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import type { OrtModule } from '../runtime.js';
import { mlpModel, random } from '../test-support/forward-models.js';
import { webgpuUnavailable } from '../test-support/webgpu.js';
import { OnnxTrainer } from './onnx-trainer.js';

const ort: OrtModule = ortNode;
const unavailable = await webgpuUnavailable(await findNodeWebGPU());
const required = process.env.ACCSGD_REQUIRE_WEBGPU === '1';
if (unavailable !== undefined && !required)
  console.warn(`[accsgd] SKIPPED train step on onnxruntime-node webgpu: ${unavailable}`);
const suite = unavailable !== undefined && !required ? describe.skip : describe;

suite('OnnxTrainer on onnxruntime-node webgpu', () => {
  it('has its execution provider (ACCSGD_REQUIRE_WEBGPU=1 fails here instead of skipping)', () => {
    expect(unavailable).toBeUndefined();
  });

  it('runs every node of the MLP train step on the GPU (disable_cpu_ep_fallback) and matches cpu', async () => {
    const [B, IN, H, C] = [16, 4, 8, 3];
    const model = mlpModel({ batch: 'batch', inF: IN, hidden: H, classes: C, seed: 9 });
    const options = {
      loss: 'softmax-cross-entropy',
      dimensions: { batch: B },
      hyperparams: { lr: 0.05 },
      ort,
    } as const;
    // strictPlacement: session creation fails if any node (forward, loss, backward or update)
    // would fall back to the CPU.
    const gpu = await OnnxTrainer.create(model, {
      ...options,
      executionProvider: 'webgpu',
      strictPlacement: true,
    });
    const cpu = await OnnxTrainer.create(model, { ...options, executionProvider: 'cpu' });
    for (let t = 0; t < 5; t++) {
      const x = Float32Array.from(random(B * IN, 40 + t, 2));
      const labels = new Float32Array(B * C);
      for (let r = 0; r < B; r++) labels[r * C + ((r + t) % C)] = 1;
      const a = await gpu.step({ x }, labels);
      const b = await cpu.step({ x }, labels);
      expect(a).toBeCloseTo(b, 4);
    }
    const g = await gpu.read();
    const c = await cpu.read();
    for (const name of gpu.paramNames) {
      const mine = g.params.get(name)!;
      const theirs = c.params.get(name)!;
      for (let i = 0; i < mine.length; i++) expect(Math.abs(mine[i]! - theirs[i]!)).toBeLessThan(1e-4);
    }
    await gpu.dispose();
    await cpu.dispose();
  });
});
