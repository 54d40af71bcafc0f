import { findNodeWebGPU } from '@accsgd/conformance';
import { CLASSES, INPUTS, initialWeights, mlpForwardModel } from '@accsgd/example-onnx-mnist/model';
import { OnnxTrainer } from '@accsgd/onnx-training';
import { accsgd } from '@accsgd/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { Mlp } from '../mnist/model.js';
import { createRng } from '../rng.js';
import { bandwidth, COPY_BYTES_PER_ELEMENT, wgslCopy } from './gpu-copy.js';
import { median, stepsPerBlock } from './stats.js';
import { timeInterleaved } from './timing.js';
import type { SectionResult, TrainStepResult, TrainStepRow } from './types.js';

const BATCH_SIZE = 128;
const BASELINE = 'tfjs wasm';
/** examples/onnx-mnist's full-run setting, so the step is the one that example trains. */
const HYPERPARAMS = { lr: 0.2, kappa: 1000, xi: 10 };
const WEIGHT_SEED = 1;
const BATCH_SEED = 20_251_202;
/** Enough distinct batches that no runtime can profit from seeing the same input twice in a row. */
const DISTINCT_BATCHES = 8;
/** The first steps compile shaders and kernels and create the momentum buffers. */
const WARMUP_STEPS = 3;
/** Long enough to time the fast CPU runtimes over many steps; the slow ones take MIN_STEPS_PER_BLOCK. */
const BLOCK_SECONDS = 0.25;
const MIN_STEPS_PER_BLOCK = 2;
const MAX_STEPS_PER_BLOCK = 100;
const WORKLOAD = `784-256-10 MLP (Relu), softmax cross-entropy, batch ${BATCH_SIZE}, AccSGD lr ${HYPERPARAMS.lr} kappa ${HYPERPARAMS.kappa} xi ${HYPERPARAMS.xi}`;

export interface LabelledBatch {
  /** [BATCH_SIZE, 784] in [0, 1), like MNIST pixel intensities. */
  x: Float32Array;
  /** [BATCH_SIZE, 10] one-hot. */
  labels: Float32Array;
}

/** Seeded random batches: the same values for every runtime, no MNIST files needed. */
export function seededBatches(count: number, seed: number, batchSize = BATCH_SIZE): LabelledBatch[] {
  const rng = createRng(seed);
  return Array.from({ length: count }, () => {
    const x = new Float32Array(batchSize * INPUTS);
    for (let i = 0; i < x.length; i++) x[i] = rng.uniform();
    const labels = new Float32Array(batchSize * CLASSES);
    for (let r = 0; r < batchSize; r++) labels[r * CLASSES + Math.floor(rng.uniform() * CLASSES)] = 1;
    return { x, labels };
  });
}

/** One way of running the train step, ready to step from the shared initial weights. */
interface TrainRuntime {
  framework: string;
  runtime: string;
  variant: string;
  /** Makes this runtime's backend the current one (tfjs has a single, global backend). */
  activate(): Promise<void>;
  /** One full step; resolves with the loss once the step's work has finished (see measure()). */
  step(batch: LabelledBatch): Promise<number>;
  dispose(): Promise<void>;
}

let tfjsRuns = 0;

async function tfjsRuntime(backend: 'wasm' | 'webgpu', label: string): Promise<TrainRuntime> {
  if (!(await tf.setBackend(backend))) throw new Error(`tf.setBackend('${backend}') failed`);
  await tf.ready();
  const weights = initialWeights(WEIGHT_SEED);
  const mlp = new Mlp(
    { w1: weights.W1, b1: weights.b1, w2: weights.W2, b2: weights.b2 },
    `trainStep${tfjsRuns++}`,
  );
  const optimizer = accsgd(HYPERPARAMS);
  return {
    framework: '@accsgd/tfjs',
    runtime: label,
    // Explicit backward pass: tfjs-core alone registers no gradients (tfjs-layers would), and
    // Mlp's explicit transposes avoid wasm's slow transposed matMul, the faster of the two here.
    variant: 'Mlp.lossAndGradients + accsgd().applyGradientsAsync',
    activate: async () => {
      await tf.setBackend(backend);
    },
    step: async ({ x, labels }) => {
      const xs = tf.tensor2d(x, [BATCH_SIZE, INPUTS]);
      const ys = tf.tensor2d(labels, [BATCH_SIZE, CLASSES]);
      const { loss, grads } = mlp.lossAndGradients(xs, ys);
      try {
        await optimizer.applyGradientsAsync(grads);
        return (await loss.data())[0]!;
      } finally {
        tf.dispose([xs, ys, loss, ...Object.values(grads)]);
      }
    },
    dispose: async () => {
      optimizer.dispose();
      mlp.dispose();
    },
  };
}

