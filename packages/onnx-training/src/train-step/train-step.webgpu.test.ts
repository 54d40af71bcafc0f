import { findNodeWebGPU } from '@accsgd/conformance';
import * as ortNode from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import type { OrtModule } from '../runtime.js';
import { encoderModel, mlpModel, random, tokenBatch } from '../test-support/forward-models.js';
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

  it('runs every node of the BERT-shaped encoder train step on the GPU (Gather and its ScatterND-add gradient, LayerNormalization, Erf, Slice/Pad, Concat, Where, Pow, ...) and matches cpu', async () => {
    const [B, L] = [8, 6];
    const model = encoderModel({ batch: 'batch', seq: 'seq', seed: 3 });
    const options = {
      loss: 'softmax-cross-entropy',
      dimensions: { batch: B, seq: L },
      hyperparams: { lr: 0.05 },
      ort,
    } as const;
    const gpu = await OnnxTrainer.create(model, {
      ...options,
      executionProvider: 'webgpu',
      strictPlacement: true,
    });
    const cpu = await OnnxTrainer.create(model, { ...options, executionProvider: 'cpu' });
    let worst = 0;
    for (let t = 0; t < 5; t++) {
      const { ids, mask, labels } = tokenBatch(200 + t, B, L);
      const a = await gpu.step({ ids, mask }, labels);
      const b = await cpu.step({ ids, mask }, labels);
      worst = Math.max(worst, Math.abs(a - b) / Math.abs(b));
    }
    const g = await gpu.read();
    const c = await cpu.read();
    let worstParam = 0;
    for (const name of gpu.paramNames) {
      const mine = g.params.get(name)!;
      const theirs = c.params.get(name)!;
      for (let i = 0; i < mine.length; i++)
        worstParam = Math.max(worstParam, Math.abs(mine[i]! - theirs[i]!));
    }
    console.log(
      `[encoder on webgpu] loss relative difference ${worst.toExponential(2)}, parameters ${worstParam.toExponential(2)}`,
    );
    expect(worst).toBeLessThan(1e-4);
    expect(worstParam).toBeLessThan(1e-4);
    await gpu.dispose();
    await cpu.dispose();
  });
});
