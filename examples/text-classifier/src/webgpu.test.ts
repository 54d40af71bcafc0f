import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildIdentityModel, OnnxTrainer } from '@accsgd/onnx-training';
import { describe, expect, it } from 'vitest';
import { gatherBatch, loadSentiment } from './data.js';
import { encodeTexts, FULL_RUN } from './run.js';
import {
  buildVocabulary,
  modelFolderFiles,
  TINY_BERT,
  tinyBertModel,
  writeModelFolder,
} from './tiny-bert.js';
import { ort, tokenizer, useLocalModels } from './transformers.js';

/** Why onnxruntime-node's WebGPU EP cannot start here (SwiftShader needs VK_ICD_FILENAMES), or undefined. */
async function webgpuUnavailable(): Promise<string | undefined> {
  try {
    const session = await ort.InferenceSession.create(buildIdentityModel(), {
      executionProviders: ['webgpu'],
    });
    await session.release();
    return undefined;
  } catch (error) {
    return `onnxruntime-node's webgpu EP does not start: ${(error as Error).message}`;
  }
}

const unavailable = await webgpuUnavailable();
const required = process.env.ACCSGD_REQUIRE_WEBGPU === '1';
if (unavailable !== undefined && !required)
  console.warn(`[accsgd] SKIPPED the tiny BERT's train step on onnxruntime-node webgpu: ${unavailable}`);

describe.skipIf(unavailable !== undefined && !required)('the tiny BERT on onnxruntime-node webgpu', () => {
  it("runs every node of the train step on the GPU (strictPlacement: the int64 mask's Unsqueeze and Cast run on the host) and tracks cpu", async () => {
    expect(unavailable).toBeUndefined();
    const data = loadSentiment();
    const vocabulary = buildVocabulary(data.train.map((e) => e.text));
    const model = tinyBertModel(TINY_BERT, vocabulary.length);
    const dir = await mkdtemp(join(tmpdir(), 'accsgd-text-classifier-webgpu-'));
    try {
      useLocalModels(dir);
      await writeModelFolder(join(dir, 'tiny-bert'), modelFolderFiles(TINY_BERT, vocabulary), model);
      const { batchSize: B, sequenceLength: L, hyperparams } = FULL_RUN;
      const train = encodeTexts(
        await tokenizer('tiny-bert'),
        data.train.map((e) => e.text),
        L,
      );
      const options = {
        loss: 'softmax-cross-entropy',
        dimensions: { batch_size: B, sequence_length: L },
        hyperparams,
        ort,
      } as const;
      const gpu = await OnnxTrainer.create(model, {
        ...options,
        executionProvider: 'webgpu',
        strictPlacement: true,
      });
      const cpu = await OnnxTrainer.create(model, options);
      let worst = 0;
      for (let step = 0; step < 3; step++) {
        const rows = Array.from({ length: B }, (_, r) => (step * B + r) % train.count);
        const batch = gatherBatch(
          train,
          data.train.map((e) => e.label),
          rows,
        );
        const a = await gpu.step(batch.inputs, batch.labels);
        const b = await cpu.step(batch.inputs, batch.labels);
        worst = Math.max(worst, Math.abs(a - b) / Math.abs(b));
      }
      await gpu.dispose();
      await cpu.dispose();
      console.log(
        `[tiny BERT on webgpu] worst relative loss difference to cpu over 3 steps ${worst.toExponential(2)}`,
      );
      expect(worst).toBeLessThan(1e-4);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
