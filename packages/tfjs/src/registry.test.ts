import {
  AccSGD,
  AccSGDConfigError,
  AccSGDStateError,
  decodeState,
  encodeState,
  resolveHyperparams,
} from '@accsgd/core';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { accsgd } from './accsgd-optimizer.js';
import { disposeAfterEach } from './test-support/dispose-after-each.js';

/**
 * The optimizer's registry of buffers (without `groups`): restored entries waiting for their
 * variables, exact names before tfjs-layers' `_<n>` renaming, and state files that stay readable.
 */

tf.env().set('IS_TEST', true);

let counter = 0;
const uniqueName = (base: string) => `reg${counter++}_${base}`;

const track = disposeAfterEach();
const variable = (values: number[], name: string) =>
  track(tf.tidy(() => tf.variable(tf.tensor1d(values), true, name)));

function step(opt: tf.Optimizer, grads: [string, number[]][]): void {
  const list = grads.map(([name, g]) => ({ name, tensor: tf.tensor1d(g) }));
  try {
    opt.applyGradients(list);
  } finally {
    tf.dispose(list.map((x) => x.tensor));
  }
}

const h = resolveHyperparams({ lr: 0.1, kappa: 100, xi: 5 });
const state = (params: string[], buffers: [string, number[]][], step = 3) =>
  encodeState({
    groups: [{ hyperparams: h, params, step }],
    buffers: new Map(buffers.map(([n, d]) => [n, { shape: [d.length], data: Float32Array.from(d) }])),
  });

