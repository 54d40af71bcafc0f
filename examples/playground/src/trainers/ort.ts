import { OnnxTrainer } from '@accsgd/onnx-training';
import { useOrt } from '../backends.js';
import type { Batch } from '../data.js';
import { onnxForwardModel } from '../models.js';
import { type Trainer, type TrainerOptions, UnsupportedCombination } from './types.js';

/**
 * The task's MLP as an ONNX forward model, trained by OnnxTrainer: one session.run per step does
 * forward, softmax cross-entropy, backward and the AccSGD update, on onnxruntime-web's wasm or
 * WebGPU execution provider. (The update is built into the train step: no other optimizer.)
 */
export async function createOrtTrainer(kind: 'wasm' | 'webgpu', options: TrainerOptions): Promise<Trainer> {
  const { spec, hyper, batchSize } = options;
  const name = `ort-${kind}` as const;
  if (options.optimizer !== 'accsgd')
    throw new UnsupportedCombination(
      `${name} runs only AccSGD: OnnxTrainer's train step has the AccSGD update built in (pick a tfjs backend for ${options.optimizer})`,
    );
  if (spec.task === 'mnist-cnn')
    throw new UnsupportedCombination(
      `${name} cannot train the conv net: @accsgd/onnx-training has no backward rule for Conv (pick tfjs-cpu, tfjs-webgl or tfjs-webgpu)`,
    );
  const ort = await useOrt(kind);
  const forwardModel = onnxForwardModel(spec);
  const trainer = await OnnxTrainer.create(forwardModel, {
    loss: 'softmax-cross-entropy',
    dimensions: { batch: batchSize },
    hyperparams: { lr: hyper.lr, kappa: hyper.kappa, xi: hyper.xi, smallConst: hyper.smallConst },
    ort: ort as never,
    executionProvider: kind,
  });
  let inference: { model: Uint8Array; session: import('onnxruntime-web').InferenceSession } | undefined;
  return {
    backend: name,
    step(batch: Batch) {
      return trainer.step({ x: batch.x }, batch.labels);
    },
    async predict(xs: Float32Array, count: number) {
      // The trained weights as a plain inference model, on the same runtime.
      const model = await trainer.exportModel();
      if (inference?.model !== model) {
        await inference?.session.release();
        inference = {
          model,
          session: await ort.InferenceSession.create(model, { executionProviders: [kind] }),
        };
      }
      const x = new ort.Tensor('float32', xs, [count, xs.length / count]);
      const out = await inference.session.run({ x });
      x.dispose();
      const logits = (await out.logits!.getData()) as Float32Array;
      for (const t of Object.values(out)) t.dispose();
      return logits;
    },
    async dispose() {
      await inference?.session.release();
      await trainer.dispose();
    },
  };
}
