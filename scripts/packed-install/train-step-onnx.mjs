// @accsgd/onnx-training's train step as a user runs it against the installed tarballs: a small
// token classifier written with the model-builder subpath (int64 ids -> embedding Gather ->
// ReduceMean -> LayerNormalization -> Gemm), trained with OnnxTrainer on onnxruntime-node cpu to
// tell whether token 1 occurs, then exported and run at another batch size.
import assert from 'node:assert/strict';
import { OnnxTrainer } from '@accsgd/onnx-training';
import {
  encodeModel,
  floatInitializer,
  int64Initializer,
  node,
  valueInfo,
} from '@accsgd/onnx-training/model-builder';
import * as ort from 'onnxruntime-node';

const [V, D, T, B] = [6, 8, 4, 16];
let seed = 7;
const random = () => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return (seed / 2 ** 32) * 2 - 1;
};
const model = encodeModel({
  name: 'token_classifier',
  nodes: [
    node('Gather', ['E', 'ids'], ['embedded']),
    node('ReduceMean', ['embedded', 'axis1'], ['pooled'], { keepdims: 0 }),
    node('LayerNormalization', ['pooled', 'gamma', 'beta'], ['normed']),
    node('Gemm', ['normed', 'W', 'b'], ['logits']),
  ],
  inputs: [valueInfo('ids', ['batch', T], 'int64')],
  outputs: [valueInfo('logits', ['batch', 2])],
  initializers: [
    floatInitializer('E', [V, D], Array.from({ length: V * D }, random)),
    int64Initializer('axis1', [1], [1]),
    floatInitializer('gamma', [D], new Array(D).fill(1)),
    floatInitializer('beta', [D], new Array(D).fill(0)),
    floatInitializer('W', [D, 2], Array.from({ length: D * 2 }, random)),
    floatInitializer('b', [2], [0, 0]),
  ],
  opset: 18,
});

const trainer = await OnnxTrainer.create(model, {
  loss: 'softmax-cross-entropy',
  dimensions: { batch: B },
  hyperparams: { lr: 0.1 },
  ort,
});
const batch = () => {
  const ids = new BigInt64Array(B * T);
  const labels = new Float32Array(B * 2);
  for (let r = 0; r < B; r++) {
    for (let t = 0; t < T; t++) ids[r * T + t] = BigInt(2 + Math.floor(((random() + 1) / 2) * (V - 2)));
    const positive = r % 2 === 1;
    if (positive) ids[r * T + (r % T)] = 1n;
    labels[r * 2 + (positive ? 1 : 0)] = 1;
  }
  return { ids, labels };
};
const losses = [];
for (let step = 0; step < 80; step++) {
  const { ids, labels } = batch();
  losses.push(await trainer.step({ ids }, labels));
}
const exported = await trainer.exportModel();
await trainer.dispose();
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
console.log(
  `loss: first 10 steps ${mean(losses.slice(0, 10)).toFixed(4)}, last 10 ${mean(losses.slice(-10)).toFixed(4)}`,
);
assert.ok(mean(losses.slice(-10)) < mean(losses.slice(0, 10)) / 2, 'the loss falls by more than half');

const session = await ort.InferenceSession.create(exported);
const ids = BigInt64Array.from([1n, 2n, 3n, 4n, 5n, 4n, 3n, 2n, 2n, 1n, 5n, 5n]);
const { logits } = await session.run({ ids: new ort.Tensor('int64', ids, [3, T]) });
const predicted = [0, 1, 2].map((r) => (logits.data[2 * r + 1] > logits.data[2 * r] ? 1 : 0));
console.log(`exported model, 3 rows: predictions ${predicted.join(', ')}`);
assert.deepEqual(predicted, [1, 0, 1]);
await session.release();
