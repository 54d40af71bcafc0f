import { fileURLToPath } from 'node:url';
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
    expect(runnable.length).toBe(2);
  });

  it('trains on cpu, saves with the optimizer, reloads and trains on', async () => {
    const { stdout } = await runModule(project, 'tfjs-readme-1.mjs', runnable[0]!.code);
    const [first, last] = losses(stdout);
    expect(last).toBeLessThan(first / 10);
    // 20 epochs of 256 / 32 = 8 batches.
    expect(stdout).toContain('AccSGD at iteration 160');
  });

  it('trains on wasm after tf.setBackend("wasm") and tf.ready()', async () => {
    const { stdout } = await runModule(project, 'tfjs-readme-2.mjs', runnable[1]!.code);
    expect(stdout.startsWith('wasm loss ')).toBe(true);
    const [first, last] = losses(stdout);
    expect(last).toBeLessThan(first / 10);
  });
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
