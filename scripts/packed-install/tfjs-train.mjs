// The root README's tfjs example on one backend (argv[2]: cpu or wasm): the loss must fall; then
// save through a memory IOHandler with includeOptimizer, reload, and keep training from there.
import assert from 'node:assert/strict';
import { AccSGDOptimizer, accsgd } from '@accsgd/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import * as tfl from '@tensorflow/tfjs-layers';

const backend = process.argv[2] ?? 'cpu';
await tf.setBackend(backend);
await tf.ready();
assert.equal(tf.getBackend(), backend);

const x = tf.randomNormal([256, 4], 0, 1, 'float32', 1);
const y = tf.add(tf.matMul(x, tf.tensor2d([[1.5], [-2], [0.5], [1]])), 0.3);
const model = tfl.sequential({
  layers: [
    tfl.layers.dense({ units: 8, inputShape: [4], activation: 'tanh' }),
    tfl.layers.dense({ units: 1 }),
  ],
});
model.compile({ optimizer: accsgd({ lr: 0.05, kappa: 100, xi: 5 }), loss: 'meanSquaredError' });
const { history } = await model.fit(x, y, { epochs: 20, batchSize: 32, verbose: 0 });
const first = history.loss[0];
const last = history.loss.at(-1);
console.log(`tfjs ${backend}: loss ${first.toFixed(4)} -> ${last.toFixed(4)}`);
assert.ok(last < 0.5 * first, `the loss must fall (${first} -> ${last})`);

// Save with the optimizer's state into memory, reload, and continue.
let artifacts;
await model.save(
  {
    async save(a) {
      artifacts = a;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    },
  },
  { includeOptimizer: true },
);
assert.ok(
  artifacts?.weightSpecs.some((s) => s.group === 'optimizer'),
  'the saved artifacts include the optimizer weights',
);
const reloaded = await tfl.loadLayersModel({ load: async () => artifacts });
assert.ok(
  reloaded.optimizer instanceof AccSGDOptimizer,
  `reloaded optimizer is ${reloaded.optimizer?.getClassName?.()}`,
);
const more = await reloaded.fit(x, y, { epochs: 10, batchSize: 32, verbose: 0 });
const resumed = more.history.loss.at(-1);
console.log(
  `tfjs ${backend}: after save/reload with includeOptimizer, loss ${more.history.loss[0].toFixed(4)} -> ${resumed.toFixed(4)}`,
);
assert.ok(more.history.loss[0] < 1.5 * last, 'the reloaded model starts where the saved one stopped');
assert.ok(resumed < last, `training continues after the reload (${last} -> ${resumed})`);
