import { AccSGD, float32Multipliers, fusedCoefficients, resolveHyperparams } from '@accsgd/core';
import * as ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { describe, expect, it } from 'vitest';
import type { ParamGroupInput } from './onnx-optimizer.js';
import { OnnxAccSGD } from './onnx-optimizer.js';
import type { ExecutionProvider, OrtModule } from './runtime.js';
import { countingOrt, sameBits, seeded } from './test-support/counting-ort.js';

const f = Math.fround;
/** [title, ORT, execution provider, updateGraph]: core's kernel on cpu and wasm, and the graph on cpu. */
const RUNTIMES: [string, OrtModule, ExecutionProvider, boolean][] = [
  ['onnxruntime-node cpu', ortNode, 'cpu', false],
  ['onnxruntime-web wasm', ortWeb, 'wasm', false],
  ['onnxruntime-node cpu, update graph', ortNode, 'cpu', true],
];

/** Two groups: w (2x3) and b (3) in group 0, v (1,500 elements: core's wasm kernel path) in group 1. */
function problem(weightDecay = 0) {
  return {
    shapes: { w: [2, 3], b: [3], v: [1500] } as Record<string, number[]>,
    init: { w: seeded(6, 1), b: seeded(3, 2), v: seeded(1500, 3) } as Record<string, Float32Array>,
    groups: (init: Record<string, Float32Array>) => [
      {
        lr: 0.1,
        weightDecay,
        params: [
          { name: 'w', shape: [2, 3], data: init.w! },
          { name: 'b', data: init.b! },
        ],
      },
      { lr: 0.05, kappa: 100, xi: 5, params: [{ name: 'v', data: init.v! }] },
    ],
  };
}

/** The same problem on @accsgd/core's CPU optimizer (float32). */
function coreTwin(weightDecay = 0) {
  const p = problem(weightDecay);
  const arrays = { w: p.init.w!.slice(), b: p.init.b!.slice(), v: p.init.v!.slice() };
  const core = new AccSGD(
    [
      { lr: 0.1, weightDecay, params: [arrays.w, arrays.b], names: ['w', 'b'], shapes: [[2, 3], [3]] },
      { lr: 0.05, kappa: 100, xi: 5, params: [arrays.v], names: ['v'] },
    ],
    { lr: 0.1 },
  );
  return { core, arrays };
}

const gradsAt = (t: number) => ({ w: seeded(6, 100 + t), b: seeded(3, 200 + t), v: seeded(1500, 300 + t) });

