import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { codeBlocks, makeProject, removeProject, runModule } from '../../../scripts/readme-blocks.mjs';

/**
 * The README's JavaScript blocks, and the root README's blocks that use this package, run as
 * written: each in a fresh node process, from a scratch project inside this package, so that
 * '@accsgd/core' is the built dist/ (npm test builds first), as in an installed package. A block
 * that is not meant to run starts with `// excerpt: ...`. The PyTorch block is run by
 * @accsgd/conformance's readme.test.ts (it needs findPyTorch, and this package depends on nothing).
 */
const packageRoot = fileURLToPath(new URL('..', import.meta.url));
const readme = fileURLToPath(new URL('../README.md', import.meta.url));
const rootReadme = fileURLToPath(new URL('../../../README.md', import.meta.url));

const project = makeProject(packageRoot);
afterAll(() => removeProject(project));

const lines = (stdout: string) => stdout.trim().split('\n');

describe('README.md of @accsgd/core', () => {
  const blocks = codeBlocks(readme);
  const runnable = blocks.filter((b) => !b.excerpt);

  it('has only runnable blocks and excerpts, and this test knows every runnable one', () => {
    expect(runnable.map((b) => b.lang)).toEqual(['js', 'js', 'js', 'js']);
  });

  it('runs the first example: one step, state file written, the buffer and advice printed', async () => {
    const { stdout } = await runModule(project, 'core-readme-1.mjs', runnable[0]!.code);
    const printed = lines(stdout);
    expect(Number(printed[0])).toBe(Math.fround(-0.0091000004));
    expect(printed.slice(1).join('\n')).toMatch(/xi = 20 is above sqrt\(kappa\)[\s\S]*kappa = 50 is below/);
  });

  it('runs the ParameterArena example', async () => {
    await runModule(project, 'core-readme-2.mjs', runnable[1]!.code);
  });

  it('runs the threads example: two threads, the step applied, the process exits by itself', async () => {
    const { stdout } = await runModule(project, 'core-readme-3.mjs', runnable[2]!.code);
    // The first step from p = 0 with g = 0.5 at the default kappa and xi, in float32.
    expect(lines(stdout)).toEqual(['2 -0.05208539962768555']);
  });

  it('runs the SharedArrayBuffer example: the same first step, with two threads', async () => {
    const { stdout } = await runModule(project, 'core-readme-4.mjs', runnable[3]!.code);
    expect(lines(stdout)).toEqual(['2 -0.05208539962768555']);
  });
});

describe('README.md of the repository: the blocks that use @accsgd/core', () => {
  const blocks = codeBlocks(rootReadme).filter(
    (b) => !b.excerpt && /from '@accsgd\/([\w-]+)/.exec(b.code)?.[1] === 'core',
  );

  it('finds the quick start and the parameter groups example', () => {
    expect(blocks.length).toBe(2);
  });

  it('runs the quick start and prints the weights its comment gives', async () => {
    const { stdout } = await runModule(project, 'root-readme-core-1.mjs', blocks[0]!.code);
    expect(lines(stdout)[0]).toBe('Float32Array(3) [');
    const weights = lines(stdout)
      .slice(1, 4)
      .map((l) => Number(l.replace(',', '')));
    expect(weights.map((v) => v.toPrecision(8))).toEqual(['0.47916582', '-1.0104171', '2.0312512']);
  });

  it('runs the parameter groups example: skip-step skips a step with a NaN gradient', async () => {
    const { stdout } = await runModule(project, 'root-readme-core-2.mjs', blocks[1]!.code);
    expect(stdout).toMatch(/^false gradient for parameter "embedding": element 5 is NaN/);
  });
});
