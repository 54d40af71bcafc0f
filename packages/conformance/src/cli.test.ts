import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { findChromium, webgpuRequired } from './environment.js';
import { MUTANT_EXPORTS } from './mutants/index.js';

const run = promisify(execFile);
// The bin entry npm links, as users run it.
const cli = fileURLToPath(new URL('../bin/accsgd-conformance.js', import.meta.url));
const packageRoot = fileURLToPath(new URL('..', import.meta.url));

async function conformanceCli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, ...args], {
      cwd: packageRoot,
      maxBuffer: 64 << 20,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('accsgd-conformance CLI', () => {
  it('links a bin that exists before the build (npm links bins at install, before dist/ is built)', async () => {
    const manifest = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as {
      bin: Record<string, string>;
      files: string[];
    };
    expect(manifest.bin).toEqual({ 'accsgd-conformance': './bin/accsgd-conformance.js' });
    expect(manifest.files).toContain('bin');
    const { stdout } = await run('git', ['ls-files', 'bin/accsgd-conformance.js'], { cwd: packageRoot });
    expect(stdout.trim()).toBe('bin/accsgd-conformance.js');
  });

  for (const dtype of ['float32', 'float64']) {
    it(`passes the core adapter in ${dtype} (package specifier)`, async () => {
      const { code, stdout } = await conformanceCli(
        '--adapter',
        '@accsgd/core/conformance',
        '--options',
        JSON.stringify({ dtype }),
      );
      expect(stdout).toMatch(new RegExp(`core/${dtype} \\(${dtype}\\): 51 passed, 0 failed`));
      // One line per check family by default, no failures section, no diagnosis, no colours (not a TTY).
      for (const family of ['golden', 'resume', 'in use', 'state file', 'bad input'])
        expect(stdout).toMatch(new RegExp(`^  ${family} +\\d+ passed,  0 failed`, 'm'));
      expect(stdout).toMatch(/^ {2}golden +13 passed, {2}0 failed {2}worst error\/bound \d/m);
      expect(stdout).not.toContain('golden: long-trajectory');
      expect(stdout).not.toContain('failures:');
      expect(stdout).not.toContain('diagnosis');
      expect(stdout).not.toContain('\u001b[');
      expect(code).toBe(0);
    }, 60_000);
  }

  it('prints the full table with --verbose', async () => {
    const { code, stdout } = await conformanceCli('--adapter', '@accsgd/core/conformance', '--verbose');
    expect(stdout).toMatch(/│ golden: long-trajectory +│ pass +│/);
    expect(stdout).toContain('core/float32 (float32): 51 passed, 0 failed');
    expect(code).toBe(0);
  }, 60_000);

  it('details failures only and diagnoses a known mistake', async () => {
    const { code, stdout } = await conformanceCli(
      '--adapter',
      './dist/mutants/index.js',
      '--export',
      'zeroBufferInit',
    );
    expect(code).toBe(1);
    expect(stdout).toMatch(/^ {2}golden +3 passed, 10 failed {2}worst error\/bound [\d.]+e\+5$/m);
    expect(stdout).toMatch(/^ {2}state file +2 passed, {2}0 failed$/m);
    // The first line after the title says where the adapter first left the truth.
    expect(stdout.split('\n')[1]).toBe(
      'first divergence: golden: defaults, step 1, param "w" left its bound: error 6.66e-3, 3.1e+3x the bound 2.15e-6; also out of bound at that step: buffer of "w", param "b", buffer of "b"',
    );
    // 31 failed checks, 10 causes: the resume and bad-input checks that replay a failed trajectory
    // are folded into its entry.
    expect(stdout).toContain(
      'failures (31 checks, 10 distinct failures):\n  FAIL golden: defaults (error 6.66e-3, bound 2.15e-6',
    );
    expect(stdout.match(/^ {2}FAIL /gm)).toHaveLength(10);
    expect(stdout).not.toContain('FAIL state file');
    expect(stdout).not.toContain('FAIL bad input');
    expect(stdout).toContain(
      'diagnosis: this matches the known mistake "zero-buffer-init": momentum buffer initialised to zeros',
    );
    expect(stdout).toContain(
      "(the suite's mutant fails the same 31 checks at the same steps, with the same errors to 3 digits)",
    );
    expect(stdout).toContain('mutant/zero-buffer-init (float32): 20 passed, 31 failed');
    expect(stdout).not.toContain('\u001b[');
  }, 60_000);

  it('fails every mutant with exit code 1 (file path relative to the current directory)', async () => {
    for (const exportName of Object.values(MUTANT_EXPORTS)) {
      const { code, stdout } = await conformanceCli(
        '--adapter',
        './dist/mutants/index.js',
        '--export',
        exportName,
        '--json',
      );
      const [report] = JSON.parse(stdout) as { passed: boolean; results: { passed: boolean }[] }[];
      expect(report!.passed, exportName).toBe(false);
      expect(code, exportName).toBe(1);
    }
  }, 120_000);

  it('checks portability between two adapters', async () => {
    const { code, stdout } = await conformanceCli(
      '--adapter',
      '@accsgd/core/conformance',
      '--options',
      '{"dtype":"float64"}',
      '--portability',
      '@accsgd/core/conformance',
      '--portability-options',
      '{"dtype":"float32"}',
      '--only',
      'long-trajectory',
    );
    expect(stdout).toContain('core/float64 -> core/float32 (float32): 1 passed, 0 failed');
    expect(stdout).toContain('core/float32 -> core/float64 (float32): 1 passed, 0 failed');
    expect(code).toBe(0);
  }, 60_000);

  it('exits 1 with a clear message for a bad export name, bad options or an empty selection', async () => {
    const missing = await conformanceCli('--adapter', '@accsgd/core/conformance', '--export', 'nope');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(
      'has no export "nope" that is a function (functions exported: conformanceAdapter)',
    );
    const badJson = await conformanceCli('--adapter', '@accsgd/core/conformance', '--options', '{dtype');
    expect(badJson.code).not.toBe(0);
    expect(badJson.stderr).toContain('expected a JSON object');
    const badDtype = await conformanceCli(
      '--adapter',
      '@accsgd/core/conformance',
      '--options',
      '{"dtype":"float16"}',
    );
    expect(badDtype.code).toBe(1);
    expect(badDtype.stderr).toContain('dtype must be "float32" or "float64"; got "float16"');
    const nothing = await conformanceCli('--adapter', '@accsgd/core/conformance', '--only', 'no such check');
    expect(nothing.code).toBe(1);
    expect(nothing.stderr).toContain('no check name contains any of ["no such check"]');
  }, 60_000);

  const chromium = findChromium();
  if (!chromium.available && !webgpuRequired())
    console.warn(`\n[accsgd] SKIPPED accsgd-conformance --browser: ${chromium.reason}\n`);
  it.skipIf(!chromium.available && !webgpuRequired())(
    'runs an adapter in headless Chromium with --browser',
    async () => {
      const { code, stdout, stderr } = await conformanceCli(
        '--adapter',
        '@accsgd/core/conformance',
        '--options',
        '{"dtype":"float32"}',
        '--browser',
        '--only',
        'golden: defaults',
        'bad input: gradient of the wrong length',
      );
      expect(stderr).toMatch(/browser: chromium [\d.]+ \//);
      expect(stdout).toContain('core/float32 (float32): 3 passed, 0 failed');
      expect(code).toBe(0);
    },
    120_000,
  );
});
