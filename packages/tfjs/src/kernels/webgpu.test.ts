import { findNodeWebGPU } from '@accsgd/conformance';
import { AccSGDConfigError } from '@accsgd/core';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { accsgd } from '../accsgd-optimizer.js';
import { locateNonFinite, registerAccSGDKernels } from './index.js';
import { ACCSGD_UPDATE } from './registry.js';
import { ALL_FINITE, READ_BACK_CHECK, webgpuFirstNonFiniteIndices } from './webgpu.js';

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
        { coefficients: [0.5, 0.25, 2, 1, -1, 0.5] },
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
    // Another shape and rank, also a multiple of 4: the same vec4 pipelines.
    const w = tf.variable(tf.zeros([3, 8]), true, 'webgpu-kernel-test/w');
    opt.applyGradients({ [w.name]: tf.ones([3, 8]) });
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

  it('runs the scalar programs when the size is not a multiple of 4, with the same numbers', async () => {
    await tf.setBackend('webgpu');
    registerAccSGDKernels();
    const backend = tf.backend() as unknown as { pipelineCache: Record<string, unknown> };
    // Seven elements: the first four as in the test above, then three more.
    const p = tf.tensor1d([1, 2, 3, 4, -2, 0, 8]);
    const g = tf.tensor1d([0.5, -0.5, 1, 0, 4, -1, 0.25]);
    const b = tf.tensor1d([0, 0, 0, 0, 1, 2, -4]);
    const [p2, b2] = tf
      .engine()
      .runKernel<tf.Tensor[]>(
        ACCSGD_UPDATE,
        { param: p, grad: g, buffer: b },
        { coefficients: [0.5, 0.25, 2, 1, -1, 0.5] },
      );
    // buffer' = 0.5*b + 0.25*p + 2*g; param' = p - g + 0.5*buffer'
    expect(Array.from(await b2!.data())).toEqual([1.25, -0.5, 2.75, 1, 8, -1, 0.5]);
    expect(Array.from(await p2!.data())).toEqual([1.125, 2.25, 3.375, 4.5, -2, 0.5, 8]);
    expect(Object.keys(backend.pipelineCache).filter((k) => k.startsWith('accsgdBuffer_1'))).toHaveLength(1);
    tf.dispose([p, g, b, p2!, b2!]);
  }, 120_000);

  it('finds the first non-finite gradient element on the GPU and leaves every variable unchanged', async () => {
    await tf.setBackend('webgpu');
    registerAccSGDKernels();
    const a = tf.variable(tf.tensor1d([1, 2, 3, 4, 5, 6, 7, 8]), true, 'webgpu-kernel-test/nf-a');
    const c = tf.variable(tf.tensor1d([1, 2, 3]), true, 'webgpu-kernel-test/nf-c');
    const opt = accsgd({ lr: 0.1 });
    const finite8 = tf.ones([8]);
    const finite3 = tf.ones([3]);
    // Four lanes per invocation (8 elements): the first bad lane of the second vec4 is element 6.
    const badA = tf.tensor1d([0, 0, 0, 0, 0, 0, Number.NaN, Number.POSITIVE_INFINITY]);
    // One element per invocation (3 elements): the first bad one is element 1.
    const badC = tf.tensor1d([0, Number.NEGATIVE_INFINITY, Number.NaN]);
    await expect(opt.applyGradientsAsync({ [a.name]: badA, [c.name]: finite3 })).rejects.toThrow(
      /nf-a.*element 6 is NaN/,
    );
    await expect(opt.applyGradientsAsync({ [a.name]: finite8, [c.name]: badC })).rejects.toThrow(
      /nf-c.*element 1 is -Infinity/,
    );
    expect(opt.iterations).toBe(0);
    expect(opt.momentumBuffer(a.name)).toBeNull();
    expect(Array.from(await a.data())).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(Array.from(await c.data())).toEqual([1, 2, 3]);
    const before = tf.memory().numTensors;
    await opt.applyGradientsAsync({ [a.name]: finite8, [c.name]: finite3 });
    expect(opt.iterations).toBe(1);
    // Two buffers were created; the scan's int32 tensor was freed.
    expect(tf.memory().numTensors - before).toBe(2);
    tf.dispose([a, c, finite8, finite3, badA, badC]);
    opt.dispose();
  }, 120_000);
});

describe('locateNonFinite (the GPU scan read back)', () => {
  it('finds the first bad gradient and element, after checking the read-back slot', () => {
    expect(locateNonFinite([ALL_FINITE, ALL_FINITE, READ_BACK_CHECK])).toBeNull();
    expect(locateNonFinite([ALL_FINITE, 17, 3, READ_BACK_CHECK])).toEqual({ tensor: 1, element: 17 });
  });

  it('refuses a read-back that is not what the GPU wrote (all zeros, as tfjs returns on SwiftShader in Chromium)', () => {
    expect(() => locateNonFinite([0, 0, 0])).toThrow(AccSGDConfigError);
    expect(() => locateNonFinite([0, 0, 0])).toThrow(/read-back came back wrong.*applyGradientsAsync/);
  });
});

describe.runIf(found.available || required)('webgpu non-finite scan in Node', () => {
  it('returns one index per gradient and the read-back check value', async () => {
    expect(found.available, 'a WebGPU adapter (ACCSGD_REQUIRE_WEBGPU=1)').toBe(true);
    await import('@tensorflow/tfjs-backend-webgpu');
    await tf.setBackend('webgpu');
    const finite = tf.mul(tf.ones([1000]), 2);
    const bad = tf.mul(
      tf.tensor1d(Float32Array.from({ length: 999 }, (_, i) => (i === 611 ? Number.NaN : i))),
      1,
    );
    const scan = webgpuFirstNonFiniteIndices(tf.backend(), [finite, bad]);
    expect(Array.from(await scan.data())).toEqual([ALL_FINITE, 611, READ_BACK_CHECK]);
    tf.dispose([finite, bad, scan]);
  });
});
