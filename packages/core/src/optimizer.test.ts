import { describe, expect, it } from 'vitest';
import { AccSGDConfigError } from './errors.js';
import { AccSGD } from './optimizer.js';
import { decodeState } from './state-file.js';

describe('AccSGD (CPU)', () => {
  it('takes one step exactly as the spec writes it (float64)', () => {
    const p = new Float64Array([1, 2, 3]);
    const opt = new AccSGD([p], { lr: 0.1 });
    opt.step([new Float64Array([0.5, -1, 2])]);
    // largeLr = 142.857..., beta = 0.0049, zeta = 0.7/0.7049; buf starts as p:
    //   buf = beta*((1/beta - 1)*p - largeLr*g + p) = p - beta*largeLr*g = p - 0.7*g
    //   p'  = zeta*(p - 0.1*g) + (1 - zeta)*buf
    const zeta = 0.7 / 0.7049;
    const buf = [1 - 0.35, 2 + 0.7, 3 - 1.4];
    const expected = [0.95, 2.1, 2.8].map((v, i) => zeta * v + (1 - zeta) * buf[i]!);
    [...opt.buffer(0)!].forEach((v, i) => expect(v).toBeCloseTo(buf[i]!, 14));
    [...p].forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 14));
  });

  it('leaves the parameter unchanged when g = 0 at the first step (buf = p is a fixed point)', () => {
    const p = new Float32Array([1.5, -2.25]);
    const opt = new AccSGD([p], { lr: 0.3, weightDecay: 0 });
    opt.step([new Float32Array(2)]);
    expect([...p]).toEqual([1.5, -2.25]);
    expect([...opt.buffer(0)!]).toEqual([1.5, -2.25]);
  });

  it('skips a parameter without a gradient: no buffer, no change, group step not counted', () => {
    const a = new Float32Array([1, 2]);
    const b = new Float32Array([3, 4]);
    const opt = new AccSGD([{ params: [a] }, { params: [b], lr: 0.5 }], { lr: 0.1 });
    opt.step([new Float32Array([1, 1]), null]);
    expect(opt.buffer(1)).toBeNull();
    expect([...b]).toEqual([3, 4]);
    expect(opt.paramGroups.map((g) => g.step)).toEqual([1, 0]);
  });

  it('applies a learning-rate change from the next step, per group', () => {
    const p = new Float64Array([1]);
    const q = new Float64Array([1]);
    const opt = new AccSGD([{ params: [p] }, { params: [q] }], { lr: 0.1 });
    opt.setLearningRate(0, 0);
    opt.step([new Float64Array([1]), new Float64Array([1])]);
    // lr = 0: largeLr = 0, buf = p, p' = zeta*p + (1-zeta)*p = p.
    expect(p[0]).toBeCloseTo(1, 15);
    expect(q[0]).not.toBeCloseTo(1, 3);
    expect(opt.paramGroups.map((g) => g.hyperparams.lr)).toEqual([0, 0.1]);
  });

  it("never mutates the caller's gradient, also with weight decay", () => {
    const g = new Float32Array([0.25, -0.5]);
    const opt = new AccSGD([new Float32Array([1, 1])], { lr: 0.1, weightDecay: 0.1 });
    opt.step([g]);
    expect([...g]).toEqual([0.25, -0.5]);
  });

  it('skips the whole step under nonFinite "skip-step" and applies it under "allow"', () => {
    const p = new Float32Array([1, 1]);
    const skip = new AccSGD([p], { lr: 0.1 }, { nonFinite: 'skip-step' });
    expect(skip.step([new Float32Array([Number.NaN, 0])])).toEqual({
      applied: false,
      reason:
        'gradient for parameter "0": element 0 is NaN (non-finite gradients are rejected; see the nonFinite option)',
    });
    expect([...p]).toEqual([1, 1]);
    expect(skip.buffer(0)).toBeNull();
    const q = new Float32Array([1, 1]);
    new AccSGD([q], { lr: 0.1 }, { nonFinite: 'allow' }).step([new Float32Array([Number.NaN, 0])]);
    expect(Number.isNaN(q[0])).toBe(true);
    expect(q[1]).toBe(1);
  });

  it('takes nonFinite beside the hyperparameters too, as @accsgd/tfjs does: one options object for both', () => {
    const config = { lr: 0.1, kappa: 1000, xi: 10, nonFinite: 'skip-step' } as const;
    const p = new Float32Array([1, 1]);
    const opt = new AccSGD([p], config);
    expect(opt.nonFinite).toBe('skip-step');
    expect(opt.step([new Float32Array([Number.POSITIVE_INFINITY, 0])]).applied).toBe(false);
    expect([...p]).toEqual([1, 1]);
    // Both places, agreeing: fine; disagreeing: refused, naming both.
    expect(new AccSGD([p], config, { nonFinite: 'skip-step' }).nonFinite).toBe('skip-step');
    expect(() => new AccSGD([p], config, { nonFinite: 'allow' })).toThrow(
      /nonFinite must be the same value as options.nonFinite \(allow\), or one of the two left out; got "skip-step"/,
    );
    expect(() => new AccSGD([p], { lr: 0.1, nonFinite: 'ignore' } as never)).toThrow(AccSGDConfigError);
  });

  it('accepts gradients keyed by name', () => {
    const w = new Float32Array([1, 2]);
    const opt = new AccSGD([{ params: [w], names: ['dense/kernel'] }], { lr: 0.1 });
    opt.step({ 'dense/kernel': new Float32Array([1, 0]) });
    expect(w[1]).toBe(2);
    expect(w[0]).not.toBe(1);
  });

  it('exports a safetensors state and resumes bit-exactly in a new optimizer', () => {
    const make = () => [new Float32Array([0.1, 0.2, 0.3]), new Float64Array([1, -1])] as const;
    const grads = (k: number) => [
      new Float32Array([k, -k, 0.5]),
      k % 2 ? null : new Float64Array([0.1 * k, 0.2]),
    ];
    const [a1, b1] = make();
    const straight = new AccSGD([{ params: [a1] }, { params: [b1], weightDecay: 0.01 }], { lr: 0.05 });
    for (let k = 1; k <= 6; k++) straight.step(grads(k));

    const [a2, b2] = make();
    const first = new AccSGD([{ params: [a2] }, { params: [b2], weightDecay: 0.01 }], { lr: 0.05 });
    for (let k = 1; k <= 3; k++) first.step(grads(k));
    const bytes = first.exportState();
    const state = decodeState(bytes);
    expect(state.groups.map((g) => [g.params, g.step])).toEqual([
      [['0'], 3],
      [['1'], 1],
    ]);
    expect(state.buffers.get('0')!.data).toBeInstanceOf(Float32Array);
    expect(state.buffers.get('1')!.data).toBeInstanceOf(Float64Array);

    const resumed = new AccSGD([{ params: [a2] }, { params: [b2] }], { lr: 0.9 });
    resumed.importState(bytes);
    expect(resumed.paramGroups.map((g) => g.hyperparams.lr)).toEqual([0.05, 0.05]);
    expect(resumed.paramGroups[1]!.hyperparams.weightDecay).toBe(0.01);
    for (let k = 4; k <= 6; k++) resumed.step(grads(k));
    expect([...a2]).toEqual([...a1]);
    expect([...b2]).toEqual([...b1]);
  });

  it('imports a state file held in a Node Buffer that views a shared pool (as readFileSync returns)', () => {
    const source = new AccSGD([new Float32Array([1, 2, 3])], { lr: 0.1 });
    source.step([new Float32Array([0.5, -0.5, 1])]);
    const bytes = source.exportState();
    // Small Buffers are carved out of one shared 8 KiB ArrayBuffer, at an offset.
    const pooled = Buffer.from(bytes);
    expect(pooled.byteOffset > 0 || pooled.buffer.byteLength > pooled.byteLength).toBe(true);
    const target = new AccSGD([new Float32Array(3)], { lr: 0.1 });
    target.importState(pooled);
    expect(target.buffer(0)).toEqual(source.buffer(0));
    expect(decodeState(pooled).buffers.get('0')!.data).toEqual(source.buffer(0));
  });
});
