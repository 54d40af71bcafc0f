import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { fusedCoefficients } from '../coefficients.js';
import { fusedUpdateFloat32 } from '../fused-update.js';
import { resolveHyperparams } from '../hyperparams.js';
import { HeapKernel, WasmKernel } from './wasm-kernel.js';

function random(n: number, seed: number, scale = 1): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (s / 2147483648 - 0.5) * 2 * scale;
  });
}

const kernel = WasmKernel.create();

describe('WebAssembly SIMD kernel', () => {
  it('is available in Node 20', () => {
    expect(kernel).not.toBeNull();
  });

  // 70,001 elements: two full 32,768-element chunks, a partial one, and a tail that is not a multiple of 4.
  for (const initialise of [true, false]) {
    it(`is bit-identical to the JavaScript float32 loop (${initialise ? 'first step' : 'later step'}, weight decay)`, () => {
      const c = fusedCoefficients(resolveHyperparams({ lr: 0.05, kappa: 3000, xi: 20, weightDecay: 1e-3 }));
      const n = 70_001;
      const [p0, g, b1] = [random(n, 1), random(n, 2, 1e-2), random(n, 3)];
      const p1 = p0.slice();
      const [p2, b2] = [p1.slice(), b1.slice()];
      kernel!.update(p1, g, b1, c, initialise);
      fusedUpdateFloat32(p2, g, b2, c, initialise);
      expect(Buffer.compare(Buffer.from(p1.buffer), Buffer.from(p2.buffer))).toBe(0);
      expect(Buffer.compare(Buffer.from(b1.buffer), Buffer.from(b2.buffer))).toBe(0);
      // and it did update: with g != 0 almost every element moves
      expect(p1.filter((v, i) => v !== p0[i]).length).toBeGreaterThan(n * 0.99);
    });
  }

  it('finds the first non-finite value in any chunk', () => {
    const values = random(70_001, 4);
    expect(kernel!.firstNonFinite(values)).toBe(-1);
    values[69_999] = Number.NaN;
    expect(kernel!.firstNonFinite(values)).toBe(69_999);
    values[40_000] = Number.NEGATIVE_INFINITY;
    expect(kernel!.firstNonFinite(values)).toBe(40_000);
    values[3] = Number.POSITIVE_INFINITY;
    expect(kernel!.firstNonFinite(values)).toBe(3);
  });

  // Sizes that pack several to a chunk, fill a chunk exactly (32,768 = 8,192 + 24,576), overflow
  // it, are empty, are not multiples of 4, and one larger than a chunk between packed ones.
  const packedSizes = [0, 1, 3, 210, 8_192, 24_576, 5, 40_000, 7, 32_767, 2, 1_000];
  for (const initialise of [true, false]) {
    it(`packs small tensors into one call and stays bit-identical (${initialise ? 'first step' : 'later step'})`, () => {
      const c = fusedCoefficients(resolveHyperparams({ lr: 0.02, kappa: 500, xi: 7 }));
      const inputs = packedSizes.map((n, k) => [
        random(n, 10 + k),
        random(n, 50 + k, 1e-2),
        random(n, 90 + k),
      ]);
      const packed = inputs.map((t) => t.map((a) => a.slice()));
      const loop = inputs.map((t) => t.map((a) => a.slice()));
      kernel!.updatePacked(
        packed.map((t) => t[0]!),
        packed.map((t) => t[1]!),
        packed.map((t) => t[2]!),
        c,
        initialise,
      );
      for (const [p, g, b] of loop) fusedUpdateFloat32(p!, g!, b!, c, initialise);
      packed.forEach(([p, g, b], k) => {
        expect(Buffer.compare(Buffer.from(p!.buffer), Buffer.from(loop[k]![0]!.buffer))).toBe(0);
        expect(Buffer.compare(Buffer.from(b!.buffer), Buffer.from(loop[k]![2]!.buffer))).toBe(0);
        expect(g).toEqual(inputs[k]![1]); // gradients are read, never written
        if (packedSizes[k]! > 0) expect(p![0]).not.toBe(inputs[k]![0]![0]);
      });
    });
  }

  it('checks many small arrays at once, wherever the bad value sits', () => {
    const arrays = () => packedSizes.map((n, k) => random(n, 200 + k));
    expect(kernel!.allFinite(arrays())).toBe(true);
    expect(kernel!.allFinite([])).toBe(true);
    // in a packed chunk, in the array larger than a chunk, in the last array, as infinity
    for (const [k, i, value] of [
      [3, 209, Number.NaN],
      [7, 39_999, Number.NaN],
      [11, 0, Number.POSITIVE_INFINITY],
      [1, 0, Number.NEGATIVE_INFINITY],
    ] as const) {
      const list = arrays();
      list[k]![i] = value;
      expect(kernel!.allFinite(list)).toBe(false);
    }
    // the lanes between packed arrays are zeroed: NaNs left in the chunk by an earlier check do
    // not fail arrays of odd lengths
    expect(kernel!.allFinite([new Float32Array(8).fill(Number.NaN)])).toBe(false);
    expect(kernel!.allFinite([random(1, 1), random(3, 2), random(5, 3)])).toBe(true);
  });

  it('ships bytes compiled from the committed .wat source', () => {
    const script = fileURLToPath(new URL('../../scripts/build-wasm.mjs', import.meta.url));
    expect(() => execFileSync(process.execPath, [script, '--check'], { stdio: 'pipe' })).not.toThrow();
    expect(readFileSync(new URL('./fused-update.wat', import.meta.url), 'utf8')).toContain(
      '(func (export "update")',
    );
  });
});