describe('buffer registry (cpu, no groups)', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('lists a restored parameter once after its first step, and the export stays readable', async () => {
    // The file lists w (no buffer yet: saved before w's first gradient) and v (a buffer). The
    // optimizer used to append a second entry for w on its first step: ["w", "v", "w"], a file
    // every reader rejects ("gap of 8 bytes before tensor").
    const w = variable([1, 2], uniqueName('w'));
    const v = variable([3, 4], uniqueName('v'));
    const opt = track(accsgd({ lr: 0.1, kappa: 100, xi: 5 }));
    const saved = state([w.name, v.name], [[v.name, [0.5, 0.25]]]);
    opt.importState(saved);
    step(opt, [[w.name, [1, -1]]]);
    const decoded = decodeState(await opt.exportState());
    expect(decoded.groups.map((g) => [g.params, g.step])).toEqual([[[w.name, v.name], 4]]);
    expect([...decoded.buffers.keys()].sort()).toEqual([v.name, w.name].sort());

    // The core optimizer, importing the same file and taking the same step, agrees.
    const pw = Float32Array.from([1, 2]);
    const pv = Float32Array.from([3, 4]);
    const core = new AccSGD([{ params: [pw, pv], names: [w.name, v.name] }], { lr: 0.1 });
    core.importState(saved);
    core.step({ [w.name]: Float32Array.from([1, -1]) });
    expect(Array.from(w.dataSync())).toEqual(Array.from(pw));
    expect(Array.from(decoded.buffers.get(w.name)!.data)).toEqual(Array.from(core.buffer(w.name)!));
    expect(Array.from(decoded.buffers.get(v.name)!.data)).toEqual([0.5, 0.25]);
    expect(Array.from(await opt.exportState())).toEqual(Array.from(core.exportState()));

    // Every later checkpoint stays readable, and imports back.
    step(opt, [
      [v.name, [1, 1]],
      [w.name, [1, 1]],
    ]);
    const again = await opt.exportState();
    expect(decodeState(again).groups[0]!.params).toEqual([w.name, v.name]);
    opt.importState(again);
    expect(opt.paramGroups[0]!.params).toEqual([w.name, v.name]);
  });

  it('gives a restored buffer to the exact name first, whatever the gradient order, then to `_<n>`', async () => {
    const base = uniqueName('m/kernel');
    const kernel = variable([1, 2], base);
    const renamed = variable([3, 4], `${base}_1`);
    for (const order of [
      [renamed.name, kernel.name],
      [kernel.name, renamed.name],
    ]) {
      tf.tidy(() => {
        kernel.assign(tf.tensor1d([1, 2]));
        renamed.assign(tf.tensor1d([3, 4]));
      });
      const opt = track(accsgd({ lr: 0.1, kappa: 100, xi: 5 }));
      const saved = state([base], [[base, [0.5, -0.5]]]);
      opt.importState(saved);
      const grads: Record<string, number[]> = { [kernel.name]: [1, 1], [renamed.name]: [-1, 2] };
      step(
        opt,
        order.map((n) => [n, grads[n]!]),
      );
      // kernel continues from its restored buffer; kernel_1 starts afresh. The core optimizer,
      // with the same file (kernel_1 not in it: a new parameter, no buffer), agrees exactly.
      const pk = Float32Array.from([1, 2]);
      const pr = Float32Array.from([3, 4]);
      const core = new AccSGD([{ params: [pk, pr], names: [base, renamed.name] }], { lr: 0.1 });
      core.importState(state([base, renamed.name], [[base, [0.5, -0.5]]]));
      core.step({ [base]: Float32Array.from([1, 1]), [renamed.name]: Float32Array.from([-1, 2]) });
      expect(Array.from(kernel.dataSync())).toEqual(Array.from(pk));
      expect(Array.from(renamed.dataSync())).toEqual(Array.from(pr));
      expect(Array.from(opt.momentumBuffer(kernel.name)!.dataSync())).toEqual(Array.from(core.buffer(base)!));
      expect(Array.from(opt.momentumBuffer(renamed.name)!.dataSync())).toEqual(
        Array.from(core.buffer(renamed.name)!),
      );
      const decoded = decodeState(await opt.exportState());
      expect(decoded.groups[0]!.params).toEqual([base, renamed.name]);
      expect(Array.from(await opt.exportState())).toEqual(Array.from(core.exportState()));
    }
  });

  it('gives a buffer that only `_<n>` names can take to the lowest n, whatever the gradient order', async () => {
    const base = uniqueName('dense/kernel');
    const one = variable([1, 2], `${base}_1`);
    const two = variable([3, 4], `${base}_2`);
    const ten = variable([5, 6], `${base}_10`);
    for (const order of [
      [ten, two, one],
      [one, two, ten],
      [two, ten, one],
    ]) {
      tf.tidy(() => {
        one.assign(tf.tensor1d([1, 2]));
        two.assign(tf.tensor1d([3, 4]));
        ten.assign(tf.tensor1d([5, 6]));
      });
      const opt = track(accsgd({ lr: 0.1, kappa: 100, xi: 5 }));
      opt.importState(state([base], [[base, [7, 8]]]));
      step(
        opt,
        order.map((v) => [v.name, [0, 0]]),
      );
      // With a zero gradient, buf' = alpha*buf + beta*p: only kernel_1 starts from [7, 8].
      const alpha = 1 - (0.7 * 0.7 * 5) / 100;
      expect(opt.momentumBuffer(one.name)!.dataSync()[0]).toBeCloseTo(alpha * 7 + (1 - alpha) * 1, 5);
      expect(opt.momentumBuffer(two.name)!.dataSync()[0]).toBeCloseTo(3, 5);
      expect(opt.momentumBuffer(ten.name)!.dataSync()[0]).toBeCloseTo(5, 5);
      expect(opt.paramGroups[0]!.params).toEqual([
        base,
        ...order.filter((v) => v !== one).map((v) => v.name),
      ]);
      expect(decodeState(await opt.exportState()).groups[0]!.params).toHaveLength(3);
    }
  });

  it('keeps state names unique when a variable arrives whose name a renamed variable took', async () => {
    const base = uniqueName('k');
    const renamed = variable([3, 4], `${base}_1`);
    const opt = track(accsgd({ lr: 0.1 }));
    opt.importState(state([base], [[base, [1, 1]]]));
    step(opt, [[renamed.name, [1, 1]]]); // takes base's buffer under the name base
    const original = variable([1, 2], base);
    step(opt, [[original.name, [1, 1]]]);
    const params = decodeState(await opt.exportState()).groups[0]!.params;
    expect(new Set(params).size).toBe(params.length);
    expect(params).toHaveLength(2);
  });

  it('refuses state names the core registry refuses ("", "__proto__", "__metadata__"), changing nothing', async () => {
    const w = variable([1, 2], uniqueName('w'));
    for (const name of ['', '__proto__', '__metadata__']) {
      expect(() => accsgd({ lr: 0.1, groups: [{ params: [w.name], names: [name] }] })).toThrow(
        AccSGDConfigError,
      );
      expect(() => accsgd({ lr: 0.1, groups: [{ params: [w.name], names: [name] }] })).toThrow(
        /groups\[0\]\.names\[0\] must be a non-empty string other than "__proto__" and "__metadata__"/,
      );
    }
    const opt = track(accsgd({ lr: 0.1 }));
    step(opt, [[w.name, [1, 1]]]);
    const before = Array.from(await opt.exportState());
    const iter = track(tf.scalar(1, 'int32'));
    const buffer = track(tf.tensor1d([1, 2]));
    const tensors = tf.memory().numTensors;
    await expect(
      opt.setWeights([
        { name: 'iter', tensor: iter },
        { name: `${w.name}/momentum_buffer`, tensor: buffer },
        { name: '/momentum_buffer', tensor: buffer },
      ]),
    ).rejects.toThrow(AccSGDStateError);
    expect(() => opt.importState(state([w.name, ''], [[w.name, [1, 2]]]))).toThrow(
      /the restored names cannot be state names/,
    );
    expect(Array.from(await opt.exportState())).toEqual(before);
    expect(tf.memory().numTensors).toBe(tensors);
  });

  it('matches 20,000 restored buffers to 20,000 renamed variables in one step, each name once', async () => {
    const n = 20_000;
    const prefix = uniqueName('big');
    const names = Array.from({ length: n }, (_, i) => `${prefix}/p${i}`);
    const opt = track(accsgd({ lr: 0.1, kappa: 100, xi: 5 }));
    // setWeights, since a 20,000-tensor state file passes the 1 MiB header limit.
    const weights = [
      { name: 'iter', tensor: tf.scalar(5, 'int32') },
      ...names.map((name, i) => ({ name: `${name}/momentum_buffer`, tensor: tf.tensor1d([i]) })),
    ];
    await opt.setWeights(weights);
    tf.dispose(weights.map((w) => w.tensor));
    // tfjs-layers' renaming: every variable is `<name>_1`, so every one takes the fallback.
    const variables = names.map((name) => tf.variable(tf.zeros([1]), true, `${name}_1`));
    const grads = variables.map((v) => ({ name: v.name, tensor: tf.zeros([1]) }));
    opt.applyGradients(grads.reverse());
    // zero gradient, p = 0: buf' = alpha * buf
    const alpha = 1 - (0.7 * 0.7 * 5) / 100;
    for (const i of [0, 1, 12_345, n - 1]) {
      expect(opt.momentumBuffer(`${names[i]}_1`)!.dataSync()[0]).toBeCloseTo(alpha * i, 2);
    }
    const params = opt.paramGroups[0]!.params;
    expect(params).toEqual(names);
    const saved = await opt.getWeights();
    expect(saved.map((w) => w.name)).toEqual(['iter', ...names.map((name) => `${name}/momentum_buffer`)]);
    saved[0]!.tensor.dispose();
    tf.dispose([...variables, ...grads.map((g) => g.tensor)]);
  }, 120_000);
});
