import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { generateGoldenCases } from './golden-cases.js';
import {
  decodeGoldenCase,
  encodeGoldenCase,
  listGoldenCases,
  loadGoldenCase,
  VECTORS_DIR,
} from './vectors.js';

describe('golden vectors', () => {
  const generated = generateGoldenCases();

  it('regenerate byte-identically from the float64 reference', async () => {
    const committed = await listGoldenCases();
    expect(committed).toEqual(generated.map((c) => c.name));
    for (const c of generated) {
      const onDisk = new Uint8Array(await readFile(new URL(`${c.name}.safetensors`, VECTORS_DIR)));
      const fresh = encodeGoldenCase(c);
      expect(fresh.length, c.name).toBe(onDisk.length);
      expect(Buffer.compare(fresh, onDisk), `${c.name} differs from the committed file`).toBe(0);
    }
  });

  it('cover the cases the spec names', () => {
    const names = generated.map((c) => c.name);
    expect(names).toEqual([
      'defaults',
      'weight-decay',
      'long-step',
      'very-long-step',
      'beta-one',
      'groups',
      'missing-gradients',
      'learning-rate-changes',
      'magnitudes',
      'odd-lengths',
      'long-trajectory',
      'subnormal-params',
      'near-min-normal',
    ]);
    const byName = Object.fromEntries(generated.map((c) => [c.name, c]));
    expect(byName['long-trajectory']!.steps.length).toBeGreaterThanOrEqual(500);
    expect(Object.values(byName['odd-lengths']!.problem.params).map((p) => p.init.length)).toEqual([
      1, 3, 257, 65537,
    ]);
    // The first step of "missing-gradients" has no gradient for "b": its buffer must not exist yet.
    expect(byName['missing-gradients']!.steps[0]!.grads.b).toBeNull();
    expect(byName['missing-gradients']!.steps[0]!.expected.buffers.b).toBeNull();
    expect(byName['beta-one']!.problem.groups[0]!.hyperparams).toMatchObject({
      kappa: 1,
      xi: 1,
      smallConst: 1,
    });
  });

  it('hold the hand-computed first step of "defaults"', async () => {
    const c = await loadGoldenCase('defaults');
    // lr 0.1, kappa 1000, xi 10, smallConst 0.7:
    //   largeLr = 0.1*1000/0.7 = 142.857142..., beta = 0.49*10/1000 = 0.0049, alpha = 0.9951,
    //   zeta = 0.7/0.7049 = 0.993048659..., buffer starts as p.
    const p = c.problem.params.w!.init[0]!;
    const g = c.steps[0]!.grads.w![0]!;
    const largeLr = (0.1 * 1000) / 0.7;
    const beta = 1 - (1 - 0.0049);
    const zeta = 0.7 / (0.7 + beta);
    const buf = beta * ((1 / beta - 1) * p - largeLr * g + p);
    expect(c.steps[0]!.expected.buffers.w![0]).toBeCloseTo(buf, 14);
    expect(c.steps[0]!.expected.params.w![0]).toBeCloseTo(zeta * (p - 0.1 * g) + (1 - zeta) * buf, 14);
  });

  it('store inputs that are float32-representable', () => {
    for (const c of generated) {
      for (const { init } of Object.values(c.problem.params))
        expect(init.every((v) => Math.fround(v) === v)).toBe(true);
      for (const step of c.steps)
        for (const g of Object.values(step.grads))
          if (g) expect(Array.from(g).every((v) => Math.fround(v) === v)).toBe(true);
    }
  });

  it('round-trip through the file format', () => {
    const c = generated.find((x) => x.name === 'missing-gradients')!;
    expect(decodeGoldenCase(encodeGoldenCase(c))).toEqual(c);
  });
});
