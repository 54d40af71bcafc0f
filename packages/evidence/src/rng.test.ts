import { describe, expect, it } from 'vitest';
import { createRng, laneSeed } from './rng.js';

describe('seeded RNG', () => {
  it('is deterministic: the same seed gives the same stream, another seed another', () => {
    const a = createRng(42);
    const b = createRng(42);
    const c = createRng(43);
    const sa = Array.from({ length: 100 }, () => a.nextUint32());
    const sb = Array.from({ length: 100 }, () => b.nextUint32());
    const sc = Array.from({ length: 100 }, () => c.nextUint32());
    expect(sb).toEqual(sa);
    expect(sc).not.toEqual(sa);
    expect(new Set(sa).size).toBe(100);
  });

  it('pins the first outputs for seed 1 (a change of generator must be deliberate)', () => {
    const r = createRng(1);
    const first = [r.nextUint32(), r.nextUint32(), r.nextUint32()];
    const again = createRng(1);
    expect([again.nextUint32(), again.nextUint32(), again.nextUint32()]).toEqual(first);
    expect(first).toEqual([2442144158, 3238099751, 3819917871]);
  });

  it('gives uniforms in [0, 1) with mean 1/2 and normals with mean 0, variance 1', () => {
    const r = createRng(7);
    const n = 200_000;
    let su = 0;
    let s1 = 0;
    let s2 = 0;
    let lo = 1;
    let hi = 0;
    for (let i = 0; i < n; i++) {
      const u = r.uniform();
      lo = Math.min(lo, u);
      hi = Math.max(hi, u);
      su += u;
      const z = r.normal();
      s1 += z;
      s2 += z * z;
    }
    expect(lo).toBeGreaterThanOrEqual(0);
    expect(hi).toBeLessThan(1);
    expect(su / n).toBeCloseTo(0.5, 2);
    expect(s1 / n).toBeCloseTo(0, 2);
    expect(s2 / n).toBeCloseTo(1, 1.5);
  });

  it('derives distinct, reproducible lane seeds', () => {
    const seeds = Array.from({ length: 64 }, (_, i) => laneSeed(1, i));
    expect(new Set(seeds).size).toBe(64);
    expect(laneSeed(1, 5)).toBe(seeds[5]);
    expect(laneSeed(2, 5)).not.toBe(seeds[5]);
  });
});
