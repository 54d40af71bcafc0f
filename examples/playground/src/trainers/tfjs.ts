import { AccSGDOptimizer } from '@accsgd/tfjs';
import type * as TF from '@tensorflow/tfjs-core';
import { type BackendName, type TfjsBackend, useTfjs } from '../backends.js';
import type { Batch } from '../data.js';
import { forward, lossOf } from './tfjs-model.js';
import type { Checkpoint, Trainer, TrainerOptions } from './types.js';

let trainerCount = 0;

/**
 * The task's model as tf.Variables, trained by @accsgd/tfjs's AccSGDOptimizer or by tfjs's own
 * SGD, momentum, Nesterov and Adam (tf.train.*), so every comparison runs on one backend.
 */
export async function createTfjsTrainer(backend: TfjsBackend, options: TrainerOptions): Promise<Trainer> {
  const { spec, optimizer: which, hyper } = options;
  const tf = await useTfjs(backend);
  // Variable names are global in tfjs; the state file uses the spec's names (groups[].names).
  const prefix = `playground${++trainerCount}`;
  const variables = spec.params.map((p) =>
    tf.variable(tf.tensor(p.init, p.shape, 'float32'), true, `${prefix}/${p.name}`),
  );
  const byName = Object.fromEntries(spec.params.map((p, i) => [p.name, variables[i]!]));
  let accsgd: AccSGDOptimizer | undefined;
  let optimizer: TF.Optimizer;
  if (which === 'accsgd') {
    accsgd = new AccSGDOptimizer({
      lr: hyper.lr,
      kappa: hyper.kappa,
      xi: hyper.xi,
      smallConst: hyper.smallConst,
      groups: [{ params: variables.map((v) => v.name), names: spec.params.map((p) => p.name) }],
    });
    optimizer = accsgd;
  } else if (which === 'sgd') optimizer = tf.train.sgd(hyper.lr);
  else if (which === 'momentum') optimizer = tf.train.momentum(hyper.lr, hyper.momentum);
  else if (which === 'nesterov') optimizer = tf.train.momentum(hyper.lr, hyper.momentum, true);
  else optimizer = tf.train.adam(hyper.lr);

  const select = async () => {
    // Another run (or the conformance panel) may have switched the global backend.
    if (tf.getBackend() !== backend) await useTfjs(backend);
  };

  const trainer: Trainer = {
    backend: `tfjs-${backend}` as BackendName,
    async step(batch: Batch) {
      await select();
      const rows = batch.y.length;
      const x = tf.tensor2d(batch.x, [rows, batch.x.length / rows]);
      const labels = tf.tensor2d(batch.labels, [rows, spec.classes]);
      const { value, grads } = tf.variableGrads(
        () => lossOf(tf, forward(tf, spec, byName, x), labels),
        variables,
      );
      try {
        // On webgpu the synchronous step is model.fit's: its non-finite check runs on the device and
        // a bad step (which changes nothing) is reported by the next step or verifySteps(). Elsewhere
        // the async step reads its check back without the synchronous read-back's stall.
        if (accsgd && backend !== 'webgpu') await accsgd.applyGradientsAsync(grads);
        else optimizer.applyGradients(grads);
        return (await value.data())[0]!;
      } finally {
        tf.dispose([x, labels, value, ...Object.values(grads)]);
      }
    },
    async predict(xs: Float32Array, count: number) {
      await select();
      const logits = tf.tidy(() => forward(tf, spec, byName, tf.tensor2d(xs, [count, xs.length / count])));
      try {
        return (await logits.data()) as Float32Array;
      } finally {
        logits.dispose();
      }
    },
    async dispose() {
      optimizer.dispose();
      tf.dispose(variables);
    },
  };
  if (accsgd) {
    const opt = accsgd;
    trainer.checkpoint = async () => {
      // Every queued step's verdict first: a checkpoint never holds a step that was refused later.
      if (backend === 'webgpu') await opt.verifySteps();
      const state = await opt.exportState();
      const params = new Map<string, Float32Array>();
      for (const p of spec.params) params.set(p.name, (await byName[p.name]!.data()) as Float32Array);
      return { params, state };
    };
    trainer.restore = async (checkpoint: Checkpoint) => {
      await select();
      checkParams(spec.params, checkpoint.params);
      opt.importState(checkpoint.state); // all-or-nothing: throws AccSGDStateError with the parser's message
      for (const p of spec.params) byName[p.name]!.assign(tf.tensor(checkpoint.params.get(p.name)!, p.shape));
    };
  }
  return trainer;
}

/** The checkpoint has every parameter of the model with its number of values, and nothing else. */
export function checkParams(
  specs: readonly { name: string; shape: number[] }[],
  params: ReadonlyMap<string, Float32Array>,
): void {
  for (const p of specs) {
    const values = params.get(p.name);
    const count = p.shape.reduce((a, b) => a * b, 1);
    if (!values)
      throw new Error(
        `the checkpoint has no parameter "${p.name}" (this model's are ${specs.map((s) => s.name).join(', ')})`,
      );
    if (values.length !== count)
      throw new Error(
        `parameter "${p.name}" has ${values.length} values in the checkpoint, expected ${count} (shape [${p.shape}])`,
      );
  }
  const extra = [...params.keys()].find((n) => !specs.some((p) => p.name === n));
  if (extra !== undefined)
    throw new Error(`the checkpoint has parameter "${extra}", which this model does not have`);
}
