// The root README's core quick start, as a user runs it against the installed tarball.
import assert from 'node:assert/strict';
import { AccSGD, decodeState } from '@accsgd/core';

const weights = new Float32Array([0.5, -1.0, 2.0]);
const bias = new Float32Array([0.1]);
const opt = new AccSGD([weights, bias], { lr: 0.1, kappa: 1000, xi: 10 });

// gradients aligned with the parameters; null = no gradient this step
opt.step([new Float32Array([0.2, 0.1, -0.3]), null]);
opt.setLearningRate(0.05); // all groups; setLearningRate(lr, group) for one
const bytes = opt.exportState(); // safetensors: "<name>.momentum_buffer" + groups

assert.ok(bytes instanceof Uint8Array && bytes.length > 0, 'exportState() returned bytes');
assert.notDeepEqual([...weights], [0.5, -1.0, 2.0], 'the step moved the weights');
assert.equal(bias[0], Math.fround(0.1), 'a missing gradient leaves its parameter alone');
const state = decodeState(bytes);
assert.equal(state.groups[0].step, 1);
console.log(
  `core quick start: weights ${[...weights].map((w) => w.toFixed(6)).join(', ')}; state ${bytes.length} bytes`,
);
