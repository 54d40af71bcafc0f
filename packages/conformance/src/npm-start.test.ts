import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

/**
 * `npm start`'s first part, scripts/conformance-all.mjs (the suite over every adapter, one table),
 * on the two core adapters in Node (`--only core --where node`): progress on stderr, and colours
 * only on a terminal without NO_COLOR, never a red header over passes.
 */
const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL('../../..', import.meta.url));
const script = 'scripts/conformance-all.mjs';
const ESC = '\u001b[';

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const { NO_COLOR: _, FORCE_COLOR: __, ...rest } = process.env;
  return { ...rest, ...extra };
}

describe('npm start: scripts/conformance-all.mjs', () => {
  it('prints a line on stderr as each adapter starts and ends, and no escape codes into a pipe', async () => {
    const { stdout, stderr } = await run(process.execPath, [script, '--only', 'core', '--where', 'node'], {
      cwd: repoRoot,
      env: env(),
    });
    expect(stderr.trim().split('\n')).toEqual([
      expect.stringMatching(
        /^\[1\/2\] @accsgd\/core\/conformance \{"dtype":"float32"\} \(node\): running \(\d+ s so far\)$/,
      ),
      expect.stringMatching(
        /^\[1\/2\] @accsgd\/core\/conformance \{"dtype":"float32"\} \(node\): 51 passed, 0 failed in [\d.]+ s$/,
      ),
      expect.stringMatching(/^\[2\/2\] @accsgd\/core\/conformance \{"dtype":"float64"\} \(node\): running/),
      expect.stringMatching(/^\[2\/2\] .*: 51 passed, 0 failed in [\d.]+ s$/),
    ]);
    expect(stdout).not.toContain(ESC);
    expect(stdout).toMatch(/│ core\/float64 +│ node +│ 51 +│ 51 +│ 0 +│/);
    expect(stdout.trim().split('\n').at(-1)).toBe(
      '2 adapter configuration(s) conform, 0 skipped, 0 failure(s)',
    );
  }, 120_000);

  it('refuses a selection that matches no adapter', async () => {
    const error = await run(process.execPath, [script, '--only', 'nope'], {
      cwd: repoRoot,
      env: env(),
    }).catch((e: { code: number; stderr: string }) => e);
    expect((error as { code: number }).code).toBe(2);
    expect((error as { stderr: string }).stderr).toContain('no adapter matches --only nope');
  }, 60_000);

  // A terminal, through util-linux's `script` (a pseudo-terminal), to see what a person sees.
  const pty = existsSync('/usr/bin/script');
  if (!pty) console.warn('\n[accsgd] SKIPPED npm start on a terminal: no /usr/bin/script (util-linux)\n');
  it.skipIf(!pty)(
    'colours a terminal without a red header over passes, and none at all with NO_COLOR',
    async () => {
      const onTerminal = async (extra: Record<string, string>) =>
        (
          await run(
            '/usr/bin/script',
            ['-qec', `${process.execPath} ${script} --only core --where node`, '/dev/null'],
            {
              cwd: repoRoot,
              env: env(extra),
            },
          )
        ).stdout;
      const coloured = await onTerminal({});
      expect(coloured).toContain(`${ESC}1madapter${ESC}22m`);
      expect(coloured).not.toContain(`${ESC}31m`);
      expect(coloured).toContain(`${ESC}32m2 adapter configuration(s) conform`);
      const plain = await onTerminal({ NO_COLOR: '1' });
      expect(plain).toContain('2 adapter configuration(s) conform');
      expect(plain).not.toContain(ESC);
    },
    120_000,
  );
});

describe("npm in the repository root: onnxruntime-node's install script denied without an .npmrc", () => {
  it('denies it in allowScripts, and npm prints no config warning on an ordinary command', async () => {
    const manifest = JSON.parse(readFileSync(`${repoRoot}/package.json`, 'utf8')) as {
      allowScripts?: Record<string, boolean>;
    };
    expect(manifest.allowScripts).toEqual({ 'onnxruntime-node': false });
    // `onnxruntime-node-install=skip` in .npmrc made npm 11 print "Unknown project config" on every command.
    expect(existsSync(`${repoRoot}/.npmrc`) ? readFileSync(`${repoRoot}/.npmrc`, 'utf8') : '').not.toContain(
      'onnxruntime-node-install',
    );
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const { stdout, stderr } = await run(npm, ['pkg', 'get', 'name'], { cwd: repoRoot, env: env() });
    expect(stdout.trim()).toBe('"accsgd-monorepo"');
    expect(stderr).not.toContain('Unknown project config');
  }, 60_000);
});