async function onnxRuntime(
  ort: typeof import('onnxruntime-node'),
  executionProvider: 'cpu' | 'webgpu',
  label: string,
): Promise<TrainRuntime> {
  const trainer = await OnnxTrainer.create(mlpForwardModel(initialWeights(WEIGHT_SEED)), {
    loss: 'softmax-cross-entropy',
    dimensions: { batch: BATCH_SIZE },
    hyperparams: HYPERPARAMS,
    ort,
    executionProvider,
  });
  return {
    framework: '@accsgd/onnx-training',
    runtime: label,
    variant: 'OnnxTrainer.step: forward, loss, backward and update in one session.run',
    activate: async () => {},
    step: ({ x, labels }) => trainer.step({ x }, labels),
    dispose: () => trainer.dispose(),
  };
}

/**
 * Warms every runtime up, then times them in blocks, runtime after runtime within each round of
 * blocks, so that load on a shared machine falls on all of them alike. A runtime's block length
 * comes from its last warm-up step (about BLOCK_SECONDS). Step k feeds batch k mod DISTINCT_BATCHES
 * on every runtime, all from the same weights.
 *
 * What a timed step waits for: every step awaits its loss as a number on the CPU. On cpu and wasm
 * all kernels run inside the call. On WebGPU that read-back is a buffer map, which Dawn completes
 * only after all commands submitted before it; the tfjs step submits its update (it awaits
 * applyGradientsAsync) before reading the loss, and ONNX Runtime copies fetches to the CPU after it
 * has run the whole graph, update included. So each timed step includes its forward, backward and
 * update work, and nothing is left in flight at the end of a block.
 */
async function measure(
  runtimes: readonly TrainRuntime[],
  batches: readonly LabelledBatch[],
  blocks: number,
): Promise<{ stepsPerSecond: number; stepsPerBlock: number; warmupLoss: number }[]> {
  const batchOf = (step: number) => batches[step % batches.length]!;
  const plans: { steps: number; next: number; warmupLoss: number; rates: number[] }[] = [];
  for (const runtime of runtimes) {
    await runtime.activate();
    let warmupLoss = Number.NaN;
    let lastSeconds = Number.NaN;
    for (let s = 0; s < WARMUP_STEPS; s++) {
      const t0 = performance.now();
      warmupLoss = await runtime.step(batchOf(s));
      lastSeconds = (performance.now() - t0) / 1000;
    }
    const steps = stepsPerBlock(lastSeconds, BLOCK_SECONDS, MIN_STEPS_PER_BLOCK, MAX_STEPS_PER_BLOCK);
    plans.push({ steps, next: WARMUP_STEPS, warmupLoss, rates: [] });
  }
  for (let block = 0; block < blocks; block++) {
    for (const [i, runtime] of runtimes.entries()) {
      const plan = plans[i]!;
      await runtime.activate();
      const t0 = performance.now();
      for (let s = 0; s < plan.steps; s++) await runtime.step(batchOf(plan.next++));
      plan.rates.push(plan.steps / ((performance.now() - t0) / 1000));
    }
  }
  return plans.map((p) => ({
    stepsPerSecond: median(p.rates),
    stepsPerBlock: p.steps,
    warmupLoss: p.warmupLoss,
  }));
}

/** The MLP's parameters: 784x256 and 256x10 weights and their biases. */
const PARAMETERS = INPUTS * 256 + 256 + 256 * CLASSES + CLASSES;
/**
 * The bytes a train step moves at least: each parameter read by the forward pass (4), its
 * gradient written (4) and the fused update (20); the batch's inputs and labels read once.
 * Activations (128 x 256) and the backward pass's reads of them are left out, so this is a floor.
 */
const TRAIN_STEP_BYTES = 28 * PARAMETERS + 4 * BATCH_SIZE * (INPUTS + CLASSES);

/**
 * Gives each WebGPU row its effective bandwidth beside a WGSL copy kernel of the same byte count,
 * timed on the same adapter (through the `webgpu` package's Dawn; ONNX Runtime runs its own Dawn on
 * that adapter) after the blocks.
 */
async function addBandwidth(adapter: GPUAdapter, rows: TrainStepRow[], repeats: number): Promise<void> {
  const gpuRows = rows.filter((r) => r.runtime.includes('webgpu'));
  if (gpuRows.length === 0) return;
  const device = await adapter.requestDevice();
  const keepAlive = setInterval(() => {}, 1e3);
  try {
    const copy = wgslCopy(device, Math.ceil(TRAIN_STEP_BYTES / COPY_BYTES_PER_ELEMENT));
    const { kernel } = await timeInterleaved({ kernel: copy.run }, Math.max(repeats, 5));
    copy.destroy();
    for (const r of gpuRows) {
      r.bandwidth = bandwidth(
        { bytes: TRAIN_STEP_BYTES, ms: 1000 / r.stepsPerSecond },
        { bytes: copy.bytes, ms: kernel },
        '28 B per parameter (forward read, gradient written, fused update) and the batch read once; activations not counted',
      );
    }
  } finally {
    clearInterval(keepAlive);
    device.destroy();
  }
}

