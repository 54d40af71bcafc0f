// @accsgd/onnx-training's README quick start, as a user runs it against the installed tarballs,
// checked against @accsgd/core's float32 AccSGD doing the same two steps (bit-identical on cpu).
import assert from 'node:assert/strict';
import { AccSGD, decodeState } from '@accsgd/core';
import { OnnxAccSGD } from '@accsgd/onnx-training';
import * as ort from 'onnxruntime-node';

const opt = await OnnxAccSGD.create(
  [
    {
      lr: 0.1,
      params: [
        { name: 'weight', shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
        { name: 'bias', data: new Float32Array([0, 0]) },
      ],
    },
  ],
  { lr: 0.1, kappa: 1000, xi: 10 },
  { ort, executionProvider: 'cpu' },
);
await opt.step({ weight: new Float32Array([0.5, 0.5, 0.5, 0.5]), bias: null });
opt.setLearningRate(0.05);
await opt.step({ weight: new Float32Array([0.1, 0.1, 0.1, 0.1]), bias: new Float32Array([1, -1]) });
const { params, buffers } = await opt.read();
const state = await opt.exportState();
await opt.dispose();

const weight = new Float32Array([1, 2, 3, 4]);
const bias = new Float32Array([0, 0]);
const core = new AccSGD([{ params: [weight, bias], names: ['weight', 'bias'], shapes: [[2, 2], [2]] }], {
  lr: 0.1,
  kappa: 1000,
  xi: 10,
});
core.step({ weight: new Float32Array([0.5, 0.5, 0.5, 0.5]), bias: null });
core.setLearningRate(0.05);
core.step({ weight: new Float32Array([0.1, 0.1, 0.1, 0.1]), bias: new Float32Array([1, -1]) });
assert.deepEqual([...params.get('weight')], [...weight]);
assert.deepEqual([...params.get('bias')], [...bias]);
assert.deepEqual([...buffers.get('bias')], [...core.buffer('bias')]);
assert.deepEqual(decodeState(state).groups, decodeState(core.exportState()).groups);
console.log(
  `onnx-training quick start: weight ${[...params.get('weight')].map((w) => w.toFixed(6)).join(', ')}`,
);