describe("HeapKernel (in place on another module's memory)", () => {
  it('matches the JavaScript float32 loop, tail included, and finds non-finite values', () => {
    const memory = new WebAssembly.Memory({ initial: 4 });
    const heap = HeapKernel.create(memory)!;
    expect(heap).not.toBeNull();
    const n = 10_003;
    // Deliberately unaligned-to-16 offsets (4-byte aligned, as any float32 array is).
    const [pOff, gOff, bOff] = [4, 4 + n * 4 + 8, 4 + n * 8 + 20];
    const view = (off: number) => new Float32Array(memory.buffer, off, n);
    view(pOff).set(random(n, 5));
    view(gOff).set(random(n, 6, 1e-2));
    view(bOff).set(random(n, 7));
    const [p2, b2] = [view(pOff).slice(), view(bOff).slice()];
    const c = fusedCoefficients(resolveHyperparams({ lr: 0.1, weightDecay: 0.01 }));
    heap.update(pOff, gOff, bOff, n, c, false);
    fusedUpdateFloat32(p2, view(gOff), b2, c, false);
    expect(Buffer.compare(Buffer.from(view(pOff).slice().buffer), Buffer.from(p2.buffer))).toBe(0);
    expect(Buffer.compare(Buffer.from(view(bOff).slice().buffer), Buffer.from(b2.buffer))).toBe(0);
    expect(heap.firstNonFinite(gOff, n)).toBe(-1);
    view(gOff)[n - 1] = Number.NaN;
    expect(heap.firstNonFinite(gOff, n)).toBe(n - 1);
    view(gOff)[17] = Number.POSITIVE_INFINITY;
    expect(heap.firstNonFinite(gOff, n)).toBe(17);
  });
});

describe('HeapKernel.updateAll (one call over a step of tensors)', () => {
  for (const initialise of [true, false]) {
    it(`updates every tensor as update() would, tails included (${initialise ? 'first step' : 'later step'})`, () => {
      const memory = new WebAssembly.Memory({ initial: 4 });
      const heap = HeapKernel.create(memory)!;
      const lengths = [0, 1, 7, 16, 1_001, 4_096];
      const c = fusedCoefficients(resolveHyperparams({ lr: 0.03, kappa: 800, xi: 5 }));
      // p, g and buf of each tensor side by side, 4-byte (not 16-byte) aligned
      let at = 4;
      const tensors = lengths.map((n, k) => {
        const [p, g, b] = [at, at + n * 4 + 4, at + n * 8 + 8];
        at += n * 12 + 12;
        new Float32Array(memory.buffer, p, n).set(random(n, 30 + k));
        new Float32Array(memory.buffer, g, n).set(random(n, 60 + k, 1e-2));
        new Float32Array(memory.buffer, b, n).set(random(n, 90 + k));
        return { p, g, b, n };
      });
      const view = (off: number, n: number) => new Float32Array(memory.buffer, off, n);
      const expected = tensors.map(({ p, g, b, n }) => {
        const [p2, b2] = [view(p, n).slice(), view(b, n).slice()];
        fusedUpdateFloat32(p2, view(g, n), b2, c, initialise);
        return [p2, b2] as const;
      });
      heap.updateAll(
        tensors.map((t) => t.p),
        tensors.map((t) => t.g),
        tensors.map((t) => t.b),
        lengths,
        c,
        initialise,
      );
      tensors.forEach(({ p, b, n }, k) => {
        expect(
          Buffer.compare(Buffer.from(view(p, n).slice().buffer), Buffer.from(expected[k]![0].buffer)),
        ).toBe(0);
        expect(
          Buffer.compare(Buffer.from(view(b, n).slice().buffer), Buffer.from(expected[k]![1].buffer)),
        ).toBe(0);
      });
      expect(view(tensors[5]!.p, 1)[0]).not.toBe(random(1, 35)[0]); // it did move
    });
  }
});
describe('HeapKernel writing to fresh outputs', () => {
  for (const initialise of [true, false]) {
    it(`leaves the inputs untouched and writes the in-place result elsewhere (${initialise ? 'first step' : 'later step'})`, () => {
      const memory = new WebAssembly.Memory({ initial: 8 });
      const heap = HeapKernel.create(memory)!;
      const n = 10_003; // a tail of 3 after the SIMD part
      const stride = n * 4 + 16;
      const [pOff, gOff, bOff, pOut, bOut] = [0, 1, 2, 3, 4].map((k) => 16 + k * stride) as [
        number,
        number,
        number,
        number,
        number,
      ];
      const view = (off: number) => new Float32Array(memory.buffer, off, n);
      view(pOff).set(random(n, 8));
      view(gOff).set(random(n, 9, 1e-2));
      view(bOff).set(random(n, 10));
      view(pOut).fill(123); // stale contents that must all be overwritten
      view(bOut).fill(456);
      const [p0, b0] = [view(pOff).slice(), view(bOff).slice()];
      const [p2, b2] = [p0.slice(), b0.slice()];
      const c = fusedCoefficients(resolveHyperparams({ lr: 0.1, weightDecay: 0.01 }));
      heap.update(pOff, gOff, bOff, n, c, initialise, { param: pOut, buffer: bOut });
      fusedUpdateFloat32(p2, view(gOff), b2, c, initialise);
      expect(Buffer.compare(Buffer.from(view(pOut).slice().buffer), Buffer.from(p2.buffer))).toBe(0);
      expect(Buffer.compare(Buffer.from(view(bOut).slice().buffer), Buffer.from(b2.buffer))).toBe(0);
      expect(Buffer.compare(Buffer.from(view(pOff).slice().buffer), Buffer.from(p0.buffer))).toBe(0);
      expect(Buffer.compare(Buffer.from(view(bOff).slice().buffer), Buffer.from(b0.buffer))).toBe(0);
    });
  }
});

