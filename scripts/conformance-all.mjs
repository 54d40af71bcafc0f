// `npm start`: the conformance suite over every adapter in this repository, as one table.
// Adapters that cannot run here (no WebGPU, no Chromium, package not present) are listed as
// skipped with the reason; with ACCSGD_REQUIRE_WEBGPU=1 a skip counts as a failure.
// Progress (a line as each adapter starts and ends) goes to stderr; the table to stdout, coloured
// only on a terminal without NO_COLOR. `--only <package folder>` and `--where node|node-webgpu|browser`
// (both repeatable) run a subset.
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  findChromium,
  findNodeWebGPU,
  formatReport,
  loadAdapter,
  runConformance,
  webgpuRequired,
} from '@accsgd/conformance';
import Table from 'cli-table3';

const { values: args } = parseArgs({
  options: { only: { type: 'string', multiple: true }, where: { type: 'string', multiple: true } },
});
// NO_COLOR (https://no-color.org): set to anything non-empty, no colours.
// biome-ignore lint/suspicious/noUndeclaredEnvVars: read by this script at run time, not by a cached turbo task
const color = Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
const paint = (code) => (s) => (color ? `\u001b[${code}m${s}\u001b[39m` : s);
const red = paint(31);
const green = paint(32);

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

const selected = ADAPTERS.filter(
  ([pkg, , , needs]) =>
    (!args.only || args.only.includes(pkg)) && (!args.where || args.where.includes(needs)),
);
if (selected.length === 0) {
  console.error(
    `no adapter matches --only ${args.only ?? '(any)'} --where ${args.where ?? '(any)'}; packages: ${[...new Set(ADAPTERS.map(([p]) => p))].join(', ')}; where: node, node-webgpu, browser`,
  );
  process.exit(2);
}
const bold = (s) => (color ? `\u001b[1m${s}\u001b[22m` : s);
const table = new Table({
  head: ['adapter', 'where', 'checks', 'passed', 'failed', 'worst error / bound', 'seconds'].map(bold),
  // cli-table3 paints the header red and the borders grey by default, even into a file, and its
  // colour library turns itself off wherever CI is set: this script decides (`color`), not it.
  style: { head: [], border: [] },
});
let failures = 0;
let conforming = 0;
let skipped = 0;
const failedReports = [];
const started = performance.now();
for (const [index, [pkg, module, options, needs]] of selected.entries()) {
  const label = `${module} ${JSON.stringify(options)}`;
  const progress = (what) => console.error(`[${index + 1}/${selected.length}] ${label} (${needs}): ${what}`);
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
    progress(`skipped: ${reason}`);
    table.push([label, needs, '', '', '', `skipped: ${reason}`, '']);
    continue;
  }
  progress(`running (${((performance.now() - started) / 1000).toFixed(0)} s so far)`);
  const adapterStarted = performance.now();
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
    const seconds = ((performance.now() - adapterStarted) / 1000).toFixed(1);
    failures += failed.length;
    if (failed.length === 0) conforming++;
    else failedReports.push(report);
    table.push([
      report.adapter,
      where,
      report.results.length,
      report.results.length - failed.length,
      failed.length ? red(String(failed.length)) : failed.length,
      worst.toFixed(3),
      seconds,
    ]);
    progress(`${report.results.length - failed.length} passed, ${failed.length} failed in ${seconds} s`);
  } catch (error) {
    failures++;
    progress(`error: ${error?.message ?? error}`);
    table.push([label, where, '', '', red('error'), String(error?.message ?? error).slice(0, 80), '']);
  } finally {
    await dispose();
  }
}
console.log(table.toString());
// A failing adapter gets the conformance CLI's report: where it first diverged, its failures
// grouped by cause, and a diagnosis.
for (const report of failedReports) console.log(`\n${formatReport(report, { color })}`);
const summary = `${conforming} adapter configuration(s) conform, ${skipped} skipped, ${failures} failure(s)`;
console.log(failures ? red(summary) : green(summary));
process.exit(failures === 0 ? 0 : 1);
