import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { findNodeWebGPU, webgpuRequired } from '@accsgd/conformance';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const packageRoot = fileURLToPath(new URL('..', import.meta.url));
// The installed @accsgd/conformance (the workspace links it into the root node_modules).
const cli = join(
  packageRoot,
  '..',
  '..',
  'node_modules',
  '@accsgd',
  'conformance',
  'bin',
  'accsgd-conformance.js',
);

// The conformance CLI, run as a user would, on this package's adapter with tfjs's webgpu backend in
// Node: the adapter must set up WebGPU (Dawn) itself; the CLI used to fail with "Backend name
// 'webgpu' not found in registry" unless something else had installed navigator.gpu first.
describe('accsgd-conformance CLI on @accsgd/tfjs/conformance, webgpu in Node', () => {
  it('passes the selected checks with no set-up of its own', async (context) => {
    const found = await findNodeWebGPU();
    if (!found.available) {
      expect(webgpuRequired(), `ACCSGD_REQUIRE_WEBGPU=1 but ${found.reason}`).toBe(false);
      context.skip();
    }
    const { stdout } = await run(
      process.execPath,
      [
        cli,
        '--adapter',
        '@accsgd/tfjs/conformance',
        '--options',
        '{"backend":"webgpu"}',
        '--only',
        'golden: defaults',
        'in use: defaults',
        '--json',
      ],
      { cwd: packageRoot, maxBuffer: 16 << 20 },
    );
    const [report] = JSON.parse(stdout) as {
      adapter: string;
      passed: boolean;
      results: { check: string }[];
    }[];
    expect(report!.adapter).toBe('tfjs/webgpu');
    expect(report!.results.map((r) => r.check)).toEqual(['golden: defaults', 'in use: defaults']);
    expect(report!.passed).toBe(true);
  });
});
