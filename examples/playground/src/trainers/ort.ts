import { OnnxTrainer } from '@accsgd/onnx-training';
import { useOrt } from '../backends.js';
import type { Batch } from '../data.js';
import { type ModelSpec, onnxForwardModel } from '../models.js';
import { checkParams } from './tfjs.js';
import { type Checkpoint, type Trainer, type TrainerOptions, UnsupportedCombination } from './types.js';

/**
 * The task's model (the MLPs or the conv net) as an ONNX forward model, trained by OnnxTrainer: one session.run per step does
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
  const ort = await useOrt(kind);
  const create = (params: ModelSpec['params']) =>
    OnnxTrainer.create(onnxForwardModel({ ...spec, params }), {
      loss: 'softmax-cross-entropy',
      dimensions: { batch: batchSize },
      hyperparams: { lr: hyper.lr, kappa: hyper.kappa, xi: hyper.xi, smallConst: hyper.smallConst },
      ort: ort as never,
      executionProvider: kind,
    });
  let trainer = await create(spec.params);
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
    async checkpoint(): Promise<Checkpoint> {
      const { params } = await trainer.read();
      return { params, state: await trainer.exportState() };
    },
    async restore(checkpoint: Checkpoint) {
      checkParams(spec.params, checkpoint.params);
      // OnnxTrainer holds its parameters in its session's tensors: a trainer built from the saved
      // values takes the state file (its strict importState throws AccSGDStateError on a mismatch),
      // and only then replaces the current one, so a rejected file changes nothing.
      const resumed = await create(spec.params.map((p) => ({ ...p, init: checkpoint.params.get(p.name)! })));
      try {
        await resumed.importState(checkpoint.state);
      } catch (error) {
        await resumed.dispose();
        throw error;
      }
      const old = trainer;
      trainer = resumed;
      await old.dispose();
    },
    async dispose() {
      await inference?.session.release();
      await trainer.dispose();
    },
  };
}
