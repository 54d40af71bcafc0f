import * as ortNode from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import type { OrtModule } from '../runtime.js';
import { ENCODER, encoderModel, tokenBatch } from '../test-support/forward-models.js';
import { lockstep } from '../test-support/lockstep.js';
import { OnnxTrainer } from './onnx-trainer.js';

const ort: OrtModule = ortNode;
const [B, L] = [8, 6];

describe('OnnxTrainer on a BERT-shaped encoder (int64 token ids, onnxruntime-node cpu)', () => {
  it('learns whether a token occurs (loss falls below a third) and exports a model that runs at any batch size and length', async () => {
    const trainer = await OnnxTrainer.create(encoderModel({ batch: 'batch', seq: 'seq', seed: 3 }), {
      loss: 'softmax-cross-entropy',
      dimensions: { batch: B, seq: L },
      hyperparams: { lr: 0.05 },
      ort,
    });
    expect(trainer.trainStep.batchInputs).toEqual([
      { name: 'ids', shape: [B, L], type: 'int64' },
      { name: 'mask', shape: [B, L], type: 'int64' },
    ]);
    // Computed on the host from the int64 inputs (the trainer feeds them): the mask's Unsqueeze and
    // Cast, and the ids as rows for Gather's gradient.
    expect(trainer.trainStep.hostInputs).toEqual([
      { name: 'maskf', shape: [B, 1, 1, L], type: 'float32' },
      { name: 'ids_rows', shape: [B * L, 1], type: 'int64' },
    ]);
    const { ids: ids0, mask: mask0 } = tokenBatch(100);
    const host = trainer.trainStep.hostFeeds({ ids: ids0, mask: mask0 });
    expect(Array.from(host.maskf as Float32Array)).toEqual(Array.from(mask0, Number));
    expect(host.ids_rows).toEqual(ids0);
    const losses: number[] = [];
    for (let step = 0; step < 150; step++) {
      const { ids, mask, labels } = tokenBatch(100 + (step % 20));
      losses.push(await trainer.step({ ids, mask }, labels));
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const first = mean(losses.slice(0, 10));
    const last = mean(losses.slice(-10));
    expect(first).toBeGreaterThan(0.5);
    expect(last).toBeLessThan(first / 3);

    // The exported model keeps its symbolic shapes: here 3 rows of 9 tokens.
    const exported = await ort.InferenceSession.create(await trainer.exportModel());
    const ids = new BigInt64Array(27).fill(5n);
    const out = await exported.run({
      ids: new ortNode.Tensor('int64', ids, [3, 9]),
      mask: new ortNode.Tensor('int64', new BigInt64Array(27).fill(1n), [3, 9]),
    });
    expect(out.logits!.dims).toEqual([3, ENCODER.classes]);
    expect([...(out.logits!.data as Float32Array)].every(Number.isFinite)).toBe(true);
    await exported.release();
    await trainer.dispose();
  });

  it('rejects token ids given as floats or out of the table, and an unknown input, with AccSGDConfigError naming it; nothing changes', async () => {
    const trainer = await OnnxTrainer.create(encoderModel({ batch: B, seq: L }), {
      loss: 'softmax-cross-entropy',
      hyperparams: { lr: 0.05 },
      ort,
    });
    const { mask, labels } = tokenBatch(1);
    await expect(trainer.step({ ids: new Float32Array(B * L), mask }, labels)).rejects.toThrow(
      /batch\.ids must be a BigInt64Array of 48 elements/,
    );
    // A token id outside the embedding table, and an input the model does not have.
    const { ids } = tokenBatch(1);
    const outside = ids.slice();
    outside[5] = BigInt(ENCODER.vocab);
    await expect(trainer.step({ ids: outside, mask }, labels)).rejects.toThrow(
      /batch\.ids\[5\] must be an index in \[-11, 10\] \(it selects from an axis of 11\); got 11/,
    );
    await expect(trainer.step({ ids, mask, token_type_ids: ids }, labels)).rejects.toThrow(
      /batch\.token_type_ids must be one of the model's inputs \(ids, mask\)/,
    );
    expect(trainer.stepCount).toBe(0);
    await trainer.dispose();
  });
});

describe('OnnxTrainer on onnxruntime-web wasm (in Node)', () => {
  it('trains the encoder as onnxruntime-node cpu does (losses within 1e-5 relative over 10 steps)', async () => {
    const web = (await import('onnxruntime-web')) as unknown as OrtModule & {
      env: { wasm: { numThreads: number } };
    };
    web.env.wasm.numThreads = 1;
    const model = encoderModel({ batch: 'batch', seq: 'seq', seed: 5 });
    const options = {
      loss: 'softmax-cross-entropy',
      dimensions: { batch: B, seq: L },
      hyperparams: { lr: 0.05 },
    } as const;
    const wasm = await OnnxTrainer.create(model, { ...options, ort: web, executionProvider: 'wasm' });
    const cpu = await OnnxTrainer.create(model, { ...options, ort });
    const batches = Array.from({ length: 10 }, (_, step) => {
      const { ids, mask, labels } = tokenBatch(300 + step);
      return { batch: { ids, mask }, labels };
    });
    const worst = await lockstep(wasm, cpu, batches);
    console.log(
      `[encoder on onnxruntime-web wasm] worst relative loss difference ${worst.loss.toExponential(2)}, parameters ${worst.params.toExponential(2)}`,
    );
    expect(worst.loss).toBeLessThan(1e-5);
    await wasm.dispose();
    await cpu.dispose();
  });
});
