import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findNodeWebGPU, webgpuRequired } from '@accsgd/conformance';
import { afterAll, describe, expect, it } from 'vitest';
import { codeBlocks, makeProject, removeProject, runModule } from '../../../scripts/readme-blocks.mjs';

/**
 * The README's JavaScript blocks, and the root README's block that uses this package, run as
 * written: each in a fresh node process, from a scratch project inside this package, so that
 * '@accsgd/tfjs' is the built dist/ (npm test builds first) and tfjs the workspace's, as in an
 * installed package. A block that is not meant to run starts with `// excerpt: ...`.
 */
const packageRoot = fileURLToPath(new URL('..', import.meta.url));
const readme = fileURLToPath(new URL('../README.md', import.meta.url));
const rootReadme = fileURLToPath(new URL('../../../README.md', import.meta.url));

const project = makeProject(packageRoot);
const wasmPackage = dirname(
  createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm/package.json'),
);
afterAll(() => removeProject(project));

/** The numbers of a printed "loss <first> -> <last>" line. */
function losses(stdout: string): [number, number] {
  const match = /loss (\S+) -> (\S+)/.exec(stdout);
  if (!match) throw new Error(`no "loss a -> b" line in:\n${stdout}`);
  return [Number(match[1]), Number(match[2])];
}

describe('README.md of @accsgd/tfjs', () => {
  const runnable = codeBlocks(readme).filter((b) => !b.excerpt);

  it('has only runnable blocks and excerpts, and this test knows every runnable one', () => {
    expect(runnable.length).toBe(4);
    expect(runnable[3]!.code.split('\n')[0]).toBe('// webgpu-in-node.mjs');
    expect(runnable[1]!.code.split('\n')[0]).toBe('// save-to-files.mjs');
  });

  it('trains on cpu, saves with the optimizer, reloads and trains on', async () => {
    const { stdout } = await runModule(project, 'tfjs-readme-1.mjs', runnable[0]!.code);
    const [first, last] = losses(stdout);
    expect(last).toBeLessThan(first / 10);
    // 20 epochs of 256 / 32 = 8 batches.
    expect(stdout).toContain('AccSGD at iteration 160');
  });

  it('saves to files with fs and loads them back with the optimizer, taking the same next step', async () => {
    const { stdout } = await runModule(project, 'save-to-files.mjs', runnable[1]!.code);
    // 5 epochs of 256 / 32 = 8 batches.
    expect(stdout).toContain('AccSGD at iteration 40\n');
    expect(stdout).toContain('same weights after one more epoch: true\n');
    const json = JSON.parse(readFileSync(join(project, 'saved-model', 'model.json'), 'utf8')) as {
      weightSpecs: { name: string }[];
    };
    expect(json.weightSpecs.map((w) => w.name)).toContain('dense_Dense1/kernel/momentum_buffer');
    // 4 + 1 weights and their 4 + 1 buffers in float32, and the int32 iteration count.
    expect(statSync(join(project, 'saved-model', 'weights.bin')).size).toBe((5 + 5 + 1) * 4);
  });

  it('says which conv backward kernels the wasm backend lacks (all that cpu has and wasm does not)', async () => {
    const text = readFileSync(readme, 'utf8');
    const { stdout } = await runModule(
      project,
      'wasm-kernels.mjs',
      `import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
const missing = tf.getKernelsForBackend('cpu').map((k) => k.kernelName)
  .filter((k) => /Backprop/.test(k) && !tf.getKernel(k, 'wasm'));
console.log(JSON.stringify(missing));`,
    );
    const missing = JSON.parse(stdout) as string[];
    expect(missing).toContain('Conv2DBackpropFilter');
    for (const kernel of missing) expect(text).toContain(`\`${kernel}\``);
    expect(text).toContain('**Conv nets do not train on wasm.**');
  });

  it('names, in its bundler recipe, the .wasm files that tfjs-backend-wasm ships', () => {
    const recipe = codeBlocks(readme).find((b) => b.code.includes('setWasmPaths'));
    const urls = [
      ...recipe!.code.matchAll(/from '@tensorflow\/tfjs-backend-wasm\/(dist\/[\w-]+\.wasm)\?url'/g),
    ];
    const shipped = readdirSync(join(wasmPackage, 'dist')).filter((f) => f.endsWith('.wasm'));
    expect(urls.map((m) => m[1]).sort()).toEqual(shipped.map((f) => `dist/${f}`).sort());
    for (const f of shipped) expect(recipe!.code).toContain(`'${f}': `);
  });

  it('trains on wasm after tf.setBackend("wasm") and tf.ready()', async () => {
    const { stdout } = await runModule(project, 'tfjs-readme-2.mjs', runnable[2]!.code);
    expect(stdout.startsWith('wasm loss ')).toBe(true);
    const [first, last] = losses(stdout);
    expect(last).toBeLessThan(first / 10);
  });
});

describe('README.md of @accsgd/tfjs: WebGPU in Node', async () => {
  const found = await findNodeWebGPU(); // sets VK_ICD_FILENAMES for SwiftShader, which the block inherits
  if (!found.available)
    console.warn(`\n[accsgd] SKIPPED the README's WebGPU-in-Node block: ${found.reason}\n`);
  it.runIf(found.available || webgpuRequired())(
    'stops training at the NaN batch, and verifySteps() reports it',
    async () => {
      expect(found.available, 'a WebGPU adapter (ACCSGD_REQUIRE_WEBGPU=1)').toBe(true);
      const block = codeBlocks(readme).filter((b) => !b.excerpt)[3]!;
      const { stdout } = await runModule(project, 'webgpu-in-node.mjs', block.code, { timeout: 300_000 });
      expect(stdout).toBe(
        'gradient for parameter "dense_Dense1/kernel": step 3: element 0 is NaN\nsteps applied: 2\n',
      );
    },
    300_000,
  );
});

describe('README.md of the repository: the block that uses @accsgd/tfjs', () => {
  const blocks = codeBlocks(rootReadme).filter(
    (b) => !b.excerpt && /from '@accsgd\/([\w-]+)/.exec(b.code)?.[1] === 'tfjs',
  );

  it('finds it', () => {
    expect(blocks.length).toBe(1);
  });

  it('trains and prints a falling loss', async () => {
    const { stdout } = await runModule(project, 'root-readme-tfjs.mjs', blocks[0]!.code);
    const [first, last] = losses(stdout);
    expect(last).toBeLessThan(first / 10);
  });
});
