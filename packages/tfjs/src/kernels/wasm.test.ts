import { fusedCoefficients, fusedUpdate, resolveHyperparams } from '@accsgd/core';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { accsgd } from '../accsgd-optimizer.js';
import { registerAccSGDKernels } from './index.js';
import { ACCSGD_UPDATE } from './registry.js';
import { cacheInvalidator, heapKernelOf, wasmFirstNonFinite } from './wasm.js';

// 4099 elements: 1024 SIMD quads and a scalar tail of 3.
const N = 4099;
const COEFFICIENTS = [0.9, 0.05, -0.1, 0.95, -0.01, 0.05];

function values(seed: number): Float32Array {
  return Float32Array.from({ length: N }, (_, i) => Math.sin(i * 0.37 + seed) * (1 + (i % 7)));
}

/** The expected outputs, by @accsgd/core's float32 fusedUpdate over plain arrays. */
function expected(p: Float32Array, g: Float32Array, b: Float32Array, initialise: boolean) {
  const param = p.slice();
  const buffer = initialise ? new Float32Array(N) : b.slice();
  const [bufFromBuf, bufFromParam, bufFromGrad, paramFromParam, paramFromGrad, paramFromBuf] =
    COEFFICIENTS as [number, number, number, number, number, number];
  fusedUpdate(
    param,
    g,
    buffer,
    { bufFromBuf, bufFromParam, bufFromGrad, paramFromParam, paramFromGrad, paramFromBuf },
    initialise,
  );
  return { param, buffer };
}

function run(param: tf.Tensor, grad: tf.Tensor, buffer: tf.Tensor, inPlace = true): [tf.Tensor, tf.Tensor] {
  return tf
    .engine()
    .runKernel<tf.Tensor[]>(
      ACCSGD_UPDATE,
      { param, grad, buffer },
      { coefficients: COEFFICIENTS, inPlace },
    ) as [tf.Tensor, tf.Tensor];
}

