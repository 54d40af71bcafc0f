import { describe, expect, it } from 'vitest';
import { curveAdvice, settingsAdvice } from './advice.js';

const hyper = { lr: 0.1, kappa: 1000, xi: 10, smallConst: 0.7, momentum: 0.9 };

describe('advice', () => {
  it("passes on @accsgd/core's advice about AccSGD's settings", () => {
    expect(settingsAdvice(hyper, 64)).toEqual([]);
    expect(settingsAdvice({ ...hyper, xi: 50 }, 64).join(' ')).toMatch(/above sqrt\(kappa\)/);
    expect(settingsAdvice({ ...hyper, kappa: 10, xi: 2 }, 64).join(' ')).toMatch(
      /kappa = 10 is below the advised range/,
    );
  });

  it('reads divergence, oscillation and slow progress off a curve', () => {
    const falling = Array.from({ length: 30 }, (_, i) => 2 * 0.95 ** i);
    expect(curveAdvice(falling)).toBeNull();
    expect(curveAdvice(falling.slice(0, 9))).toBeNull(); // too short to judge
    expect(curveAdvice([...falling.slice(0, 20), Number.NaN])).toMatch(/divergence\. Lower lr or xi/);
    expect(curveAdvice(Array.from({ length: 30 }, (_, i) => 1 + i * 0.1))).toMatch(/rose .*divergence/);
    expect(curveAdvice(Array.from({ length: 30 }, (_, i) => (i % 2 ? 1.4 : 0.9)))).toMatch(/oscillation/);
    expect(curveAdvice(Array.from({ length: 30 }, (_, i) => 2 - i * 0.001))).toMatch(
      /slow progress\. Raise lr or xi, or lower kappa/,
    );
  });
});
