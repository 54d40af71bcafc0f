import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { codeBlocks, makeProject, removeProject, runModule } from '../../../scripts/readme-blocks.mjs';
import { noGPU, noGPUReason } from './test-support/gpu.js';

/**
 * The README's JavaScript blocks, and the root README's block that uses this package, run as
 * written: each in a fresh node process, from a scratch project inside this package, so that
 * '@accsgd/webgpu-kernel' is the built dist/ (npm test builds first) and 'webgpu' is Dawn. The
 * environment is this process's, in which findNodeWebGPU (test-support/gpu.ts) has set
 * VK_ICD_FILENAMES and XDG_RUNTIME_DIR as the READMEs tell users to. Without a WebGPU adapter the
 * runs are skipped with a notice, or fail when ACCSGD_REQUIRE_WEBGPU=1 (test-support/gpu.ts throws).
 * A block that is not meant to run starts with `// excerpt: ...`.
 */
const packageRoot = fileURLToPath(new URL('..', import.meta.url));
const readme = fileURLToPath(new URL('../README.md', import.meta.url));
const rootReadme = fileURLToPath(new URL('../../../README.md', import.meta.url));

const runnable = codeBlocks(readme).filter((b) => !b.excerpt);
const rootBlocks = codeBlocks(rootReadme).filter(
  (b) => !b.excerpt && /from '@accsgd\/([\w-]+)/.exec(b.code)?.[1] === 'webgpu-kernel',
);

/** Printed lines of console.log(Float32Array(12)) from index `at`, as numbers. */
function float32Array12(printed: string[], at: number): number[] {
  expect(printed[at]).toBe('Float32Array(12) [');
  expect(printed[at + 13]).toBe(']');
  return printed.slice(at + 1, at + 13).map((line) => Number(line.replace(',', '')));
}
const AFTER_ONE_STEP = new Array(12).fill(Math.fround(0.9479146));

describe('README blocks of @accsgd/webgpu-kernel', () => {
  it('are all runnable or excerpts, and this test knows every runnable one', () => {
    expect(runnable.map((b) => b.code.split('\n')[0])).toEqual(['// example.mjs', '// list.mjs']);
    expect(rootBlocks.length).toBe(1);
  });
});

describe.skipIf(noGPU)(`README examples${noGPU ? ` (no adapter: ${noGPUReason})` : ''}`, () => {
  const project = makeProject(packageRoot);
  afterAll(() => removeProject(project));

  it('example.mjs runs and prints what its comments say', async () => {
    const { stdout } = await runModule(project, 'example.mjs', runnable[0]!.code, { timeout: 60_000 });
    const printed = stdout.trim().split('\n');
    // console.log of a Float32Array(12), then of null.
    expect(float32Array12(printed, 0)).toEqual(AFTER_ONE_STEP);
    expect(printed.slice(14)).toEqual(['null']);
  });

  it('list.mjs (a group as a list of tensors with their own buffers) runs and prints the same', async () => {
    const { stdout } = await runModule(project, 'list.mjs', runnable[1]!.code, { timeout: 60_000 });
    const printed = stdout.trim().split('\n');
    expect(float32Array12(printed, 0)).toEqual(AFTER_ONE_STEP);
    expect(printed.length).toBe(14);
  });

  it("the root README's WebGPU example runs and prints the same", async () => {
    const { stdout } = await runModule(project, 'root-readme.mjs', rootBlocks[0]!.code, { timeout: 60_000 });
    const printed = stdout.trim().split('\n');
    expect(float32Array12(printed, 0)).toEqual(AFTER_ONE_STEP);
    expect(printed.length).toBe(14);
  });
});