for (const [title, ort, executionProvider, updateGraph] of RUNTIMES) {
  describe(`OnnxAccSGD on ${title}`, () => {
    const create = (groups: readonly ParamGroupInput[], options = {}) =>
      OnnxAccSGD.create(groups, { lr: 0.1 }, { ort, executionProvider, updateGraph, ...options });
    // Update sessions a graph run builds; core's kernel builds none.
    const sessions = (graphSessions: number) => (updateGraph ? graphSessions : 0);
    // With the graph, one more session cuts group 0's flat tensor into w and b after each step.
    const created = (updateSessions: number) => (updateGraph ? updateSessions + 1 : 0);

    it('first step: buf = (bufFromBuf + bufFromParam) p + bufFromGrad g, rounded as core rounds it', async () => {
      const opt = await create([{ lr: 0.1, params: [{ name: 'x', data: [1, -2] }] }]);
      await opt.step({ x: new Float32Array([0.5, 0.25]) });
      const { params, buffers } = await opt.read();
      // lr 0.1, kappa 1000, xi 10, smallConst 0.7: alpha = 0.9951, beta = 0.0049, largeLr = 142.857...,
      // zeta = 0.7 / 0.7049; first step c1 = alpha + beta = 1, c2 = -beta * largeLr = -0.7.
      const [, , c2, c3, c4, c5] = float32Multipliers(
        fusedCoefficients(resolveHyperparams({ lr: 0.1 })),
        false,
      );
      const c1first = float32Multipliers(fusedCoefficients(resolveHyperparams({ lr: 0.1 })), true)[1];
      expect(c1first).toBe(1);
      expect(c2).toBe(f(-0.7));
      const buf = [f(f(1 * 1) + f(c2 * 0.5)), f(f(1 * -2) + f(c2 * 0.25))];
      expect(Array.from(buffers.get('x')!)).toEqual(buf); // [0.65, -2.175] in float32
      expect(buffers.get('x')![0]).toBeCloseTo(0.65, 6);
      expect(buffers.get('x')![1]).toBeCloseTo(-2.175, 6);
      expect(Array.from(params.get('x')!)).toEqual([
        f(f(f(c3 * 1) + f(c4 * 0.5)) + f(c5 * buf[0]!)),
        f(f(f(c3 * -2) + f(c4 * 0.25)) + f(c5 * buf[1]!)),
      ]);
      expect(opt.groups[0]!.step).toBe(1);
      await opt.dispose();
    });

    for (const weightDecay of [0, 0.01]) {
      it(`is bit-identical to core's float32 AccSGD over 6 steps with an lr change (weightDecay ${weightDecay})`, async () => {
        const p = problem(weightDecay);
        const opt = await create(p.groups(p.init));
        const { core, arrays } = coreTwin(weightDecay);
        for (let t = 0; t < 6; t++) {
          if (t === 3) {
            opt.setLearningRate(0.02, 0);
            core.setLearningRate(0.02, 0);
          }
          const g = gradsAt(t);
          // b has no gradient on step 1 (0-based) and v none on step 4: skipped, not zeroed.
          const grads = { w: g.w, b: t === 1 ? null : g.b, v: t === 4 ? undefined : g.v };
          await opt.step(grads);
          core.step({ w: g.w, b: t === 1 ? null : g.b, v: t === 4 ? null : g.v });
        }
        const { params, buffers } = await opt.read();
        for (const name of ['w', 'b', 'v'] as const) {
          expect(sameBits(params.get(name)!, arrays[name]), name).toBe(true);
          expect(sameBits(buffers.get(name)!, core.buffer(name) as Float32Array), `${name} buffer`).toBe(
            true,
          );
        }
        expect(opt.groups.map((g) => g.step)).toEqual([6, 5]);
        await opt.dispose();
      });
    }

    it('leaves parameters without a gradient untouched, bit for bit, and gives them no buffer', async () => {
      const p = problem();
      const opt = await create(p.groups(p.init));
      await opt.step({ w: seeded(6, 7) });
      let { params, buffers } = await opt.read();
      expect(sameBits(params.get('b')!, p.init.b!)).toBe(true);
      expect(sameBits(params.get('v')!, p.init.v!)).toBe(true);
      expect(buffers.get('b')).toBeNull();
      expect(buffers.get('v')).toBeNull();
      expect(opt.groups.map((g) => g.step)).toEqual([1, 0]); // group 1 had no gradient at all
      const before = { w: params.get('w')!, wBuf: buffers.get('w')! };
      await opt.step({ b: seeded(3, 8), w: null });
      ({ params, buffers } = await opt.read());
      expect(sameBits(params.get('w')!, before.w)).toBe(true);
      expect(sameBits(buffers.get('w')!, before.wBuf)).toBe(true);
      expect(buffers.get('b')).not.toBeNull();
      await opt.dispose();
    });

    it('changes the learning rate without creating a session: one per mode of a group (first step, later steps)', async () => {
      const counting = countingOrt(ort);
      const p = problem();
      const opt = await OnnxAccSGD.create(
        p.groups(p.init),
        { lr: 0.1 },
        { ort: counting.ort, executionProvider, updateGraph },
      );
      for (let t = 0; t < 8; t++) {
        opt.setLearningRate(0.1 / (t + 1));
        await opt.step(gradsAt(t));
      }
      // Step 1 (every buffer initialised) and steps 2..8 (every buffer continued): 2 graphs, each
      // run once per group per step, and group 0's cut once at create and once per step.
      expect(counting.created()).toBe(created(2));
      expect(counting.runs()).toBe(sessions(8 * 2 + 9));
      expect(opt.cachedSessions).toBe(sessions(2));
      await opt.dispose();
      expect(counting.released()).toBe(created(2));
    });

    it('evicts the least recently used update session beyond maxCachedSessions and releases it', async () => {
      const counting = countingOrt(ort);
      const p = problem();
      const opt = await OnnxAccSGD.create(
        p.groups(p.init),
        { lr: 0.1 },
        { ort: counting.ort, executionProvider, updateGraph, maxCachedSessions: 1 },
      );
      // Every member's first step ('first'), then w alone ('masked').
      await opt.step({ w: seeded(6, 1), b: seeded(3, 1) });
      await opt.step({ w: seeded(6, 2) });
      expect(counting.created()).toBe(created(2));
      expect(opt.cachedSessions).toBe(sessions(1));
      await new Promise((r) => setTimeout(r, 0));
      expect(counting.released()).toBe(sessions(1));
      await opt.dispose();
      expect(counting.released()).toBe(created(2));
    });

    it('rejects bad gradients with AccSGDGradientError and changes nothing (a step is atomic)', async () => {
      const p = problem();
      const opt = await create(p.groups(p.init));
      await opt.step(gradsAt(0));
      const before = await opt.read();
      const good = gradsAt(1);
      const bad: [string, unknown][] = [
        ['unknown name', { ...good, nope: new Float32Array(1) }],
        ['wrong length', { ...good, v: new Float32Array(1499) }],
        ['wrong dtype', { ...good, b: new Int32Array(3) }],
        ['plain array', { ...good, b: [1, 2, 3] }],
        ['NaN', { ...good, v: Object.assign(seeded(1500, 4), { 1499: Number.NaN }) }],
        ['Infinity', { ...good, w: Object.assign(seeded(6, 4), { 0: Number.POSITIVE_INFINITY }) }],
        ['float64 overflowing float32', { ...good, b: new Float64Array([0, 1e39, 0]) }],
        ['an array of the wrong length', [good.w, good.b]],
        ['a Map', new Map([['w', good.w]])],
      ];
      for (const [what, grads] of bad) {
        await expect(opt.step(grads as never), what).rejects.toMatchObject({ name: 'AccSGDGradientError' });
      }
      await expect(opt.step(good as never)).resolves.toEqual({ applied: true });
      const ref = await create(p.groups(p.init));
      await ref.step(gradsAt(0));
      await ref.step(good);
      const after = await opt.read();
      const expected = await ref.read();
      for (const name of ['w', 'b', 'v']) {
        expect(sameBits(after.params.get(name)!, expected.params.get(name)!)).toBe(true);
        expect(sameBits(after.buffers.get(name)!, expected.buffers.get(name)!)).toBe(true);
      }
      expect(before.params.get('w')).not.toEqual(after.params.get('w'));
      expect(opt.groups.map((g) => g.step)).toEqual([2, 2]);
      await opt.dispose();
      await ref.dispose();
    });

    it("'skip-step' reports a non-finite gradient as a skipped step; bad hyperparameters are AccSGDConfigError", async () => {
      const p = problem();
      const opt = await create(p.groups(p.init), { nonFinite: 'skip-step' });
      const result = await opt.step({ w: new Float32Array(6).fill(Number.NaN) });
      expect(result).toMatchObject({ applied: false });
      expect(opt.groups.map((g) => g.step)).toEqual([0, 0]);
      expect((await opt.read()).buffers.get('w')).toBeNull();
      expect(() => opt.setLearningRate(-1)).toThrow(expect.objectContaining({ name: 'AccSGDConfigError' }));
      // lr = 1e38 is valid in float64, but bufFromGrad overflows float32 (SPEC §1).
      expect(() => opt.setLearningRate(1e38, 1)).toThrow(expect.objectContaining({ field: 'lr' }));
      expect(() => opt.setLearningRate(0.1, 2)).toThrow(expect.objectContaining({ field: 'group' }));
      expect(opt.groups.map((g) => g.hyperparams.lr)).toEqual([0.1, 0.05]);
      await expect(
        OnnxAccSGD.create(
          [{ lr: 0.1, learningRate: 0.1, params: [{ data: [1] }] } as never],
          { lr: 0.1 },
          { ort },
        ),
      ).rejects.toMatchObject({ name: 'AccSGDConfigError', field: 'learningRate' });
      await opt.dispose();
    });

    it('takes effect in call order: an export queued between two steps sees the first only', async () => {
      const p = problem();
      const opt = await create(p.groups(p.init));
      const ref = await create(p.groups(p.init));
      await ref.step(gradsAt(0));
      const expected = await ref.exportState();
      // Not awaited in between: the export runs after step 0 and before step 1.
      const [, between] = await Promise.all([opt.step(gradsAt(0)), opt.exportState(), opt.step(gradsAt(1))]);
      expect(between).toEqual(expected);
      // A synchronous change while calls are pending would overtake them: AccSGDStateError.
      const pending = opt.step(gradsAt(2));
      expect(() => opt.setLearningRate(0.5)).toThrow(expect.objectContaining({ name: 'AccSGDStateError' }));
      await pending;
      expect(opt.groups.map((g) => [g.step, g.hyperparams.lr])).toEqual([
        [3, 0.1],
        [3, 0.05],
      ]);
      // Gradients aligned with the parameters (an array, null for none) work as well as a record.
      await opt.step([null, gradsAt(3).b, null]);
      expect(opt.groups.map((g) => g.step)).toEqual([4, 3]);
      await opt.dispose();
      await ref.dispose();
    });

    it('moves state to and from core AccSGD and continues bit-identically', async () => {
      const p = problem(0.01);
      const { core, arrays } = coreTwin(0.01);
      for (let t = 0; t < 3; t++) core.step(gradsAt(t));
      // core -> ONNX: the ONNX optimizer starts from core's parameters and imports its buffers.
      const current = { w: arrays.w.slice(), b: arrays.b.slice(), v: arrays.v.slice() };
      const opt = await create(p.groups(current));
      await opt.importState(core.exportState());
      expect(opt.groups.map((g) => g.step)).toEqual([3, 3]);
      for (let t = 3; t < 6; t++) {
        core.step(gradsAt(t));
        await opt.step(gradsAt(t));
      }
      let { params } = await opt.read();
      for (const name of ['w', 'b', 'v'] as const)
        expect(sameBits(params.get(name)!, arrays[name])).toBe(true);
      // ONNX -> core: a fresh core optimizer over the ONNX parameters, importing the ONNX state.
      const copy = { w: params.get('w')!.slice(), b: params.get('b')!.slice(), v: params.get('v')!.slice() };
      const core2 = new AccSGD(
        [
          { lr: 0.1, weightDecay: 0.01, params: [copy.w, copy.b], names: ['w', 'b'], shapes: [[2, 3], [3]] },
          { lr: 0.05, kappa: 100, xi: 5, params: [copy.v], names: ['v'] },
        ],
        { lr: 0.1 },
      );
      core2.importState(await opt.exportState());
      core2.step(gradsAt(6));
      await opt.step(gradsAt(6));
      ({ params } = await opt.read());
      for (const name of ['w', 'b', 'v'] as const) expect(sameBits(params.get(name)!, copy[name])).toBe(true);
      await opt.dispose();
    });

    it('rejects a state file that does not fit, changing nothing', async () => {
      const p = problem();
      const opt = await create(p.groups(p.init));
      await opt.step(gradsAt(0));
      const good = await opt.exportState();
      const other = await create([{ lr: 0.1, params: [{ name: 'w', shape: [2, 3], data: p.init.w! }] }]);
      await other.step({ w: seeded(6, 1) });
      await expect(opt.importState(await other.exportState())).rejects.toMatchObject({
        name: 'AccSGDStateError',
      });
      await expect(opt.importState(good.slice(0, 20))).rejects.toMatchObject({ name: 'AccSGDStateError' });
      expect(await opt.exportState()).toEqual(good);
      await opt.dispose();
      await other.dispose();
    });

    it('dispose releases every session and later calls throw AccSGDStateError', async () => {
      const counting = countingOrt(ort);
      const p = problem();
      const opt = await OnnxAccSGD.create(
        p.groups(p.init),
        { lr: 0.1 },
        { ort: counting.ort, executionProvider, updateGraph },
      );
      await opt.step(gradsAt(0));
      await opt.step({ w: seeded(6, 9) });
      expect(counting.created()).toBe(created(2));
      await opt.dispose();
      await opt.dispose();
      expect(counting.released()).toBe(created(2));
      await expect(opt.step(gradsAt(1))).rejects.toMatchObject({ name: 'AccSGDStateError' });
      expect(() => opt.paramTensor('w')).toThrow(expect.objectContaining({ name: 'AccSGDStateError' }));
    });
  });
}

describe('runtime lookup', () => {
  it('uses globalThis[Symbol.for("onnxruntime")] when no ort is passed, and says so when there is none', async () => {
    const key = Symbol.for('onnxruntime');
    const g = globalThis as Record<symbol, unknown>;
    await expect(OnnxAccSGD.create([{ params: [{ data: [1] }] }], { lr: 0.1 })).rejects.toMatchObject({
      name: 'AccSGDConfigError',
      field: 'ort',
    });
    g[key] = ortNode;
    try {
      const opt = await OnnxAccSGD.create([{ params: [{ data: [1, 2] }] }], { lr: 0.1 });
      await opt.step({ '0': new Float32Array([1, 1]) });
      expect(opt.ort).toBe(ortNode);
      expect(opt.paramNames).toEqual(['0']);
      await opt.dispose();
    } finally {
      delete g[key];
    }
  });
});