describe('wasm kernel on the backend heap', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
    registerAccSGDKernels();
  });

  it('finds the heap memory and makes its SIMD kernel once', () => {
    const kernel = heapKernelOf(tf.backend());
    expect(kernel).not.toBeNull();
    expect(heapKernelOf(tf.backend())).toBe(kernel);
  });

  it('updates in place, bit-identical to the core update, when it owns param and buffer', () => {
    const [p0, g0, b0] = [values(1), values(2), values(3)];
    const want = expected(p0, g0, b0, false);
    const p = tf.tensor1d(p0);
    const g = tf.tensor1d(g0);
    const b = tf.tensor1d(b0);
    const [p2, b2] = run(p, g, b);
    // In place: the outputs are the inputs' own storage.
    expect(p2.dataId).toBe(p.dataId);
    expect(b2.dataId).toBe(b.dataId);
    expect(p2.dataSync()).toEqual(want.param);
    expect(b2.dataSync()).toEqual(want.buffer);
    expect(g.dataSync()).toEqual(g0);
    tf.dispose([p, g, b, p2, b2]);
  });

  it('writes fresh storage and leaves the inputs alone where another tensor shares their storage', () => {
    const [p0, g0, b0] = [values(4), values(5), values(6)];
    const want = expected(p0, g0, b0, false);
    const p = tf.tensor1d(p0);
    const g = tf.tensor1d(g0);
    const b = tf.tensor1d(b0);
    // A reshape shares p's storage: p is not overwritten; b is owned and updated in place.
    const view = tf.reshape(p, [N, 1]);
    const [p2, b2] = run(p, g, b);
    expect(p2.dataId).not.toBe(p.dataId);
    expect(b2.dataId).toBe(b.dataId);
    expect(p2.dataSync()).toEqual(want.param);
    expect(b2.dataSync()).toEqual(want.buffer);
    expect(view.dataSync()).toEqual(p0);
    expect(p.dataSync()).toEqual(p0);
    tf.dispose([p, g, b, view, p2, b2]);
  });

  it('leaves its inputs alone unless the caller lets it write in place', () => {
    const [p0, g0, b0] = [values(14), values(15), values(16)];
    const want = expected(p0, g0, b0, false);
    const p = tf.tensor1d(p0);
    const g = tf.tensor1d(g0);
    const b = tf.tensor1d(b0);
    const [p2, b2] = run(p, g, b, false);
    expect(p2.dataId).not.toBe(p.dataId);
    expect(b2.dataId).not.toBe(b.dataId);
    expect(p2.dataSync()).toEqual(want.param);
    expect(b2.dataSync()).toEqual(want.buffer);
    expect(p.dataSync()).toEqual(p0);
    expect(b.dataSync()).toEqual(b0);
    tf.dispose([p, g, b, p2, b2]);
  });

  it('initialises the buffer from the parameter on a first step (buffer === param)', () => {
    const [p0, g0] = [values(7), values(8)];
    const want = expected(p0, g0, new Float32Array(N), true);
    const p = tf.tensor1d(p0);
    const g = tf.tensor1d(g0);
    const [p2, b2] = run(p, g, p);
    expect(p2.dataId).toBe(p.dataId);
    expect(b2.dataId).not.toBe(p.dataId);
    expect(p2.dataSync()).toEqual(want.param);
    expect(b2.dataSync()).toEqual(want.buffer);
    tf.dispose([p, g, p2, b2]);
  });

  it('tells the backend of an in-place write through its own disposal path, or declines to write in place', () => {
    const calls: string[] = [];
    const told = cacheInvalidator({
      wasm: {
        tfjs: {
          disposeData: (id: number) => calls.push(`dispose ${id}`),
          registerTensor: (id: number, size: number, offset: number) =>
            calls.push(`register ${id} ${size} ${offset}`),
        },
      },
    });
    told!({ id: 7, memoryOffset: 4096 }, 12);
    // Dropping the entry runs the caches' disposal callbacks; the entry comes back at the same memory.
    expect(calls).toEqual(['dispose 7', 'register 7 12 4096']);
    expect(cacheInvalidator({ wasm: { tfjs: { registerTensor: () => {} } } })).toBeNull();
    expect(cacheInvalidator({ wasm: {} })).toBeNull();
    expect(cacheInvalidator(tf.backend())).not.toBeNull();
  });

  it('never lets a matMul see old weights: XNNPACK caches packed weights per tensor', () => {
    // tfjs-backend-wasm packs a matMul's right-hand side once per tensor id and frees the pack
    // only when that tensor is disposed; an update written into the variable's own storage left
    // every later matMul on the old weights (the loss of model.fit rose).
    const x = tf.tensor2d([
      [1, 2, 3],
      [-1, 0.5, 2],
    ]);
    const w = tf.variable(tf.tensor2d([[0.5], [-0.25], [1]]));
    const opt = accsgd({ lr: 0.1, kappa: 100, xi: 5 });
    for (let step = 0; step < 3; step++) {
      tf.matMul(x, w).dispose(); // builds and caches the operator for w's current storage
      opt.applyGradients({ [w.name]: tf.onesLike(w) });
      const got = tf.matMul(x, w);
      const fresh = tf.tensor2d(w.dataSync(), [3, 1]);
      const want = tf.matMul(x, fresh);
      expect(Array.from(got.dataSync())).toEqual(Array.from(want.dataSync()));
      tf.dispose([got, fresh, want]);
    }
    opt.dispose();
    tf.dispose([x, w]);
  });

  it('never lets a conv2d see an old filter: XNNPACK caches packed filters per tensor too', () => {
    const x = tf.tensor4d(
      Float32Array.from({ length: 2 * 5 * 5 * 3 }, (_, i) => Math.sin(i)),
      [2, 5, 5, 3],
    );
    const filter = tf.variable(
      tf.tensor4d(
        Float32Array.from({ length: 3 * 3 * 3 * 4 }, (_, i) => Math.cos(i)),
        [3, 3, 3, 4],
      ),
    );
    const opt = accsgd({ lr: 0.1, kappa: 100, xi: 5 });
    for (let step = 0; step < 3; step++) {
      tf.conv2d(x, filter, 1, 'same').dispose();
      opt.applyGradients({ [filter.name]: tf.onesLike(filter) });
      const got = tf.conv2d(x, filter, 1, 'same');
      const fresh = tf.tensor4d(filter.dataSync(), [3, 3, 3, 4]);
      const want = tf.conv2d(x, fresh, 1, 'same');
      expect(Array.from(got.dataSync())).toEqual(Array.from(want.dataSync()));
      tf.dispose([got, fresh, want]);
    }
    opt.dispose();
    tf.dispose([x, filter]);
  });

  it('steps a large variable created on cpu: moving it to the heap may grow the heap', async () => {
    // 8M elements: moving the variable onto the wasm heap grows the heap and detaches every view
    // taken before; the kernel used to hold one across that move (TypeError, two leaked outputs).
    const n = 8 * 1024 * 1024;
    await tf.setBackend('cpu');
    const p0 = Float32Array.from({ length: n }, (_, i) => (i % 97) / 97 - 0.5);
    const v = tf.variable(tf.tensor1d(p0), true, 'large_on_cpu');
    await tf.setBackend('wasm');
    const g0 = Float32Array.from({ length: n }, (_, i) => ((i % 31) - 15) / 100);
    const g = tf.tensor1d(g0);
    const opt = accsgd({ lr: 0.1, kappa: 100, xi: 5 });
    const before = tf.memory().numTensors;
    opt.applyGradients({ large_on_cpu: g });
    // One new tensor: the momentum buffer variable.
    expect(tf.memory().numTensors).toBe(before + 1);
    const want = p0.slice();
    const buffer = new Float32Array(n);
    fusedUpdate(
      want,
      g0,
      buffer,
      fusedCoefficients(resolveHyperparams({ lr: 0.1, kappa: 100, xi: 5 })),
      true,
    );
    const got = v.dataSync();
    expect(got[0]).toBe(want[0]);
    expect(got[n - 1]).toBe(want[n - 1]);
    expect(
      Buffer.compare(Buffer.from(got.buffer, got.byteOffset, got.byteLength), Buffer.from(want.buffer)),
    ).toBe(0);
    opt.dispose();
    tf.dispose([v, g]);
  });
  it('scans the heap for the first NaN or infinity, in the SIMD part and in the tail', () => {
    for (const bad of [0, 17, 4095, 4096, 4098]) {
      for (const value of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
        const g0 = values(9);
        g0[bad] = value;
        if (bad + 2 < N) g0[bad + 2] = Number.NaN;
        const g = tf.tensor1d(g0);
        expect(wasmFirstNonFinite(tf.backend(), g)).toBe(bad);
        g.dispose();
      }
    }
    const ok = tf.tensor1d(values(10));
    expect(wasmFirstNonFinite(tf.backend(), ok)).toBe(-1);
    ok.dispose();
  });
});
