import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import * as tfl from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { AccSGDOptimizer, accsgd } from './accsgd-optimizer.js';

tf.env().set('IS_TEST', true);

/** A small regression problem: y = x·w + noise-free bias, 64 samples of 4 features. */
function data(): { x: tf.Tensor2D; y: tf.Tensor2D } {
  return tf.tidy(() => {
    const x = tf.tensor2d(
      Array.from({ length: 64 * 4 }, (_, i) => Math.sin(i * 0.37)),
      [64, 4],
    );
    const y = tf.add(tf.matMul(x, tf.tensor2d([[1.5], [-2], [0.5], [1]])), 0.3) as tf.Tensor2D;
    return { x, y };
  });
}

function model(): tfl.Sequential {
  const m = tfl.sequential();
  m.add(
    tfl.layers.dense({
      units: 8,
      inputShape: [4],
      activation: 'tanh',
      kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }),
    }),
  );
  m.add(tfl.layers.dense({ units: 1, kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) }));
  m.compile({ optimizer: accsgd({ lr: 0.05, kappa: 100, xi: 5 }), loss: 'meanSquaredError' });
  return m;
}

async function fit(m: tfl.LayersModel, x: tf.Tensor, y: tf.Tensor, epochs: number): Promise<number[]> {
  const history = await m.fit(x, y, { epochs, batchSize: 16, shuffle: false, verbose: 0 });
  return history.history.loss as number[];
}

async function weightsOf(m: tfl.LayersModel): Promise<number[][]> {
  return Promise.all(m.getWeights().map(async (w) => Array.from(await w.data())));
}

/** A memory IOHandler: model.save() fills it, tf.loadLayersModel() reads it. */
function memoryHandler(): tf.io.IOHandler & { artifacts?: tf.io.ModelArtifacts } {
  const handler: tf.io.IOHandler & { artifacts?: tf.io.ModelArtifacts } = {
    async save(artifacts) {
      handler.artifacts = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    },
    async load() {
      return handler.artifacts!;
    },
  };
  return handler;
}

describe('with tfjs-layers', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('trains with model.fit, saves with the optimizer, reloads and resumes exactly like an uninterrupted run', async () => {
    const { x, y } = data();
    // Uninterrupted: 6 epochs of 4 batches.
    const straight = model();
    const straightLoss = await fit(straight, x, y, 6);
    expect(straightLoss[5]!).toBeLessThan(straightLoss[0]! * 0.5);

    // Interrupted: 3 epochs, save (with optimizer) to memory, load (a new model and a new
    // optimizer built by name from the saved config), 3 more epochs.
    const first = model();
    const firstLoss = await fit(first, x, y, 3);
    expect(firstLoss).toEqual(straightLoss.slice(0, 3));
    const handler = memoryHandler();
    await first.save(handler, { includeOptimizer: true });
    const specs = handler.artifacts!.weightSpecs!.map((s) => s.name);
    expect(specs.filter((n) => n.endsWith('/momentum_buffer')).length).toBe(4);
    expect(specs).toContain('iter');
    expect((handler.artifacts!.trainingConfig!.optimizer_config as { class_name: string }).class_name).toBe(
      'AccSGD',
    );

    const resumed = await tfl.loadLayersModel(handler);
    expect(resumed.optimizer).toBeInstanceOf(AccSGDOptimizer);
    expect(resumed.optimizer.iterations).toBe(12);
    expect(resumed.trainableWeights.map((w) => w.name)).toEqual(
      first.trainableWeights.map((w) => `${w.name}_1`),
    );
    const resumedLoss = await fit(resumed, x, y, 3);
    // In this process the reloaded variables are renamed (dense_Dense1/kernel_1); the restored
    // buffers still find them, or the losses would differ.
    expect(resumedLoss).toEqual(straightLoss.slice(3));
    expect(await weightsOf(resumed)).toEqual(await weightsOf(straight));
    tf.dispose([x, y]);
    for (const m of [straight, first, resumed]) {
      m.optimizer.dispose();
      m.dispose();
    }
  });

  it('skips a variable whose gradient is missing at some steps, and applies a learning-rate schedule', () => {
    const w = tf.variable(tf.tensor1d([1, -1]), true, 'schedule-test/w');
    const b = tf.variable(tf.scalar(0.5), true, 'schedule-test/b');
    const lrs: number[] = [];
    const opt = accsgd({
      lr: (i) => {
        const lr = 0.1 / (1 + i);
        lrs.push(lr);
        return lr;
      },
    });
    const x = tf.tensor1d([2, 3]);
    const losses: number[] = [];
    let bBefore = b.dataSync()[0];
    let bufferBefore: number[] = [];
    for (let i = 0; i < 20; i++) {
      // b is frozen on odd steps: minimize() gets only w, so b has no gradient there.
      const varList = i % 2 === 1 ? [w] : [w, b];
      const loss = opt.minimize(
        () => tf.square(tf.add(tf.sum(tf.mul(w, x)), b)) as tf.Scalar,
        true,
        varList,
      )!;
      losses.push(loss.dataSync()[0]!);
      loss.dispose();
      if (i === 0) expect(opt.momentumBuffer(b.name)).not.toBeNull();
      if (i % 2 === 1) {
        // b and its buffer did not move on this step.
        expect(b.dataSync()[0]).toBe(bBefore);
        expect(Array.from(opt.momentumBuffer(b.name)!.dataSync())).toEqual(bufferBefore);
      }
      bBefore = b.dataSync()[0];
      bufferBefore = Array.from(opt.momentumBuffer(b.name)!.dataSync());
    }
    expect(losses[19]!).toBeLessThan(losses[0]! * 0.1);
    expect(lrs.slice(1, 4)).toEqual([0.1, 0.05, 0.1 / 3]);
    expect(opt.paramGroups[0]!.step).toBe(20);
    tf.dispose([w, b, x]);
    opt.dispose();
  });
});
