/**
 * AccSGD in use: one model trained twice with model.fit, from the same initial weights on the same
 * batches, once with the fused kernel and once with tfjs ops (fused: false), on one backend. The
 * layers' own matMuls consume the updated weights at every step, so a backend that computed with
 * stale weights (as tfjs-backend-wasm did when the kernel wrote in place) would make the two runs
 * part. Runs in Node (in-use.test.ts) and in Chromium (in-use.browser.test.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { accsgd } from '../accsgd-optimizer.js';
import type { TfjsBackendName } from '../conformance.js';

export interface FitComparisonOptions {
  backend: TfjsBackendName;
  /** 'allow' where the backend cannot read back synchronously (tfjs webgpu in Node and on SwiftShader). */
  nonFinite?: 'error' | 'allow';
}

export interface FitRun {
  losses: number[];
  /** Final weights, layer by layer (kernel, bias, ...). */
  weights: Float32Array[];
}

export interface FitComparison {
  backend: string;
  steps: number;
  fused: FitRun;
  composite: FitRun;
}

const SAMPLES = 256;
const BATCH = 16;
const EPOCHS = 3; // 48 steps
const FEATURES = 8;
const OUTPUTS = 3;

async function loadBackend(name: TfjsBackendName): Promise<void> {
  if (name === 'cpu') await import('@tensorflow/tfjs-backend-cpu');
  else if (name === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
  else if (name === 'webgl') await import('@tensorflow/tfjs-backend-webgl');
  else await import('@tensorflow/tfjs-backend-webgpu');
}

/** A smooth nonlinear target, so the hidden layer has something to learn. */
function data(): { x: tf.Tensor2D; y: tf.Tensor2D } {
  const x = Float32Array.from({ length: SAMPLES * FEATURES }, (_, i) => Math.sin(i * 0.731 + 0.2));
  const y = new Float32Array(SAMPLES * OUTPUTS);
  for (let s = 0; s < SAMPLES; s++) {
    for (let o = 0; o < OUTPUTS; o++) {
      let sum = 0;
      for (let f = 0; f < FEATURES; f++) sum += x[s * FEATURES + f]! * Math.cos((o + 1) * (f + 1));
      y[s * OUTPUTS + o] = Math.tanh(sum);
    }
  }
  return { x: tf.tensor2d(x, [SAMPLES, FEATURES]), y: tf.tensor2d(y, [SAMPLES, OUTPUTS]) };
}

async function train(fused: boolean, nonFinite: 'error' | 'allow'): Promise<FitRun> {
  const model = tfl.sequential({
    layers: [
      tfl.layers.dense({
        units: 32,
        inputShape: [FEATURES],
        activation: 'tanh',
        kernelInitializer: tfl.initializers.glorotUniform({ seed: 11 }),
      }),
      tfl.layers.dense({ units: OUTPUTS, kernelInitializer: tfl.initializers.glorotUniform({ seed: 12 }) }),
    ],
  });
  model.compile({
    optimizer: accsgd({ lr: 0.05, kappa: 100, xi: 5, fused, nonFinite }),
    loss: 'meanSquaredError',
  });
  const { x, y } = data();
  try {
    const history = await model.fit(x, y, { epochs: EPOCHS, batchSize: BATCH, shuffle: false, verbose: 0 });
    const weights = await Promise.all(
      model.getWeights().map(async (w) => Float32Array.from((await w.data()) as Float32Array)),
    );
    return { losses: history.history.loss as number[], weights };
  } finally {
    tf.dispose([x, y]);
    model.optimizer.dispose();
    model.dispose();
  }
}

/** Both runs on `backend`: fused kernel, then tfjs ops. */
export async function fitComparison(options: FitComparisonOptions): Promise<FitComparison> {
  await loadBackend(options.backend);
  if (!(await tf.setBackend(options.backend)))
    throw new Error(`tfjs backend ${options.backend} did not start`);
  await tf.ready();
  const nonFinite = options.nonFinite ?? 'error';
  const fused = await train(true, nonFinite);
  const composite = await train(false, nonFinite);
  return { backend: tf.getBackend(), steps: (SAMPLES / BATCH) * EPOCHS, fused, composite };
}

/** max|a - b| / max|b| over one weight tensor. */
export function relativeDifference(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return scale === 0 ? diff : diff / scale;
}
