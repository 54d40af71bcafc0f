import {
  AccSGD,
  AccSGDConfigError,
  AccSGDGradientError,
  AccSGDStateError,
  accuracyBound,
  decodeState,
  encodeState,
  referenceStep,
  relativeError,
  resolveHyperparams,
} from '@accsgd/core';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { AccSGDOptimizer, accsgd } from './accsgd-optimizer.js';
import { ACCSGD_UPDATE } from './kernels/index.js';
import { disposeAfterEach } from './test-support/dispose-after-each.js';

tf.env().set('IS_TEST', true);

let counter = 0;
/** A fresh variable name per test, since tfjs variable names are global. */
const uniqueName = (base: string) => `${base}_t${counter++}`;

function variable(values: number[], shape?: number[], name = uniqueName('v')): tf.Variable {
  return tf.tidy(() => tf.variable(tf.tensor(values, shape ?? [values.length], 'float32'), true, name));
}

const track = disposeAfterEach();

function step(
  opt: tf.Optimizer,
  grads: Record<string, number[] | null>,
  shapes: Record<string, number[]> = {},
): void {
  const named: tf.NamedTensorMap = {};
  for (const [name, g] of Object.entries(grads))
    if (g) named[name] = tf.tensor(g, shapes[name] ?? [g.length], 'float32');
  try {
    opt.applyGradients(named);
  } finally {
    tf.dispose(Object.values(named));
  }
}

for (const backend of ['cpu', 'wasm'] as const) {
  for (const fused of [true, false]) {
    describe(`on ${backend}, ${fused ? 'fused kernel' : 'composite ops'}`, () => {
      beforeAll(async () => {
        await tf.setBackend(backend);
      });

      it('takes the first step in closed form', () => {
        // lr 0.1, kappa 1000, xi 10, smallConst 0.7: largeLr = 0.1*1000/0.7 = 142.857..., beta = 0.7^2*10/1000
        // = 0.0049, zeta = 0.7/0.7049. First step, buf <- p = 1, g = 0.5:
        //   buf = beta*((1/beta - 1)*1 - largeLr*0.5 + 1) = 1 - 0.0049*142.857...*0.5 = 0.65
        //   p   = zeta*(1 - 0.1*0.5) + (1 - zeta)*0.65 = 0.65 + 0.3*zeta = 0.947914597815...
        const w = track(variable([1]));
        const opt = track(accsgd({ lr: 0.1, kappa: 1000, xi: 10, smallConst: 0.7, fused }));
        step(opt, { [w.name]: [0.5] });
        expect(opt.momentumBuffer(w.name)!.dataSync()[0]).toBeCloseTo(0.65, 6);
        expect(w.dataSync()[0]).toBeCloseTo(0.65 + 0.3 * (0.7 / 0.7049), 6);
        expect(opt.iterations).toBe(1);
      });

      it('follows the reference over 20 steps with weight decay, within the float32 contract', () => {
        const h = resolveHyperparams({ lr: 0.05, kappa: 500, xi: 8, smallConst: 0.6, weightDecay: 0.01 });
        const init = Array.from({ length: 37 }, (_, i) => Math.fround(Math.sin(i + 1)));
        const w = track(variable(init, [37]));
        const opt = track(accsgd({ ...h, fused }));
        let truth: { param: Float64Array; buffer: Float64Array | null } = {
          param: Float64Array.from(init),
          buffer: null,
        };
        for (let t = 1; t <= 20; t++) {
          const g = init.map((_, i) => Math.fround(Math.cos(3 * i + t)));
          truth = referenceStep(truth.param, truth.buffer, g, h);
          step(opt, { [w.name]: g });
          expect(relativeError(w.dataSync(), truth.param)).toBeLessThanOrEqual(accuracyBound('float32', t));
          expect(relativeError(opt.momentumBuffer(w.name)!.dataSync(), truth.buffer!)).toBeLessThanOrEqual(
            accuracyBound('float32', t),
          );
        }
      });

      it('leaves the caller’s gradient tensors untouched (weight decay is folded into the kernel)', () => {
        const w = track(variable([1, -2]));
        const g = track(tf.tensor1d([0.25, 0.5]));
        const opt = track(accsgd({ lr: 0.1, weightDecay: 0.1, fused }));
        opt.applyGradients({ [w.name]: g });
        expect(Array.from(g.dataSync())).toEqual([0.25, 0.5]);
      });

      it('keeps tf.memory().numTensors constant from step 2 to step 1000, and back to the start after dispose', () => {
        const start = tf.memory().numTensors;
        const a = variable([1, 2, 3]);
        const b = variable([4, 5], [2, 1]);
        const opt = accsgd({ lr: 0.01, fused });
        const ga = tf.tensor1d([0.1, 0.2, 0.3]);
        const gb = tf.tensor2d([0.4, 0.5], [2, 1]);
        // a, b, ga, gb = start + 4; after step 1 the two buffers exist: start + 6, and it stays there.
        opt.applyGradients({ [a.name]: ga, [b.name]: gb });
        const afterFirst = tf.memory().numTensors;
        expect(afterFirst).toBe(start + 6);
        for (let i = 2; i <= 1000; i++) {
          opt.applyGradients([
            { name: a.name, tensor: ga },
            { name: b.name, tensor: gb },
          ]);
          if (i === 2 || i === 1000) expect(tf.memory().numTensors).toBe(afterFirst);
        }
        opt.dispose();
        expect(tf.memory().numTensors).toBe(start + 4);
        tf.dispose([a, b, ga, gb]);
        expect(tf.memory().numTensors).toBe(start);
      });
    });
  }
}

