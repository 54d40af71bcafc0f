/**
 * One epoch on a subset with onnxruntime-node's WebGPU execution provider and strictPlacement (ORT's
 * disable_cpu_ep_fallback: session creation fails if any node of the train step would run on the
 * CPU). Run as its own process (main.ts spawns it) so that the Vulkan environment
 * (VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json, XDG_RUNTIME_DIR) is set before ORT
 * starts, and so that a failure of the GPU stack cannot take the CPU run down with it.
 * Prints one line: `webgpu-result {json}`.
 */
import { BatchSchedule } from './data.js';
import { loadMnist } from './idx.js';
import { initialWeights, mlpForwardModel } from './model.js';
import { trainOnnx } from './onnx.js';
import { FULL_RUN, subset } from './run.js';
import { maxRelativeDifference } from './tfjs-track.js';

export interface WebGpuResult {
  trainCount: number;
  steps: number;
  seconds: number;
  firstLoss: number;
  lastLoss: number;
  testAccuracy: number;
  cpuTestAccuracy: number;
  maxRelativeLossDifferenceToCpu: number;
  executionProvider: string;
  strictPlacement: boolean;
}

const trainCount = Number(process.argv[2] ?? 6_000);
const data = loadMnist();
const train = subset(data.train, trainCount);
const { batchSize, hyperparams, weightSeed, shuffleSeed } = FULL_RUN;
const forward = mlpForwardModel(initialWeights(weightSeed));
const schedule = new BatchSchedule(train, batchSize, shuffleSeed);
const result = await trainOnnx({
  forward,
  schedule,
  hyperparams,
  test: data.test,
  maxEpochs: 1,
  executionProvider: 'webgpu',
  strictPlacement: true,
});
// The same epoch on the CPU EP, for the loss agreement.
const cpu = await trainOnnx({ forward, schedule, hyperparams, test: data.test, maxEpochs: 1 });
const out: WebGpuResult = {
  trainCount,
  steps: result.losses.length,
  seconds: result.seconds,
  firstLoss: result.losses[0]!,
  lastLoss: result.losses.at(-1)!,
  testAccuracy: result.epochs[0]!.testAccuracy,
  cpuTestAccuracy: cpu.epochs[0]!.testAccuracy,
  maxRelativeLossDifferenceToCpu: maxRelativeDifference(result.losses, cpu.losses).max,
  ...result.placement,
};
console.log(`webgpu-result ${JSON.stringify(out)}`);