describe('HeapKernel at every short length (the unrolled loops and their remainders)', () => {
  const memory = new WebAssembly.Memory({ initial: 1 });
  const heap = HeapKernel.create(memory)!;
  const view = (off: number, n: number) => new Float32Array(memory.buffer, off, n);

  // update: two vectors per iteration, then one; allFinite: sixteen values per iteration, then four.
  it('updates lengths 0 to 40 exactly as the JavaScript loop, first and later steps', () => {
    const c = fusedCoefficients(resolveHyperparams({ lr: 0.07, weightDecay: 1e-3 }));
    for (const initialise of [true, false]) {
      for (let n = 0; n <= 40; n++) {
        const [pOff, gOff, bOff] = [16, 1024, 2048];
        view(pOff, n).set(random(n, 10 + n));
        view(gOff, n).set(random(n, 50 + n, 0.1));
        view(bOff, n).set(random(n, 90 + n));
        const [p2, b2] = [view(pOff, n).slice(), view(bOff, n).slice()];
        heap.update(pOff, gOff, bOff, n, c, initialise);
        fusedUpdateFloat32(p2, view(gOff, n), b2, c, initialise);
        expect([n, [...view(pOff, n)], [...view(bOff, n)]]).toEqual([n, [...p2], [...b2]]);
      }
    }
  });

  it('finds NaN and both infinities at every position of lengths 0 to 70, and passes finite extremes', () => {
    for (let n = 0; n <= 70; n++) {
      const values = view(64, n);
      values.fill(-3.4028234663852886e38);
      expect([n, heap.firstNonFinite(64, n)]).toEqual([n, -1]);
      for (let at = 0; at < n; at++) {
        for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
          values[at] = bad;
          expect([n, at, heap.firstNonFinite(64, n)]).toEqual([n, at, at]);
        }
        values[at] = 3.4028234663852886e38;
      }
    }
  });

  it('runs on a shared memory too (the variant worker threads use)', () => {
    const shared = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    const kernel = HeapKernel.create(shared)!;
    expect(kernel).not.toBeNull();
    const n = 37;
    const values = new Float32Array(shared.buffer, 0, n);
    values.set(random(n, 3));
    expect(kernel.firstNonFinite(0, n)).toBe(-1);
    values[35] = Number.NaN;
    expect(kernel.firstNonFinite(0, n)).toBe(35);
  });
});

describe('HeapKernel.firstNonFiniteOf (one call over a step of gradients)', () => {
  it('names the first array, in order, and its first bad element; null when all are finite', () => {
    const memory = new WebAssembly.Memory({ initial: 1 });
    const heap = HeapKernel.create(memory)!;
    const lengths = [16, 5, 0, 33, 7];
    const offsets = [0, 128, 256, 256, 512];
    lengths.forEach((n, t) => new Float32Array(memory.buffer, offsets[t]!, n).set(random(n, t)));
    expect(heap.firstNonFiniteOf(offsets, lengths)).toBeNull();
    const at = (t: number) => new Float32Array(memory.buffer, offsets[t]!, lengths[t]!);
    at(4)[6] = Number.NaN; // the tail of the last array
    expect(heap.firstNonFiniteOf(offsets, lengths)).toEqual({ index: 4, element: 6 });
    at(3)[20] = Number.NEGATIVE_INFINITY;
    expect(heap.firstNonFiniteOf(offsets, lengths)).toEqual({ index: 3, element: 20 });
    at(1)[4] = Number.POSITIVE_INFINITY; // a tail-only element
    expect(heap.firstNonFiniteOf(offsets, lengths)).toEqual({ index: 1, element: 4 });
    expect(heap.firstNonFiniteOf([], [])).toBeNull();
  });
});
