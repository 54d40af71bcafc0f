// `npm start`: the conformance suite over every adapter in this repository, as one table.
// Adapters that cannot run here (no WebGPU, no Chromium, package not present) are listed as
// skipped with the reason; with ACCSGD_REQUIRE_WEBGPU=1 a skip counts as a failure.
import { existsSync } from 'node:fs';
import {
  findChromium,
  findNodeWebGPU,
  loadAdapter,
  runConformance,
  webgpuRequired,
} from '@accsgd/conformance';
import Table from 'cli-table3';

const here = (p) => new URL(`../${p}`, import.meta.url);
const built = (pkg) => existsSync(here(`packages/${pkg}/dist/conformance.js`));

/** Every adapter configuration we ship: [package folder, module, options, needs]. */
const ADAPTERS = [
  ['core', '@accsgd/core/conformance', { dtype: 'float32' }, 'node'],
  ['core', '@accsgd/core/conformance', { dtype: 'float64' }, 'node'],
  ['tfjs', '@accsgd/tfjs/conformance', { backend: 'cpu' }, 'node'],
  ['tfjs', '@accsgd/tfjs/conformance', { backend: 'wasm' }, 'node'],
  ['tfjs', '@accsgd/tfjs/conformance', { backend: 'webgpu' }, 'node-webgpu'],
  ['webgpu-kernel', '@accsgd/webgpu-kernel/conformance', {}, 'node-webgpu'],
  ['onnx-training', '@accsgd/onnx-training/conformance', { runtime: 'node-cpu' }, 'node'],
  ['onnx-training', '@accsgd/onnx-training/conformance', { runtime: 'web-wasm' }, 'node'],
  ['onnx-training', '@accsgd/onnx-training/conformance', { runtime: 'node-webgpu' }, 'node-webgpu'],
  ['core', '@accsgd/core/conformance', { dtype: 'float32' }, 'browser'],
  ['tfjs', '@accsgd/tfjs/conformance', { backend: 'webgl' }, 'browser'],
  ['tfjs', '@accsgd/tfjs/conformance', { backend: 'webgpu' }, 'browser'],
  ['webgpu-kernel', '@accsgd/webgpu-kernel/conformance', {}, 'browser'],
];

const table = new Table({
  head: ['adapter', 'where', 'checks', 'passed', 'failed', 'worst error / bound', 'seconds'],
});
let failures = 0;
let conforming = 0;
let skipped = 0;
for (const [pkg, module, options, needs] of ADAPTERS) {
  const label = `${module} ${JSON.stringify(options)}`;
  const skip = async () => {
    if (!built(pkg)) return `packages/${pkg} is not built (run npm run build)`;
    if (needs === 'node-webgpu') {
      const gpu = await findNodeWebGPU();
      return gpu.available ? undefined : gpu.reason;
    }
    if (needs === 'browser') {
      const chromium = findChromium();
      return chromium.available ? undefined : chromium.reason;
    }
    return undefined;
  };
  const reason = await skip();
  if (reason) {
    if (webgpuRequired() && pkg !== undefined && existsSync(here(`packages/${pkg}`))) failures++;
    skipped++;
    table.push([label, needs, '', '', '', `skipped: ${reason}`, '']);
    continue;
  }
  const started = performance.now();
  let adapter;
  let dispose = async () => {};
  let where = needs === 'browser' ? 'chromium' : 'node';
  try {
    if (needs === 'browser') {
      const { openBrowserAdapter } = await import('@accsgd/conformance/browser');
      adapter = await openBrowserAdapter({ module, options });
      dispose = () => adapter.dispose();
      where = adapter.environment;
    } else {
      adapter = await loadAdapter(module, 'conformanceAdapter', options);
      if (needs === 'node-webgpu') where = `node / ${(await findNodeWebGPU()).description}`;
    }
    const report = await runConformance(adapter);
    const failed = report.results.filter((r) => !r.passed);
    const worst = Math.max(...report.results.filter((r) => r.bound).map((r) => (r.maxError ?? 0) / r.bound));
    failures += failed.length;
    if (failed.length === 0) conforming++;
    table.push([
      report.adapter,
      where,
      report.results.length,
      report.results.length - failed.length,
      failed.length,
      worst.toFixed(3),
      ((performance.now() - started) / 1000).toFixed(1),
    ]);
    for (const f of failed) console.error(`FAIL ${report.adapter} / ${f.check}: ${f.detail}`);
  } catch (error) {
    failures++;
    table.push([label, where, '', '', 'error', String(error?.message ?? error).slice(0, 80), '']);
  } finally {
    await dispose();
  }
}
console.log(table.toString());
console.log(`${conforming} adapter configuration(s) conform, ${skipped} skipped, ${failures} failure(s)`);
process.exit(failures === 0 ? 0 : 1);
