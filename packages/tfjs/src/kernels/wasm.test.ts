import { fusedUpdate } from '@accsgd/core';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { registerAccSGDKernels } from './index.js';
import { ACCSGD_UPDATE } from './registry.js';
import { heapKernelOf, wasmFirstNonFinite } from './wasm.js';

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

function run(param: tf.Tensor, grad: tf.Tensor, buffer: tf.Tensor, inPlace: boolean): [tf.Tensor, tf.Tensor] {
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

  it('finds the heap memory and makes its in-place SIMD kernel once', () => {
    const kernel = heapKernelOf(tf.backend());
    expect(kernel).not.toBeNull();
    expect(heapKernelOf(tf.backend())).toBe(kernel);
  });

  it('updates in place, bit-identical to the core update, when it owns param and buffer', () => {
    const [p0, g0, b0] = [values(1), values(2), values(3)];
    const p = tf.tensor1d(p0);
    const g = tf.tensor1d(g0);
    const b = tf.tensor1d(b0);
    const [p2, b2] = run(p, g, b, true);
    // In place: the outputs are the inputs' own storage.
    expect(p2.dataId).toBe(p.dataId);
    expect(b2.dataId).toBe(b.dataId);
    const want = expected(p0, g0, b0, false);
    expect(p2.dataSync()).toEqual(want.param);
    expect(b2.dataSync()).toEqual(want.buffer);
    expect(g.dataSync()).toEqual(g0);
    tf.dispose([p, g, b, p2, b2]);
  });

  it('writes fresh storage and leaves the inputs alone when not in place or when storage is shared', () => {
    const [p0, g0, b0] = [values(4), values(5), values(6)];
    const want = expected(p0, g0, b0, false);
    const p = tf.tensor1d(p0);
    const g = tf.tensor1d(g0);
    const b = tf.tensor1d(b0);
    const [p2, b2] = run(p, g, b, false);
    expect(p2.dataId).not.toBe(p.dataId);
    expect(p2.dataSync()).toEqual(want.param);
    expect(b2.dataSync()).toEqual(want.buffer);
    expect(p.dataSync()).toEqual(p0);
    expect(b.dataSync()).toEqual(b0);
    // inPlace, but a reshape shares p's storage: p is copied, not overwritten; b is owned.
    const view = tf.reshape(p, [N, 1]);
    const [p3, b3] = run(p, g, b, true);
    expect(p3.dataId).not.toBe(p.dataId);
    expect(b3.dataId).toBe(b.dataId);
    expect(p3.dataSync()).toEqual(want.param);
    expect(view.dataSync()).toEqual(p0);
    tf.dispose([p, g, b, p2, b2, view, p3, b3]);
  });

  it('initialises the buffer from the parameter on a first step (buffer === param)', () => {
    const [p0, g0] = [values(7), values(8)];
    const want = expected(p0, g0, new Float32Array(N), true);
    const p = tf.tensor1d(p0);
    const g = tf.tensor1d(g0);
    const [p2, b2] = run(p, g, p, true);
    expect(p2.dataId).toBe(p.dataId);
    expect(b2.dataId).not.toBe(p.dataId);
    expect(p2.dataSync()).toEqual(want.param);
    expect(b2.dataSync()).toEqual(want.buffer);
    tf.dispose([p, g, p2, b2]);
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
