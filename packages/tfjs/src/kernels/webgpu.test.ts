import { findNodeWebGPU } from '@accsgd/conformance';
import {
  AccSGD,
  AccSGDGradientError,
  AccSGDStateError,
  accuracyBound,
  fusedCoefficients,
  fusedUpdate,
  relativeError,
  resolveHyperparams,
} from '@accsgd/core';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';
import { accsgd } from '../accsgd-optimizer.js';
import { readDeviceScan, registerAccSGDKernels } from './index.js';
import { ACCSGD_UPDATE } from './registry.js';
import { ALL_FINITE, READ_BACK_CHECK, webgpuNonFiniteScan } from './webgpu.js';

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

    // The default non-finite check runs on the device: Node's WebGPU has no synchronous
    // read-back, and the synchronous step needs none.
    const checked = accsgd({ lr: 0.1 });
    checked.applyGradients({ [v.name]: grad });
    await checked.applyGradientsAsync({ [v.name]: grad });
    expect(await checked.verifySteps()).toEqual([]);
    expect(checked.iterations).toBe(2);
    tf.dispose([p, g, v, w, grad]);
    opt.dispose();
    checked.dispose();
  }, 120_000);

  it('keeps the gradient term of lr = 1e-40, whose float32 multipliers are subnormal, as core does', async () => {
    await tf.setBackend('webgpu');
    // Parameters near 1e-15 and gradients near 1e25: the gradient term (multiplier about -7e-40,
    // subnormal) is as large as the parameters, and a device that flushes subnormal uniforms to
    // zero (SwiftShader) dropped it: 0.597 relative error against core, 2.3e5x the bound.
    const size = 64;
    const init = Float32Array.from({ length: size }, (_, i) => (1 + (i % 7)) * 1e-15);
    const grad = () => Float32Array.from({ length: size }, (_, i) => ((i % 5) - 2) * 1e25 + 3e24);
    const cpu = init.slice();
    const core = new AccSGD([cpu], { lr: 1e-40 });
    const v = tf.variable(tf.tensor1d(init), true, 'webgpu-kernel-test/subnormal');
    const opt = accsgd({ lr: 1e-40, nonFinite: 'allow' });
    for (let t = 0; t < 3; t++) {
      const g = grad();
      core.step([g]);
      const gt = tf.tensor1d(g);
      opt.applyGradients({ [v.name]: gt });
      gt.dispose();
    }
    const gpu = Float32Array.from((await v.data()) as Float32Array);
    expect(relativeError(cpu, init)).toBeGreaterThan(0.1); // the gradient term moved them
    expect(relativeError(gpu, cpu)).toBeLessThanOrEqual(accuracyBound('float32', 3));
    v.dispose();
    opt.dispose();
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

describe('readDeviceScan (the device scan read back)', () => {
  it('finds the first bad gradient, its element and what it held, after checking the read-back slot', () => {
    // Two gradients: [first bad of each][kinds of each][verdict][check].
    expect(readDeviceScan([ALL_FINITE, ALL_FINITE, 0, 0, ALL_FINITE, READ_BACK_CHECK])).toBeNull();
    // Gradient 1 holds NaN (1) and -Infinity (4) from element 17; the verdict names it.
    expect(readDeviceScan([ALL_FINITE, 17, 0, 5, 1, READ_BACK_CHECK])).toEqual({
      tensor: 1,
      element: 17,
      value: 'NaN or -Infinity',
    });
  });

  it('refuses a read-back that is not what the GPU wrote (all zeros, as a broken read-back returns)', () => {
    expect(() => readDeviceScan([0, 0, 0, 0])).toThrow(AccSGDStateError);
    expect(() => readDeviceScan([0, 0, 0, 0])).toThrow(/came back wrong.*unknown/);
  });
});

describe.runIf(found.available || required)('webgpu non-finite scan in Node', () => {
  it('returns per gradient its first bad index and kinds, the verdict and the read-back check value', async () => {
    expect(found.available, 'a WebGPU adapter (ACCSGD_REQUIRE_WEBGPU=1)').toBe(true);
    await import('@tensorflow/tfjs-backend-webgpu');
    await tf.setBackend('webgpu');
    const finite = tf.mul(tf.ones([1000]), 2);
    const bad = tf.mul(
      tf.tensor1d(Float32Array.from({ length: 999 }, (_, i) => (i === 611 ? Number.NaN : i))),
      1,
    );
    const scan = webgpuNonFiniteScan(tf.backend(), [finite, bad]);
    expect(Array.from(await scan.data())).toEqual([ALL_FINITE, 611, 0, 1, 1, READ_BACK_CHECK]);
    tf.dispose([finite, bad, scan]);
  });
});

describe.runIf(found.available || required)(
  'synchronous steps checked on the device (webgpu in Node)',
  () => {
    const h = { lr: 0.1, kappa: 100, xi: 5 };
    const coefficients = fusedCoefficients(resolveHyperparams(h));
    /** What core's fused update gives for these steps from `p0` (each gradient applied in turn). */
    function expected(p0: number[], grads: number[][]): Float32Array {
      const p = Float32Array.from(p0);
      const buf = new Float32Array(p.length);
      grads.forEach((g, i) => fusedUpdate(p, Float32Array.from(g), buf, coefficients, i === 0));
      return p;
    }
    const read = async (t: tf.Tensor) => Array.from((await t.data()) as Float32Array);

    it("'error': a bad step writes nothing, is undone in the bookkeeping, and verifySteps() reports it", async () => {
      expect(found.available, 'a WebGPU adapter (ACCSGD_REQUIRE_WEBGPU=1)').toBe(true);
      await tf.setBackend('webgpu');
      const a = tf.variable(tf.tensor1d([1, 2, 3, 4, 5, 6, 7, 8]), true, 'device-checked/a');
      const c = tf.variable(tf.tensor1d([1, 2, 3]), true, 'device-checked/c');
      const d = tf.variable(tf.tensor1d([5, 6, 7]), true, 'device-checked/d');
      const opt = accsgd(h);
      const ones8 = tf.ones([8]);
      const ones3 = tf.ones([3]);
      const badA = tf.tensor1d([0, 0, 0, 0, 0, 0, Number.NaN, Number.POSITIVE_INFINITY]);
      opt.applyGradients({ [a.name]: ones8, [c.name]: ones3 });
      // Step 2 is bad in `a`; `c` and the new `d` are fine, and nothing of the step may apply.
      opt.applyGradients({ [a.name]: badA, [c.name]: ones3, [d.name]: ones3 });
      expect(opt.iterations).toBe(2); // counted until the verdict arrives
      await expect(opt.verifySteps()).rejects.toThrow(AccSGDGradientError);
      expect(opt.iterations).toBe(1);
      expect(opt.paramGroups[0]!.step).toBe(1);
      expect(opt.momentumBuffer(d.name)).toBeNull(); // step 2 created it; undone
      expect(await read(a)).toEqual(Array.from(expected([1, 2, 3, 4, 5, 6, 7, 8], [Array(8).fill(1)])));
      expect(await read(c)).toEqual(Array.from(expected([1, 2, 3], [[1, 1, 1]])));
      expect(await read(d)).toEqual([5, 6, 7]);
      // The device is still usable, and the next steps apply as if step 2 had never been called.
      opt.applyGradients({ [a.name]: ones8, [c.name]: ones3, [d.name]: ones3 });
      expect(await opt.verifySteps()).toEqual([]);
      expect(await read(c)).toEqual(
        Array.from(
          expected(
            [1, 2, 3],
            [
              [1, 1, 1],
              [1, 1, 1],
            ],
          ),
        ),
      );
      expect(await read(d)).toEqual(Array.from(expected([5, 6, 7], [[1, 1, 1]])));
      expect(opt.paramGroups[0]!.step).toBe(2);
      tf.dispose([a, c, d, ones8, ones3, badA]);
      opt.dispose();
    }, 120_000);

    it("'error': the next applyGradients throws the bad step's error and changes nothing", async () => {
      await tf.setBackend('webgpu');
      const a = tf.variable(tf.tensor1d([1, 2, 3, 4]), true, 'device-checked/next-a');
      const opt = accsgd(h);
      const bad = tf.tensor1d([1, Number.NEGATIVE_INFINITY, 1, 1]);
      const good = tf.ones([4]);
      opt.applyGradients({ [a.name]: bad });
      await opt.exportState(); // waits for the verdict (and undoes the step), reporting nothing
      expect(opt.iterations).toBe(0);
      expect(() => opt.applyGradients({ [a.name]: good })).toThrow(
        /next-a.*step 1: element 1 is -Infinity; the device found it/,
      );
      expect(await read(a)).toEqual([1, 2, 3, 4]);
      expect(opt.iterations).toBe(0);
      // Reported once: the call after it applies.
      opt.applyGradients({ [a.name]: good });
      expect(await read(a)).toEqual(Array.from(expected([1, 2, 3, 4], [[1, 1, 1, 1]])));
      tf.dispose([a, bad, good]);
      opt.dispose();
    }, 120_000);

    it("'error': the steps queued after a bad one are held back on the device and undone with it", async () => {
      await tf.setBackend('webgpu');
      const a = tf.variable(tf.tensor1d([1, 2, 3, 4]), true, 'device-checked/held-a');
      const opt = accsgd(h);
      const good = tf.ones([4]);
      const bad = tf.tensor1d([1, Number.NaN, 1, 1]);
      opt.applyGradients({ [a.name]: good });
      opt.applyGradients({ [a.name]: bad }); // step 2
      opt.applyGradients({ [a.name]: good }); // steps 3 and 4: queued before anyone knows
      opt.applyGradients({ [a.name]: good });
      expect(opt.iterations).toBe(4);
      await expect(opt.verifySteps()).rejects.toThrow(
        /held-a.*step 2: element 1 is NaN; .*held back and are undone too, so the state is as it was before step 2/,
      );
      // As if the error had been thrown at step 2: one step applied, and nothing after it.
      expect(opt.iterations).toBe(1);
      expect(opt.paramGroups[0]!.step).toBe(1);
      expect(await read(a)).toEqual(Array.from(expected([1, 2, 3, 4], [[1, 1, 1, 1]])));
      // Reported: the chain is released, and the next step applies.
      opt.applyGradients({ [a.name]: good });
      expect(await opt.verifySteps()).toEqual([]);
      expect(await read(a)).toEqual(
        Array.from(
          expected(
            [1, 2, 3, 4],
            [
              [1, 1, 1, 1],
              [1, 1, 1, 1],
            ],
          ),
        ),
      );
      tf.dispose([a, good, bad]);
      opt.dispose();
    }, 120_000);

    it('model.fit with a NaN batch and a loop that never yields: training stops at it, as a thrown step would', async () => {
      await tf.setBackend('webgpu');
      // tfjs-layers' fit loop with yieldEvery 'never' gives the read-backs no turn of the event loop
      // in Node: the error cannot arrive during fit. What it must not do is train past the bad batch.
      const rows = 128;
      const xs = Float32Array.from({ length: rows * 4 }, (_, i) => Math.sin(i * 0.37));
      const build = () =>
        tfl.sequential({
          layers: [
            tfl.layers.dense({
              units: 1,
              inputShape: [4],
              kernelInitializer: tfl.initializers.glorotUniform({ seed: 5 }),
            }),
          ],
        });
      const fitWith = async (data: Float32Array, n: number, epochs: number) => {
        const model = build();
        const opt = accsgd(h);
        model.compile({ optimizer: opt, loss: 'meanSquaredError' });
        const x = tf.tensor2d(data.slice(0, n * 4), [n, 4]);
        const y = tf.ones([n, 1]);
        await model.fit(x, y, { epochs, batchSize: 32, shuffle: false, verbose: 0, yieldEvery: 'never' });
        tf.dispose([x, y]);
        return { model, opt };
      };
      const poisoned = xs.slice();
      poisoned[2 * 32 * 4 + 1] = Number.NaN; // batch 3 of every epoch
      const run = await fitWith(poisoned, rows, 2);
      await expect(run.opt.verifySteps()).rejects.toThrow(/step 3: element \d+ is NaN/);
      expect(run.opt.iterations).toBe(2);
      // The same model trained on the first two batches only.
      const reference = await fitWith(xs, 64, 1);
      const got = await Promise.all(run.model.getWeights().map((w) => read(w)));
      const want = await Promise.all(reference.model.getWeights().map((w) => read(w)));
      expect(got).toEqual(want);
      run.opt.dispose();
      reference.opt.dispose();
    }, 180_000);

    it("'skip-step': the device skips the bad step alone, and verifySteps() lists it", async () => {
      await tf.setBackend('webgpu');
      const a = tf.variable(tf.tensor1d([1, 2, 3, 4]), true, 'device-checked/skip-a');
      const opt = accsgd({ ...h, nonFinite: 'skip-step' });
      const bad = tf.tensor1d([1, 1, Number.NaN, 1]);
      const good = tf.ones([4]);
      opt.applyGradients({ [a.name]: bad });
      opt.applyGradients({ [a.name]: good });
      const skipped = await opt.verifySteps();
      expect(skipped).toHaveLength(1);
      expect(skipped[0]!.step).toBe(1);
      expect(skipped[0]!.reason).toMatch(/skip-a.*element 2 is NaN/);
      expect(opt.iterations).toBe(1);
      // Step 2 was the variable's first applied step: buffer initialised from p, as core does.
      expect(await read(a)).toEqual(Array.from(expected([1, 2, 3, 4], [[1, 1, 1, 1]])));
      tf.dispose([a, bad, good]);
      opt.dispose();
    }, 120_000);

    it('the composite update (fused: false) honours the guard too', async () => {
      await tf.setBackend('webgpu');
      const a = tf.variable(tf.tensor1d([1, 2, 3, 4]), true, 'device-checked/composite-a');
      const opt = accsgd({ ...h, fused: false });
      const bad = tf.tensor1d([1, 1, 1, Number.POSITIVE_INFINITY]);
      const good = tf.ones([4]);
      opt.applyGradients({ [a.name]: bad });
      await expect(opt.verifySteps()).rejects.toThrow(/composite-a.*step 1: element 3 is Infinity/);
      expect(await read(a)).toEqual([1, 2, 3, 4]);
      opt.applyGradients({ [a.name]: good });
      expect(await opt.verifySteps()).toEqual([]);
      const got = await read(a);
      // tfjs ops round after each multiply and add: within a few float32 ulps of the fused update.
      Array.from(expected([1, 2, 3, 4], [[1, 1, 1, 1]])).forEach((v, i) =>
        expect(Math.abs(got[i]! - v)).toBeLessThan(1e-6),
      );
      tf.dispose([a, bad, good]);
      opt.dispose();
    }, 120_000);

    it('frees every scan once its verdict is read: no tensor is left behind', async () => {
      await tf.setBackend('webgpu');
      const a = tf.variable(tf.tensor1d([1, 2, 3, 4]), true, 'device-checked/leak-a');
      const opt = accsgd(h);
      const good = tf.ones([4]);
      opt.applyGradients({ [a.name]: good });
      await opt.verifySteps();
      const before = tf.memory().numTensors;
      for (let i = 0; i < 5; i++) opt.applyGradients({ [a.name]: good });
      // Five scans in flight (one int32 tensor each), until their verdicts arrive.
      expect(tf.memory().numTensors - before).toBe(5);
      await opt.verifySteps();
      expect(tf.memory().numTensors - before).toBe(0);
      tf.dispose([a, good]);
      opt.dispose();
    }, 120_000);
  },
);
