import * as ort from 'onnxruntime-web/webgpu';
import type { OrtModule } from '../runtime.js';
import { OnnxTrainer } from '../train-step/onnx-trainer.js';
import { encoderModel, tokenBatch } from './forward-models.js';

/**
 * Runs in Chromium (runInBrowser): the BERT-shaped encoder's train step on onnxruntime-web's WebGPU
 * EP (JSEP) with strict placement, for `steps` batches of tokenBatch(seed + step); returns the
 * losses.
 */
export async function encoderStepsInBrowser(args: { wasmPaths: string; steps: number; seed: number }) {
  ort.env.wasm.wasmPaths = args.wasmPaths;
  ort.env.wasm.numThreads = 1;
  const trainer = await OnnxTrainer.create(encoderModel({ batch: 'batch', seq: 'seq', seed: 3 }), {
    loss: 'softmax-cross-entropy',
    dimensions: { batch: 8, seq: 6 },
    hyperparams: { lr: 0.05 },
    ort: ort as unknown as OrtModule,
    executionProvider: 'webgpu',
    strictPlacement: true,
  });
  const losses: number[] = [];
  for (let step = 0; step < args.steps; step++) {
    const { ids, mask, labels } = tokenBatch(args.seed + step);
    losses.push(await trainer.step({ ids, mask }, labels));
  }
  await trainer.dispose();
  return { losses };
}
