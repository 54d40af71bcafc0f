import { findNodeWebGPU } from '@accsgd/conformance';
import { AccSGDConfigError } from '@accsgd/core';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { accsgd } from '../accsgd-optimizer.js';
import { registerAccSGDKernels } from './index.js';
import { ACCSGD_UPDATE } from './registry.js';

const found = await findNodeWebGPU();
if (!found.available) console.warn(`\n[accsgd] SKIPPED webgpu kernel tests: ${found.reason}\n`);
const required = process.env.ACCSGD_REQUIRE_WEBGPU === '1';

describe.runIf(found.available || required)('webgpu kernel in Node', () => {
  it('computes the fused update and reuses its pipelines when the learning rate changes', async () => {
    expect(found.available, 'a WebGPU adapter (ACCSGD_REQUIRE_WEBGPU=1)').toBe(true);
    await import('@tensorflow/tfjs-backend-webgpu');
    await tf.setBackend('webgpu');
    registerAccSGDKernels();
    const p = tf.tensor2d([1, 2, 3, 4], [2, 2]);
    const g = tf.tensor2d([0.5, -0.5, 1, 0], [2, 2]);
    const [p2, b2] = tf
      .engine()
      .runKernel<tf.Tensor[]>(
        ACCSGD_UPDATE,
        { param: p, grad: g, buffer: p },
        { coefficients: [0.5, 0.25, 2, 1, -1, 0.5], inPlace: true },
      );
    // buffer' = 0.75*p + 2*g = [1.75, 0.5, 4.25, 3]; param' = p - g + 0.5*buffer' = [1.375, 2.75, 4.125, 5.5]
    expect(Array.from(await b2!.data())).toEqual([1.75, 0.5, 4.25, 3]);
    expect(Array.from(await p2!.data())).toEqual([1.375, 2.75, 4.125, 5.5]);
    expect(b2!.shape).toEqual([2, 2]);
    tf.dispose([p2!, b2!]);

    const backend = tf.backend() as unknown as { pipelineCache: Record<string, unknown> };
    const v = tf.variable(tf.zeros([1000]), true, 'webgpu-kernel-test/v');
    const grad = tf.ones([1000]);
    const opt = accsgd({ lr: 0.1, nonFinite: 'allow' });
    opt.applyGradients({ [v.name]: grad });
    const pipelines = Object.keys(backend.pipelineCache).filter((k) => k.startsWith('accsgd'));
    expect(pipelines).toHaveLength(2);
    opt.setLearningRate(0.05);
    opt.applyGradients({ [v.name]: grad });
    const w = tf.variable(tf.zeros([3, 7]), true, 'webgpu-kernel-test/w');
    opt.applyGradients({ [w.name]: tf.ones([3, 7]) });
    expect(Object.keys(backend.pipelineCache).filter((k) => k.startsWith('accsgd'))).toEqual(pipelines);

    // The default non-finite check needs a read-back; Node's WebGPU has no synchronous one.
    const checked = accsgd({ lr: 0.1 });
    expect(() => checked.applyGradients({ [v.name]: grad })).toThrow(AccSGDConfigError);
    await checked.applyGradientsAsync({ [v.name]: grad });
    expect(checked.iterations).toBe(1);
    tf.dispose([p, g, v, w, grad]);
    opt.dispose();
    checked.dispose();
  }, 120_000);
});