describe('AccSGDOptimizer (cpu)', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('is a tf.Optimizer registered as "AccSGD" whose config round-trips', () => {
    const opt = track(
      accsgd({ lr: 0.1, kappa: 2000, xi: 5, smallConst: 0.5, weightDecay: 1e-4, nonFinite: 'skip-step' }),
    );
    expect(opt).toBeInstanceOf(tf.Optimizer);
    expect(opt.getClassName()).toBe('AccSGD');
    const [cls, fromConfig] = tf.serialization.SerializationMap.getMap().classNameMap.AccSGD!;
    expect(cls).toBe(AccSGDOptimizer);
    const config = opt.getConfig();
    expect(config).toEqual({
      lr: 0.1,
      kappa: 2000,
      xi: 5,
      smallConst: 0.5,
      weightDecay: 1e-4,
      nonFinite: 'skip-step',
      fused: true,
    });
    const copy = track(fromConfig(cls, config) as AccSGDOptimizer);
    expect(copy.getConfig()).toEqual(config);
  });

  it('round-trips parameter groups through getConfig, including names tfjs-layers would camel-case', () => {
    const opt = track(
      accsgd({
        lr: 0.1,
        groups: [
          { params: ['dense_Dense1/kernel'], lr: 0.01 },
          { params: ['dense_Dense1/bias'], names: ['bias_b'] },
        ],
      }),
    );
    const [cls, fromConfig] = tf.serialization.SerializationMap.getMap().classNameMap.AccSGD!;
    const copy = track(fromConfig(cls, opt.getConfig()) as AccSGDOptimizer);
    expect(copy.paramGroups).toEqual(opt.paramGroups);
    expect(copy.paramGroups.map((g) => g.params)).toEqual([['dense_Dense1/kernel'], ['bias_b']]);
    expect(copy.paramGroups[0]!.hyperparams.lr).toBe(0.01);
  });

  it('rejects bad hyperparameters and options with AccSGDConfigError from the core', () => {
    expect(() => accsgd({ lr: -1 })).toThrow(AccSGDConfigError);
    expect(() => accsgd({ lr: 0.1, kappa: 10, xi: 100 })).toThrow(/beta/);
    expect(() => accsgd({ lr: 0.1, learningRate: 0.1 } as never)).toThrow(
      /learningRate is not an AccSGD option/,
    );
    expect(() => accsgd({ lr: 0.1, nonFinite: 'ignore' as never })).toThrow(AccSGDConfigError);
    expect(() => accsgd({ lr: 0.1, groups: [{ params: ['a'] }, { params: ['a'] }] })).toThrow(/listed twice/);
  });

  it('skips variables with a null gradient and tracks buffers by name, whatever the gradient order', () => {
    const a = track(variable([1, 2]));
    const b = track(variable([3]));
    const opt = track(accsgd({ lr: 0.1 }));
    step(opt, { [a.name]: [0.5, 0.5], [b.name]: null });
    expect(opt.momentumBuffer(b.name)).toBeNull();
    expect(Array.from(b.dataSync())).toEqual([3]);
    const bufferA = Array.from(opt.momentumBuffer(a.name)!.dataSync());
    // Now b first, a absent: a's buffer must not move, b gets its own.
    opt.applyGradients([
      { name: b.name, tensor: track(tf.tensor1d([1])) },
      { name: a.name, tensor: null as never },
    ]);
    expect(Array.from(opt.momentumBuffer(a.name)!.dataSync())).toEqual(bufferA);
    expect(opt.momentumBuffer(b.name)!.shape).toEqual([1]);
    // The same trajectory on the core's CPU optimizer.
    const pa = Float32Array.from([1, 2]);
    const pb = Float32Array.from([3]);
    const core = new AccSGD([{ params: [pa, pb], names: ['a', 'b'] }], { lr: 0.1 });
    core.step({ a: Float32Array.from([0.5, 0.5]), b: null });
    core.step({ b: Float32Array.from([1]) });
    expect(Array.from(a.dataSync())).toEqual(Array.from(pa));
    expect(Array.from(b.dataSync())).toEqual(Array.from(pb));
    expect(Array.from(opt.momentumBuffer(b.name)!.dataSync())).toEqual(Array.from(core.buffer('b')!));
  });

  it('names buffers <variable>/momentum_buffer and puts iter first in getWeights', async () => {
    const a = track(variable([1, 2]));
    const b = track(variable([3]));
    const opt = track(accsgd({ lr: 0.1 }));
    step(opt, { [b.name]: [1] });
    step(opt, { [a.name]: [1, 1], [b.name]: [1] });
    const weights = await opt.getWeights();
    expect(weights.map((w) => w.name)).toEqual([
      'iter',
      `${b.name}/momentum_buffer`,
      `${a.name}/momentum_buffer`,
    ]);
    expect(weights[0]!.tensor.dtype).toBe('int32');
    expect(weights[0]!.tensor.dataSync()[0]).toBe(2);
    expect(opt.momentumBuffer(a.name)!.name).toBe(`${a.name}/momentum_buffer`);
    expect(opt.momentumBuffer(a.name)!.trainable).toBe(false);
    weights[0]!.tensor.dispose();
  });

  it('restores getWeights() with setWeights() so the next step is identical', async () => {
    const a = track(variable([1, 2]));
    const opt = track(accsgd({ lr: 0.1 }));
    step(opt, { [a.name]: [0.5, -0.5] });
    const weights = await opt.getWeights();
    const saved = weights.map((w) => ({ name: w.name, tensor: tf.clone(w.tensor) }));
    weights[0]!.tensor.dispose();
    const aValues = Array.from(a.dataSync());
    step(opt, { [a.name]: [0.1, 0.2] });
    const expected = Array.from(a.dataSync());
    // A second optimizer restored from the saved weights, the variable reset to its saved value.
    a.assign(tf.tensor1d(aValues));
    const restored = track(accsgd({ lr: 0.1 }));
    await restored.setWeights(saved);
    tf.dispose(saved.map((w) => w.tensor));
    expect(restored.iterations).toBe(1);
    step(restored, { [a.name]: [0.1, 0.2] });
    expect(Array.from(a.dataSync())).toEqual(expected);
  });

  it('rejects a bad step before changing anything, with a typed error naming the variable', () => {
    const a = track(variable([1, 2]));
    const b = track(variable([3, 4, 5]));
    const opt = track(accsgd({ lr: 0.1 }));
    step(opt, { [a.name]: [1, 1], [b.name]: [1, 1, 1] });
    const snapshot = () =>
      [a, b, opt.momentumBuffer(a.name)!, opt.momentumBuffer(b.name)!].map((t) => Array.from(t.dataSync()));
    const before = snapshot();
    const good = [1, 1];
    // The bad gradient comes last, so a non-atomic optimizer would already have updated a.
    const cases: [string, () => void, RegExp][] = [
      [
        'shape',
        () => step(opt, { [a.name]: good, [b.name]: [1, 1] }),
        new RegExp(`"${b.name}": shape is \\[2\\]; the variable's is \\[3\\]`),
      ],
      [
        'dtype',
        () =>
          opt.applyGradients({
            [a.name]: track(tf.tensor1d(good)),
            [b.name]: track(tf.tensor1d([1, 1, 1], 'int32')),
          }),
        /dtype is int32/,
      ],
      ['unknown', () => step(opt, { [a.name]: good, nope: [1] }), /"nope": no tf.Variable has this name/],
      ['NaN', () => step(opt, { [a.name]: good, [b.name]: [1, Number.NaN, 1] }), /element 1 is NaN/],
      [
        'Infinity',
        () => step(opt, { [a.name]: good, [b.name]: [1, 1, -Infinity] }),
        /element 2 is -Infinity/,
      ],
    ];
    for (const [, attempt, message] of cases) {
      expect(attempt).toThrow(AccSGDGradientError);
      expect(attempt).toThrow(message);
      expect(snapshot()).toEqual(before);
      expect(opt.iterations).toBe(1);
    }
  });

  it("skips a non-finite step with nonFinite: 'skip-step' and applies it with 'allow'", () => {
    const a = track(variable([1]));
    const skip = track(accsgd({ lr: 0.1, nonFinite: 'skip-step' }));
    step(skip, { [a.name]: [Number.NaN] });
    expect(skip.lastStep.applied).toBe(false);
    expect(Array.from(a.dataSync())).toEqual([1]);
    expect(skip.momentumBuffer(a.name)).toBeNull();
    const allow = track(accsgd({ lr: 0.1, nonFinite: 'allow' }));
    step(allow, { [a.name]: [Number.NaN] });
    expect(Number.isNaN(a.dataSync()[0])).toBe(true);
  });

  it('applies setLearningRate next step, and a schedule per iteration', () => {
    // With lr = 0 and a first step, buf = p - beta*largeLr*g = p (largeLr = 0) and p' = p: nothing moves.
    const a = track(variable([1]));
    const opt = track(accsgd({ lr: 0 }));
    step(opt, { [a.name]: [1] });
    expect(Array.from(a.dataSync())).toEqual([1]);
    opt.setLearningRate(0.1);
    step(opt, { [a.name]: [1] });
    expect(a.dataSync()[0]).toBeLessThan(1);
    expect(() => opt.setLearningRate(-1)).toThrow(AccSGDConfigError);

    // A schedule sees the iteration count before each step: 0, 1, 2.
    const seen: number[] = [];
    const b = track(variable([2, 3]));
    const scheduled = track(
      accsgd({
        lr: (i) => {
          seen.push(i);
          return 0.1 * 0.5 ** i;
        },
      }),
    );
    const p = Float32Array.from([2, 3]);
    const core = new AccSGD([p], { lr: 0.1 });
    for (let i = 0; i < 3; i++) {
      core.setLearningRate(0.1 * 0.5 ** i);
      core.step([Float32Array.from([1, -1])]);
      step(scheduled, { [b.name]: [1, -1] });
    }
    expect(seen).toEqual([0, 0, 1, 2]); // the constructor validates the schedule at iteration 0 once
    expect(Array.from(b.dataSync())).toEqual(Array.from(p));
    expect(scheduled.getConfig().lr).toBe(0.1 * 0.5 ** 2);

    const bad = track(accsgd({ lr: (i) => (i < 1 ? 0.1 : Number.NaN) }));
    step(bad, { [b.name]: [1, 1] });
    const before = Array.from(b.dataSync());
    expect(() => step(bad, { [b.name]: [1, 1] })).toThrow(/schedule gave NaN at iteration 1/);
    expect(Array.from(b.dataSync())).toEqual(before);
  });

  it('exports the core state file, which the core optimizer imports and continues identically', async () => {
    const a = track(variable([1, 2, 3, 4], [2, 2], uniqueName('w')));
    const b = track(variable([0.5], [1], uniqueName('b')));
    const opt = track(
      accsgd({
        lr: 0.1,
        groups: [
          { params: [a.name], names: ['w'] },
          { params: [b.name], names: ['b'], lr: 0.01 },
        ],
      }),
    );
    const pw = Float32Array.from([1, 2, 3, 4]);
    const pb = Float32Array.from([0.5]);
    const core = new AccSGD(
      [
        { params: [pw], names: ['w'], shapes: [[2, 2]] },
        { params: [pb], names: ['b'], lr: 0.01 },
      ],
      { lr: 0.1 },
    );
    step(opt, { [a.name]: [1, 2, 3, 4] }, { [a.name]: [2, 2] });
    core.step({ w: Float32Array.from([1, 2, 3, 4]) });
    const bytes = await opt.exportState();
    const state = decodeState(bytes);
    expect(state.groups.map((g) => [g.params, g.step, g.hyperparams.lr])).toEqual([
      [['w'], 1, 0.1],
      [['b'], 0, 0.01],
    ]);
    expect(Array.from(state.buffers.get('w')!.data)).toEqual(Array.from(core.buffer('w')!));
    // tfjs -> core and core -> tfjs give the same bytes.
    expect(Array.from(core.exportState())).toEqual(Array.from(bytes));

    // Import into a fresh optimizer on the same variables and continue alongside the core.
    const resumed = track(
      accsgd({
        lr: 0.1,
        groups: [
          { params: [a.name], names: ['w'] },
          { params: [b.name], names: ['b'] },
        ],
      }),
    );
    resumed.importState(core.exportState());
    expect(resumed.paramGroups[1]!.hyperparams.lr).toBe(0.01);
    step(resumed, { [a.name]: [0.5, 0.5, 0.5, 0.5], [b.name]: [2] }, { [a.name]: [2, 2] });
    core.step({ w: Float32Array.from([0.5, 0.5, 0.5, 0.5]), b: Float32Array.from([2]) });
    expect(Array.from(a.dataSync())).toEqual(Array.from(pw));
    expect(Array.from(b.dataSync())).toEqual(Array.from(pb));
    expect(Array.from(resumed.momentumBuffer(b.name)!.dataSync())).toEqual(Array.from(core.buffer('b')!));
  });

  it('rejects a state file that does not fit, changing nothing', async () => {
    const a = track(variable([1, 2]));
    const opt = track(accsgd({ lr: 0.1, groups: [{ params: [a.name], names: ['w'] }] }));
    step(opt, { [a.name]: [1, 1] });
    const before = Array.from(opt.momentumBuffer(a.name)!.dataSync());
    const h = resolveHyperparams({ lr: 0.1 });
    const wrongShape = encodeState({
      groups: [{ hyperparams: h, params: ['w'], step: 3 }],
      buffers: new Map([['w', { shape: [3], data: new Float32Array(3) }]]),
    });
    const wrongName = encodeState({
      groups: [{ hyperparams: h, params: ['x'], step: 3 }],
      buffers: new Map(),
    });
    expect(() => opt.importState(wrongShape)).toThrow(AccSGDStateError);
    expect(() => opt.importState(wrongName)).toThrow(AccSGDStateError);
    expect(() => opt.importState(new Uint8Array([1, 2, 3]))).toThrow(AccSGDStateError);
    expect(Array.from(opt.momentumBuffer(a.name)!.dataSync())).toEqual(before);
    expect(opt.paramGroups[0]!.step).toBe(1);
  });

  it('rejects, without groups, a state file or weights for other parameters, changing nothing', async () => {
    const w = track(variable([1, 2]));
    const opt = track(accsgd({ lr: 0.1 }));
    step(opt, { [w.name]: [1, 1] });
    const snapshot = async () => {
      const weights = await opt.getWeights();
      const bytes = weights.map((x) => ({
        name: x.name,
        bytes: Array.from(new Uint8Array(x.tensor.dataSync<'float32'>().slice().buffer)),
      }));
      weights[0]!.tensor.dispose();
      return { bytes, groups: opt.paramGroups, iterations: opt.iterations, w: Array.from(w.dataSync()) };
    };
    const before = await snapshot();
    const foreign = encodeState({
      groups: [{ hyperparams: resolveHyperparams({ lr: 0.7 }), params: ['x'], step: 9 }],
      buffers: new Map([['x', { shape: [2], data: Float32Array.from([5, 6]) }]]),
    });
    expect(() => opt.importState(foreign)).toThrow(AccSGDStateError);
    expect(() => opt.importState(foreign)).toThrow(/the optimizer also has \[.*\]/);
    // The file names w, but with a buffer of another shape.
    const wrongShape = encodeState({
      groups: [{ hyperparams: resolveHyperparams({ lr: 0.7 }), params: [w.name], step: 9 }],
      buffers: new Map([[w.name, { shape: [3], data: new Float32Array(3) }]]),
    });
    expect(() => opt.importState(wrongShape)).toThrow(AccSGDStateError);
    const x = track(tf.tensor1d([5, 6]));
    const iter = track(tf.scalar(9, 'int32'));
    await expect(
      opt.setWeights([
        { name: 'iter', tensor: iter },
        { name: 'x/momentum_buffer', tensor: x },
      ]),
    ).rejects.toThrow(AccSGDStateError);
    expect(await snapshot()).toEqual(before);
    expect(opt.momentumBuffer(w.name)!.name).toBe(`${w.name}/momentum_buffer`);

    // A file naming w and more is accepted: the others wait for their variables.
    const wider = encodeState({
      groups: [{ hyperparams: resolveHyperparams({ lr: 0.7 }), params: [w.name, 'x'], step: 9 }],
      buffers: new Map([
        [w.name, { shape: [2], data: Float32Array.from([3, 4]) }],
        ['x', { shape: [2], data: Float32Array.from([5, 6]) }],
      ]),
    });
    opt.importState(wider);
    expect(opt.paramGroups).toEqual([
      { hyperparams: resolveHyperparams({ lr: 0.7 }), params: [w.name, 'x'], step: 9 },
    ]);
    expect(Array.from(opt.momentumBuffer(w.name)!.dataSync())).toEqual([3, 4]);
  });

  it('replaces, on a second import, buffers that still wait for their variables', () => {
    const opt = track(accsgd({ lr: 0.1 }));
    const state = (params: string[]) =>
      encodeState({
        groups: [{ hyperparams: resolveHyperparams({ lr: 0.2 }), params, step: 3 }],
        buffers: new Map(params.map((n) => [n, { shape: [2], data: Float32Array.from([1, 2]) }])),
      });
    opt.importState(state(['x', 'y']));
    opt.importState(state(['x']));
    expect(opt.paramGroups).toEqual([
      { hyperparams: resolveHyperparams({ lr: 0.2 }), params: ['x'], step: 3 },
    ]);
  });

  it('rejects an "iter" weight that is not an integer >= 0, changing nothing', async () => {
    const w = track(variable([1, 2]));
    const opt = track(accsgd({ lr: 0.1 }));
    step(opt, { [w.name]: [1, 1] });
    const weights = await opt.getWeights();
    for (const bad of [-2.5, 1.5, -1]) {
      const iter = track(tf.scalar(bad));
      await expect(opt.setWeights([{ name: 'iter', tensor: iter }, ...weights.slice(1)])).rejects.toThrow(
        `optimizer weight "iter" must be a scalar integer >= 0; got ${bad}`,
      );
    }
    expect(opt.iterations).toBe(1);
    expect(opt.paramGroups[0]!.step).toBe(1);
    weights[0]!.tensor.dispose();
  });

  it('does not let a step taken while setWeights reads "iter" be undone by it', async () => {
    // Calls take effect in the order they are made: setWeights first, then the step (which
    // completes the pending setWeights before it runs); nothing is undone.
    const a = track(variable([1, 2]));
    const b = track(variable([3, 4]));
    const opt = track(accsgd({ lr: 0.1 }));
    step(opt, { [a.name]: [1, 1] });
    const weights = await opt.getWeights(); // iter and a's buffer only
    const aBuffer = Array.from(weights[1]!.tensor.dataSync());
    const pending = opt.setWeights(weights);
    step(opt, { [b.name]: [1, 1] });
    await expect(pending).resolves.toBeUndefined();
    expect(opt.momentumBuffer(b.name)).not.toBeNull();
    expect(Array.from(opt.momentumBuffer(a.name)!.dataSync())).toEqual(aBuffer);
    expect(opt.iterations).toBe(2);
    expect(opt.paramGroups[0]!.params).toEqual([a.name, b.name]);
    weights[0]!.tensor.dispose();
  });

  it('rejects a step whose restored buffer does not fit its variable, before anything changes', async () => {
    const a = track(variable([1, 2], [2], uniqueName('a')));
    const lateName = uniqueName('late');
    for (const groups of [true, false]) {
      const opt = track(
        accsgd(
          groups ? { lr: 0.1, groups: [{ params: [a.name, lateName], names: ['a', 'late'] }] } : { lr: 0.1 },
        ),
      );
      const [aName, late] = groups ? ['a', 'late'] : [a.name, lateName];
      // The late variable does not exist yet, so its buffer's shape cannot be checked at import.
      opt.importState(
        encodeState({
          groups: [{ hyperparams: resolveHyperparams({ lr: 0.1 }), params: [aName, late], step: 1 }],
          buffers: new Map([
            [aName, { shape: [2], data: Float32Array.from([1, 2]) }],
            [late, { shape: [3], data: Float32Array.from([7, 8, 9]) }],
          ]),
        }),
      );
      const lateVariable = variable([3, 4], [2], lateName);
      // Variables, then buffers, hyperparameters and steps (the state file), then the iteration count.
      const snapshot = async () => [
        Array.from(a.dataSync()),
        Array.from(lateVariable.dataSync()),
        Array.from(await opt.exportState()),
        opt.iterations,
      ];
      const before = await snapshot();
      // The bad variable comes last, so a non-atomic optimizer would already have updated a.
      const attempt = () => step(opt, { [a.name]: [1, 1], [lateName]: [1, 1] });
      expect(attempt).toThrow(AccSGDStateError);
      expect(attempt).toThrow(
        new RegExp(`variable "${lateName}" has shape \\[3\\]; the variable has shape \\[2\\]`),
      );
      expect(await snapshot()).toEqual(before);
      lateVariable.dispose();
      opt.dispose();
    }
  });

  it('names restored buffers <name>/momentum_buffer after importState and setWeights, without leaking', async () => {
    const a = track(variable([1, 2]));
    const b = track(variable([3]));
    const opt = track(accsgd({ lr: 0.1 }));
    step(opt, { [a.name]: [1, 1], [b.name]: [1] });
    const names = () => [opt.momentumBuffer(a.name)!.name, opt.momentumBuffer(b.name)!.name];
    const expected = [`${a.name}/momentum_buffer`, `${b.name}/momentum_buffer`];
    expect(names()).toEqual(expected);
    const bytes = await opt.exportState();
    const tensors = tf.memory().numTensors;
    opt.importState(bytes);
    expect(names()).toEqual(expected);
    expect(tf.memory().numTensors).toBe(tensors);
    // Our own buffers handed back, as in setWeights(await getWeights()).
    const weights = await opt.getWeights();
    const values = weights.slice(1).map((w) => Array.from(w.tensor.dataSync()));
    await opt.setWeights(weights);
    weights[0]!.tensor.dispose();
    expect(names()).toEqual(expected);
    expect([a, b].map((v) => Array.from(opt.momentumBuffer(v.name)!.dataSync()))).toEqual(values);
    expect(tf.memory().numTensors).toBe(tensors);
    expect(new Uint8Array(await opt.exportState())).toEqual(bytes);

    // With groups, the buffers take the state names.
    const grouped = track(accsgd({ lr: 0.1, groups: [{ params: [a.name, b.name], names: ['ga', 'gb'] }] }));
    step(grouped, { [a.name]: [1, 1], [b.name]: [1] });
    grouped.importState(await grouped.exportState());
    expect(grouped.momentumBuffer(a.name)!.name).toBe('ga/momentum_buffer');
    const groupedWeights = await grouped.getWeights();
    await grouped.setWeights(groupedWeights);
    groupedWeights[0]!.tensor.dispose();
    expect(grouped.momentumBuffer(b.name)!.name).toBe('gb/momentum_buffer');
  });

  it('rejects gradients for variables outside its groups', () => {
    const a = track(variable([1]));
    const b = track(variable([1]));
    const opt = track(accsgd({ lr: 0.1, groups: [{ params: [a.name] }] }));
    expect(() => step(opt, { [b.name]: [1] })).toThrow(/in no parameter group/);
  });

  it('runs its fused kernel through the engine on cpu and wasm', async () => {
    for (const backend of ['cpu', 'wasm']) {
      await tf.setBackend(backend);
      expect(tf.getKernel(ACCSGD_UPDATE, backend)).toBeDefined();
      const p = tf.tensor1d([1, 2]);
      const g = tf.tensor1d([0.5, -0.5]);
      // coefficients [bufFromBuf, bufFromParam, bufFromGrad, paramFromParam, paramFromGrad, paramFromBuf]
      const [p2, b2] = tf
        .engine()
        .runKernel<tf.Tensor[]>(
          ACCSGD_UPDATE,
          { param: p, grad: g, buffer: p },
          { coefficients: [0.5, 0.25, 2, 1, -1, 0.5], inPlace: false },
        );
      // buffer' = 0.5*p + 0.25*p + 2*g = [1.75, 0.5]; param' = p - g + 0.5*buffer' = [1.375, 2.75]
      expect(Array.from(b2!.dataSync())).toEqual([1.75, 0.5]);
      expect(Array.from(p2!.dataSync())).toEqual([1.375, 2.75]);
      expect(Array.from(p.dataSync())).toEqual([1, 2]);
      tf.dispose([p, g, p2!, b2!]);
    }
    await tf.setBackend('cpu');
  });
});
