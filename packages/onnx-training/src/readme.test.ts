import { fileURLToPath } from 'node:url';
import { AccSGD } from '@accsgd/core';
import { afterAll, describe, expect, it } from 'vitest';
import { codeBlocks, makeProject, removeProject, runModule } from '../../../scripts/readme-blocks.mjs';

/**
 * The README's quick start runs as written, in a fresh node process from a scratch project inside
 * this package, so '@accsgd/onnx-training' is the built dist/ (build first).
 */
const packageRoot = fileURLToPath(new URL('..', import.meta.url));
const readme = fileURLToPath(new URL('../README.md', import.meta.url));
const runnable = codeBlocks(readme).filter((b) => !b.excerpt);

describe('README of @accsgd/onnx-training', () => {
  const project = makeProject(packageRoot);
  afterAll(() => removeProject(project));

  it('has one runnable block, the quick start', () => {
    expect(runnable.map((b) => b.code.split('\n')[0])).toEqual(['// example.mjs']);
  });

  it('example.mjs prints what core float32 AccSGD computes for the same steps', async () => {
    const { stdout } = await runModule(project, 'example.mjs', runnable[0]!.code, { timeout: 60_000 });
    const numbers = [...stdout.matchAll(/-?\d+\.\d+(e-?\d+)?/g)].map((m) => Number(m[0]));
    // weight after two steps, then bias's buffer after its first step.
    expect(numbers).toEqual([
      0.9406452775001526, 1.9406453371047974, 2.940645456314087, 3.940645694732666, -0.3499999940395355,
      0.3499999940395355,
    ]);
    const weight = new Float32Array([1, 2, 3, 4]);
    const bias = new Float32Array([0, 0]);
    const core = new AccSGD([{ lr: 0.1, params: [weight, bias] }], { lr: 0.1, kappa: 1000, xi: 10 });
    core.step([new Float32Array([0.5, 0.5, 0.5, 0.5]), null]);
    core.setLearningRate(0.05);
    core.step([new Float32Array([0.1, 0.1, 0.1, 0.1]), new Float32Array([1, -1])]);
    expect(numbers).toEqual([...weight, ...core.buffer(1)!]);
  });
});