/**
 * The fused train step of examples/onnx-mnist's MLP, in steps per second, on onnxruntime-node cpu
 * and webgpu (OnnxTrainer) beside @accsgd/tfjs training the same model on tfjs wasm (the baseline)
 * and webgpu, all in this one process. A runtime that cannot start (no WebGPU adapter, ...) is
 * skipped with its reason; the others are still measured.
 */
export async function runTrainStep(repeats: number): Promise<SectionResult> {
  const section = 'train-step';
  const skipped: TrainStepResult['skipped'] = [];
  const runtimes: TrainRuntime[] = [];
  // Before onnxruntime-node loads: this points the Vulkan loader at SwiftShader where there is no
  // GPU, which ORT's own Dawn reads too.
  const webgpu = await findNodeWebGPU();
  const ort = await import('onnxruntime-node');
  const ortVersion = ort.env.versions?.common ?? '';
  tf.env().set('IS_TEST', true);
  await import('@tensorflow/tfjs-backend-wasm');
  if (webgpu.available) await import('@tensorflow/tfjs-backend-webgpu');
  const webgpuLabel = webgpu.available ? `webgpu (${webgpu.description})` : 'webgpu';
  const candidates: {
    runtime: string;
    needsWebGPU: boolean;
    start: (runtime: string) => Promise<TrainRuntime>;
  }[] = [
    { runtime: BASELINE, needsWebGPU: false, start: (r) => tfjsRuntime('wasm', r) },
    { runtime: `tfjs ${webgpuLabel}`, needsWebGPU: true, start: (r) => tfjsRuntime('webgpu', r) },
    {
      runtime: `onnxruntime-node ${ortVersion} cpu`,
      needsWebGPU: false,
      start: (r) => onnxRuntime(ort, 'cpu', r),
    },
    {
      runtime: `onnxruntime-node ${ortVersion} webgpu`,
      needsWebGPU: true,
      start: (r) => onnxRuntime(ort, 'webgpu', r),
    },
  ];
  for (const { runtime, needsWebGPU, start } of candidates) {
    if (needsWebGPU && !webgpu.available) {
      // ORT's WebGPU EP would look for an adapter through the same Vulkan drivers.
      skipped.push({ runtime, reason: webgpu.reason });
      continue;
    }
    try {
      runtimes.push(await start(runtime));
    } catch (error) {
      skipped.push({ runtime, reason: `cannot start: ${(error as Error).message.split('\n')[0]}` });
    }
  }
  for (const s of skipped) process.stderr.write(`  train-step: ${s.runtime} skipped (${s.reason})\n`);
  const baselineIndex = runtimes.findIndex((r) => r.runtime === BASELINE);
  const result: TrainStepResult = {
    workload: WORKLOAD,
    warmupSteps: WARMUP_STEPS,
    blocks: repeats,
    blockSeconds: BLOCK_SECONDS,
    minStepsPerBlock: MIN_STEPS_PER_BLOCK,
    rows: [],
    skipped,
  };
  if (baselineIndex < 0) {
    for (const r of runtimes) await r.dispose();
    return { section, rows: [], skipped: `${BASELINE}, the baseline, did not start`, trainStep: result };
  }
  let measured: Awaited<ReturnType<typeof measure>>;
  try {
    measured = await measure(runtimes, seededBatches(DISTINCT_BATCHES, BATCH_SEED), repeats);
  } finally {
    for (const r of runtimes) await r.dispose();
  }
  const baseline = measured[baselineIndex]!;
  result.rows = runtimes.map(
    (r, i): TrainStepRow => ({
      framework: r.framework,
      runtime: r.runtime,
      variant: r.variant,
      stepsPerSecond: measured[i]!.stepsPerSecond,
      stepsPerBlock: measured[i]!.stepsPerBlock,
      baseline: BASELINE,
      baselineStepsPerSecond: baseline.stepsPerSecond,
      ratio: measured[i]!.stepsPerSecond / baseline.stepsPerSecond,
      warmupLoss: measured[i]!.warmupLoss,
    }),
  );
  if (webgpu.available) {
    try {
      await addBandwidth(webgpu.adapter as GPUAdapter, result.rows, repeats);
    } catch (error) {
      process.stderr.write(
        `  train-step: no bandwidth figures (${(error as Error).message.split('\n')[0]})\n`,
      );
    }
  }
  await tf.setBackend('wasm');
  const wasmFeatures = `tfjs wasm SIMD ${tf.env().getBool('WASM_HAS_SIMD_SUPPORT') ? 'on' : 'off'}, threads ${tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT') ? 'on' : 'off'}; onnxruntime-node cpu with its default thread pool`;
  return {
    section,
    rows: [],
    trainStep: result,
    info: `${wasmFeatures}${webgpu.available ? `; WebGPU adapter (Dawn): ${webgpu.description}` : ''}`,
  };
}
