import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { noGPU, noGPUReason } from './test-support/gpu.js';

const run = promisify(execFile);
const packageRoot = fileURLToPath(new URL('..', import.meta.url));

/** The README's Node example (the code block that starts with `// example.mjs`), as written. */
function readmeExample(): string {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const match = /```js\n(\/\/ example\.mjs\n[\s\S]*?)```/.exec(readme);
  if (!match) throw new Error('README.md has no ```js block starting with // example.mjs');
  return match[1]!;
}

describe.skipIf(noGPU)(`README example${noGPU ? ` (no adapter: ${noGPUReason})` : ''}`, () => {
  it('runs in a fresh Node process against the built package and prints what its comments say', async () => {
    // Bare specifiers of --eval code resolve from the working directory: this package, so
    // '@accsgd/webgpu-kernel' is the built dist/ (npm test builds first) and 'webgpu' is Dawn.
    const { stdout } = await run(process.execPath, ['--input-type=module', '--eval', readmeExample()], {
      cwd: packageRoot,
      env: process.env,
      timeout: 60_000,
    });
    const printed = stdout.trim().split('\n');
    // console.log of a Float32Array(12), then of null.
    expect(printed[0]).toBe('Float32Array(12) [');
    const weights = printed.slice(1, 13).map((line) => Number(line.replace(',', '')));
    expect(weights).toEqual(new Array(12).fill(Math.fround(0.9479146)));
    expect(printed.slice(13)).toEqual([']', 'null']);
  });
});
