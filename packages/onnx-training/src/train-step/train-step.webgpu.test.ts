import { findNodeWebGPU } from '@accsgd/conformance';
import * as ortNode from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import type { OrtModule } from '../runtime.js';
import { encoderModel, mlpModel, random, tokenBatch } from '../test-support/forward-models.js';
import { lockstep } from '../test-support/lockstep.js';
import { webgpuUnavailable } from '../test-support/webgpu.js';
import { type Batch, OnnxTrainer, type OnnxTrainerOptions } from './onnx-trainer.js';

const ort: OrtModule = ortNode;
const unavailable = await webgpuUnavailable(await findNodeWebGPU());
const required = process.env.ACCSGD_REQUIRE_WEBGPU === '1';
if (unavailable !== undefined && !required)
  console.warn(`[accsgd] SKIPPED train step on onnxruntime-node webgpu: ${unavailable}`);
const suite = unavailable !== undefined && !required ? describe.skip : describe;

/**
 * Trains `model` on the WebGPU EP with strictPlacement (ORT's disable_cpu_ep_fallback: session
 * creation fails if any node, forward, loss, backward or update, would run on the CPU) and on the
 * CPU EP, on the same batches; returns the worst relative loss difference and the worst absolute
 * parameter difference after the last step.
 */
async function gpuAgainstCpu(
  model: Uint8Array,
  options: Omit<OnnxTrainerOptions, 'ort' | 'executionProvider' | 'strictPlacement'>,
  batches: { batch: Batch; labels: Float32Array }[],
): Promise<{ loss: number; params: number }> {
  const gpu = await OnnxTrainer.create(model, {
    ...options,
    ort,
    executionProvider: 'webgpu',
    strictPlacement: true,
  });
  const cpu = await OnnxTrainer.create(model, { ...options, ort, executionProvider: 'cpu' });
  const worst = await lockstep(gpu, cpu, batches);
  await gpu.dispose();
  await cpu.dispose();
  return worst;
}

suite('OnnxTrainer on onnxruntime-node webgpu', () => {
  it('has its execution provider (ACCSGD_REQUIRE_WEBGPU=1 fails here instead of skipping)', () => {
    expect(unavailable).toBeUndefined();
  });

  it('runs every node of the MLP train step on the GPU (disable_cpu_ep_fallback) and matches cpu', async () => {
    const [B, IN, H, C] = [16, 4, 8, 3];
    const batches = Array.from({ length: 5 }, (_, t) => {
      const labels = new Float32Array(B * C);
      for (let r = 0; r < B; r++) labels[r * C + ((r + t) % C)] = 1;
      return { batch: { x: Float32Array.from(random(B * IN, 40 + t, 2)) }, labels };
    });
    const worst = await gpuAgainstCpu(
      mlpModel({ batch: 'batch', inF: IN, hidden: H, classes: C, seed: 9 }),
      { loss: 'softmax-cross-entropy', dimensions: { batch: B }, hyperparams: { lr: 0.05 } },
      batches,
    );
    expect(worst.loss).toBeLessThan(1e-4);
    expect(worst.params).toBeLessThan(1e-4);
  });

  it('trains a fixed-batch export at batchSize 8 with parameter groups, then a partial batch of 5 on the same GPU tensors, and matches cpu', async () => {
    const [IN, H, C] = [4, 8, 3];
    const batches = [8, 8, 5].map((rows, t) => {
      const labels = new Float32Array(rows * C);
      for (let r = 0; r < rows; r++) labels[r * C + ((r + t) % C)] = 1;
      return { batch: { x: Float32Array.from(random(rows * IN, 60 + t, 2)) }, labels };
    });
    const worst = await gpuAgainstCpu(
      mlpModel({ batch: 1, inF: IN, hidden: H, classes: C, seed: 4 }),
      {
        loss: 'softmax-cross-entropy',
        batchSize: 8,
        hyperparams: { lr: (step) => 0.05 / (1 + step), weightDecay: 1e-3 },
        groups: [{ params: 'b*', weightDecay: 0 }],
      },
      batches,
    );
    expect(worst.loss).toBeLessThan(1e-4);
    expect(worst.params).toBeLessThan(1e-4);
  });

  it('runs every node of the BERT-shaped encoder train step on the GPU (int64 ids and mask, Gather and its ScatterND-add gradient, LayerNormalization, Erf, Slice/Pad, Concat, Where, Pow, ...) and matches cpu', async () => {
    const [B, L] = [8, 6];
    const batches = Array.from({ length: 5 }, (_, t) => {
      const { ids, mask, labels } = tokenBatch(200 + t, B, L);
      return { batch: { ids, mask }, labels };
    });
    const worst = await gpuAgainstCpu(
      encoderModel({ batch: 'batch', seq: 'seq', seed: 3 }),
      { loss: 'softmax-cross-entropy', dimensions: { batch: B, seq: L }, hyperparams: { lr: 0.05 } },
      batches,
    );
    console.log(
      `[encoder on webgpu] loss relative difference ${worst.loss.toExponential(2)}, parameters ${worst.params.toExponential(2)}`,
    );
    expect(worst.loss).toBeLessThan(1e-4);
    expect(worst.params).toBeLessThan(1e-4);
  });
});
