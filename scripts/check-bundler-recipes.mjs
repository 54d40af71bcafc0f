// Repeats the check behind the README's "In the browser, with a bundler": a Vite production build of
// the README's tfjs-on-wasm recipe (taken from the README as written), of onnxruntime-web's wasm
// with nothing configured, and of @accsgd/webgpu-kernel on navigator.gpu, served on 127.0.0.1 and
// run in headless Chromium (/usr/bin/chromium or ACCSGD_CHROMIUM, SwiftShader for WebGPU). Also
// checks the failure the recipe prevents: without setWasmPaths, tf.setBackend('wasm') is false.
// Not part of `npm test` (a build takes about a minute here): `node scripts/check-bundler-recipes.mjs`
// after `npm run build`. Exit 1 on any failed expectation.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { preview } from 'vite';

const repo = fileURLToPath(new URL('..', import.meta.url));
const readme = readFileSync(join(repo, 'README.md'), 'utf8');
const recipe = [...readme.matchAll(/```js\n([\s\S]*?)```/g)]
  .map((m) => m[1])
  .find((code) => code.includes('setWasmPaths({'));
if (!recipe) throw new Error('README.md has no block with the setWasmPaths recipe');

const dir = mkdtempSync(join(tmpdir(), 'accsgd-bundler-'));
symlinkSync(join(repo, 'node_modules'), join(dir, 'node_modules'), 'dir');
const page = (script) =>
  `<!doctype html><html><body><script type="module" src="./${script}"></script></body></html>`;
const training = `
import * as tfl from '@tensorflow/tfjs-layers';
import { accsgd } from '@accsgd/tfjs';
const x = tf.randomNormal([256, 4], 0, 1, 'float32', 1);
const y = tf.add(tf.matMul(x, tf.tensor2d([[1.5], [-2], [0.5], [1]])), 0.3);
const model = tfl.sequential({ layers: [tfl.layers.dense({ units: 1, inputShape: [4] })] });
model.compile({ optimizer: accsgd({ lr: 0.05, kappa: 100, xi: 5 }), loss: 'meanSquaredError' });
const { history } = await model.fit(x, y, { epochs: 20, batchSize: 32, verbose: 0 });
window.result = { backend: tf.getBackend(), first: history.loss[0], last: history.loss.at(-1) };
`;
writeFileSync(join(dir, 'recipe.html'), page('recipe.js'));
writeFileSync(
  join(dir, 'recipe.js'),
  `import '@tensorflow/tfjs-backend-cpu';\n${recipe.replace(/^\/\/ excerpt:.*\n/, '')}${training}`,
);
writeFileSync(join(dir, 'no-paths.html'), page('no-paths.js'));
writeFileSync(
  join(dir, 'no-paths.js'),
  `import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
const selected = await tf.setBackend('wasm');
await tf.ready();
window.result = { selected, backend: tf.getBackend() };
`,
);
writeFileSync(join(dir, 'ort.html'), page('ort.js'));
writeFileSync(
  join(dir, 'ort.js'),
  `import * as ort from 'onnxruntime-web';
import { OnnxAccSGD } from '@accsgd/onnx-training';
import { createFlatStorage, WebGPUAccSGD } from '@accsgd/webgpu-kernel';
const opt = await OnnxAccSGD.create(
  [{ lr: 0.1, params: [{ name: 'weight', shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) }] }],
  { lr: 0.1, kappa: 1000, xi: 10 },
  { ort, executionProvider: 'wasm' },
);
await opt.step({ weight: new Float32Array([0.5, 0.5, 0.5, 0.5]) });
const onnx = Array.from((await opt.read()).params.get('weight'));
await opt.dispose();
const adapter = await navigator.gpu?.requestAdapter();
let kernel = 'no WebGPU adapter';
if (adapter) {
  const device = await adapter.requestDevice();
  const storage = createFlatStorage(device, [{ name: 'weight', shape: [4, 3] }]);
  storage.write('weight', 'params', new Float32Array(12).fill(1));
  const optimizer = await WebGPUAccSGD.create(
    device,
    [{ params: storage.params, grads: storage.grads, segments: storage.segments }],
    { lr: 0.1, kappa: 1000, xi: 10 },
  );
  storage.write('weight', 'grads', new Float32Array(12).fill(0.5));
  await optimizer.step({ weight: true });
  kernel = (await optimizer.readParam('weight'))[0];
}
window.result = { onnx, kernel };
`,
);
writeFileSync(
  join(dir, 'vite.config.mjs'),
  `export default { logLevel: 'warn', build: { chunkSizeWarningLimit: 8192, rollupOptions: { input: ['recipe.html', 'no-paths.html', 'ort.html'] } } };\n`,
);

let failed = 0;
const expect = (ok, what) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failed++;
};
const started = performance.now();
execFileSync(process.execPath, [join(repo, 'node_modules/vite/bin/vite.js'), 'build'], {
  cwd: dir,
  stdio: 'inherit',
});
console.log(`vite build: ${((performance.now() - started) / 1000).toFixed(1)} s`);
const server = await preview({ root: dir, preview: { host: '127.0.0.1', port: 0 }, logLevel: 'warn' });
const url = server.resolvedUrls.local[0];
const browser = await chromium.launch({
  executablePath: process.env.ACCSGD_CHROMIUM || '/usr/bin/chromium',
  args: [
    '--enable-unsafe-webgpu',
    '--use-webgpu-adapter=swiftshader',
    '--no-sandbox',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    '--disable-quic',
  ],
});
const run = async (file) => {
  const tab = await browser.newPage();
  await tab.goto(`${url}${file}`);
  const result = await (
    await tab.waitForFunction(() => window.result, null, { timeout: 120_000 })
  ).jsonValue();
  await tab.close();
  return result;
};
try {
  const recipeResult = await run('recipe.html');
  console.log('recipe:', JSON.stringify(recipeResult));
  expect(recipeResult.backend === 'wasm', "the README's recipe trains on wasm");
  expect(recipeResult.last < recipeResult.first / 10, 'and the loss falls tenfold');
  const noPaths = await run('no-paths.html');
  console.log('without setWasmPaths:', JSON.stringify(noPaths));
  expect(
    noPaths.selected === false && noPaths.backend === 'cpu',
    "without setWasmPaths, setBackend('wasm') is false",
  );
  const ort = await run('ort.html');
  console.log('onnxruntime-web wasm and webgpu-kernel:', JSON.stringify(ort));
  expect(Math.abs(ort.onnx[0] - 0.9479146) < 1e-6, 'OnnxAccSGD on onnxruntime-web wasm, nothing configured');
  expect(Math.abs(ort.kernel - 0.9479146) < 1e-6, 'WebGPUAccSGD on navigator.gpu');
} finally {
  await browser.close();
  await new Promise((resolve) => server.httpServer.close(resolve));
  rmSync(dir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
