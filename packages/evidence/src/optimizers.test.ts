import { AccSGD } from '@accsgd/core';
import { describe, expect, it } from 'vitest';
import { createStepper, heavyBallStep, nesterovStep, sgdStep } from './optimizers.js';

describe('functional steps, against hand-computed values', () => {
  it('SGD: p - lr * g', () => {
    const p = Float64Array.of(1, -2);
    sgdStep(p, Float64Array.of(0.5, 4), 0.1);
    expect([...p]).toEqual([1 - 0.05, -2 - 0.4]); // 0.95, -2.4
  });

  it('heavy ball: buf = m*buf + g, p -= lr*buf, over two steps', () => {
    const p = Float64Array.of(1);
    const buf = Float64Array.of(0);
    heavyBallStep(p, buf, Float64Array.of(2), 0.1, 0.9); // buf 2, p 1 - 0.2 = 0.8
    expect(buf[0]).toBeCloseTo(2, 15);
    expect(p[0]).toBeCloseTo(0.8, 15);
    heavyBallStep(p, buf, Float64Array.of(1), 0.1, 0.9); // buf 0.9*2 + 1 = 2.8, p 0.8 - 0.28 = 0.52
    expect(buf[0]).toBeCloseTo(2.8, 15);
    expect(p[0]).toBeCloseTo(0.52, 15);
  });

  it('Nesterov: buf = m*buf + g, p -= lr*(g + m*buf), over two steps', () => {
    const p = Float64Array.of(1);
    const buf = Float64Array.of(0);
    nesterovStep(p, buf, Float64Array.of(2), 0.1, 0.9); // buf 2, p 1 - 0.1*(2 + 1.8) = 0.62
    expect(buf[0]).toBeCloseTo(2, 15);
    expect(p[0]).toBeCloseTo(0.62, 15);
    nesterovStep(p, buf, Float64Array.of(1), 0.1, 0.9); // buf 2.8, p 0.62 - 0.1*(1 + 2.52) = 0.268
    expect(buf[0]).toBeCloseTo(2.8, 15);
    expect(p[0]).toBeCloseTo(0.268, 15);
  });

  it('HB and NAG with momentum 0 are SGD', () => {
    const a = Float64Array.of(3, 4);
    const b = Float64Array.of(3, 4);
    const c = Float64Array.of(3, 4);
    const g = Float64Array.of(0.25, -1);
    sgdStep(a, g, 0.3);
    heavyBallStep(b, new Float64Array(2), g, 0.3, 0);
    nesterovStep(c, new Float64Array(2), g, 0.3, 0);
    expect([...b]).toEqual([...a]);
    expect([...c]).toEqual([...a]);
  });
});

describe('AccSGD stepper', () => {
  it('is @accsgd/core: one step matches SPEC §2 by hand', () => {
    // lr 0.1, kappa 100, xi 10, smallConst 0.7: largeLr = 0.1*100/0.7, beta = 0.49*10/100 = 0.049,
    // zeta = 0.7/0.749. First step: buf = p = 1, g = 2.
    const p = Float64Array.of(1);
    createStepper('AccSGD', p, { lr: 0.1, kappa: 100, xi: 10 }).step(Float64Array.of(2));
    const largeLr = (0.1 * 100) / 0.7;
    const beta = 0.049;
    const zeta = 0.7 / 0.749;
    const buf = beta * ((1 / beta - 1) * 1 - largeLr * 2 + 1);
    expect(p[0]).toBeCloseTo(zeta * (1 - 0.1 * 2) + (1 - zeta) * buf, 14);
  });

  it('runs side by side in one vector exactly as separate optimizers', () => {
    const h = { lr: 0.05, kappa: 64, xi: 4 };
    const both = Float64Array.of(1, 2, -3, 0.5);
    const one = Float64Array.of(1, 2);
    const two = Float64Array.of(-3, 0.5);
    const s = createStepper('AccSGD', both, h);
    const o1 = new AccSGD([one], { ...h, smallConst: 0.7 });
    const o2 = new AccSGD([two], { ...h, smallConst: 0.7 });
    for (let t = 0; t < 5; t++) {
      const g = Float64Array.of(0.1 * t, -0.2, 0.3, 0.05 * t);
      s.step(g);
      o1.step([g.slice(0, 2)]);
      o2.step([g.slice(2, 4)]);
    }
    expect([...both]).toEqual([...one, ...two]);
  });
});
