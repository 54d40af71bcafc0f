import { execFile } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { codeBlocks, fencedBlocks } from '../../../scripts/readme-blocks.mjs';
import type { ConformanceReport } from './runner.js';

/**
 * The minimal third-party adapter of CONTRIBUTING-ADAPTERS.md (examples/third-party-adapter/):
 * the guide shows exactly these files, and they pass the whole suite, closed loop included,
 * through the CLI as a user runs it and through the vitest helper.
 */
const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const example = join(repoRoot, 'examples/third-party-adapter');
const guidePath = join(repoRoot, 'CONTRIBUTING-ADAPTERS.md');
const cli = fileURLToPath(new URL('../bin/accsgd-conformance.js', import.meta.url));
const FILES = ['package.json', 'conformance.js', 'conformance.test.js'];

describe('CONTRIBUTING-ADAPTERS.md', () => {
  const guide = readFileSync(guidePath, 'utf8');

  for (const file of FILES) {
    it(`shows examples/third-party-adapter/${file} exactly`, () => {
      // The block right after the "#### <file>" heading.
      const heading = guide.split('\n').indexOf(`#### ${file}`);
      expect(heading, `no "#### ${file}" heading`).toBeGreaterThan(0);
      const block = fencedBlocks(guide).find((b) => b.line > heading + 1);
      expect(block?.line).toBe(heading + 3);
      expect(block!.code).toBe(readFileSync(join(example, file), 'utf8'));
    });
  }

  it('has no other JavaScript or TypeScript block that is not marked as an excerpt', () => {
    const shown = FILES.map((f) => readFileSync(join(example, f), 'utf8'));
    const others = codeBlocks(guidePath).filter((b) => !b.excerpt && !shown.includes(b.code));
    expect(others.map((b) => `CONTRIBUTING-ADAPTERS.md:${b.line}`)).toEqual([]);
    // The workflow is an excerpt too.
    const yaml = fencedBlocks(guide).filter((b) => b.lang === 'yaml');
    expect(yaml.length).toBe(1);
    expect(yaml[0]!.code.startsWith('# excerpt: ')).toBe(true);
  });

  it('is linked from the README', () => {
    expect(readFileSync(join(repoRoot, 'README.md'), 'utf8')).toContain('(CONTRIBUTING-ADAPTERS.md)');
  });
});

describe('examples/third-party-adapter', () => {
  it('passes the conformance suite through the CLI, with the closed loop run, not skipped', async () => {
    const { stdout } = await run(process.execPath, [cli, '--adapter', './conformance.js', '--json'], {
      cwd: example,
      maxBuffer: 64 << 20,
    });
    const [report] = JSON.parse(stdout) as ConformanceReport[];
    expect(report!.adapter).toBe('example/float32');
    expect(report!.results.filter((r) => !r.passed).map((r) => `${r.check}: ${r.detail}`)).toEqual([]);
    expect(report!.passed).toBe(true);
    const inUse = report!.results.filter((r) => r.check.startsWith('in use: '));
    expect(inUse.map((r) => r.check)).toEqual([
      'in use: defaults',
      'in use: groups',
      'in use: missing-gradients',
    ]);
    for (const r of inUse) {
      expect(r.skipped, r.detail).toBeFalsy();
      expect(r.maxError).toBeLessThanOrEqual(r.bound!);
    }
    expect(report!.results.filter((r) => r.skipped)).toEqual([]);
  }, 120_000);

  it('passes it through the portability check with the core, both ways', async () => {
    const { stdout } = await run(
      process.execPath,
      [cli, '--adapter', './conformance.js', '--portability', '@accsgd/core/conformance', '--json'],
      { cwd: example, maxBuffer: 64 << 20 },
    );
    const reports = JSON.parse(stdout) as ConformanceReport[];
    expect(reports.map((r) => r.passed)).toEqual([true, true, true]);
  }, 120_000);

  it('passes it through its own conformance.test.js under vitest (describeConformance)', async () => {
    const output = join(tmpdir(), `accsgd-third-party-${process.pid}.json`);
    const vitest = join(repoRoot, 'node_modules/vitest/vitest.mjs');
    await run(process.execPath, [vitest, 'run', '--reporter=json', `--outputFile=${output}`], {
      cwd: example,
      maxBuffer: 64 << 20,
    });
    const text = readFileSync(output, 'utf8');
    rmSync(output, { force: true });
    const report = JSON.parse(text) as {
      numFailedTests: number;
      testResults: { assertionResults: { ancestorTitles: string[]; title: string; status: string }[] }[];
    };
    const tests = report.testResults.flatMap((f) => f.assertionResults);
    expect(report.numFailedTests).toBe(0);
    expect(tests.length).toBeGreaterThan(40);
    expect(tests.every((t) => t.status === 'passed')).toBe(true);
    expect(tests[0]!.ancestorTitles).toEqual(['AccSGD conformance', 'example/float32']);
  }, 180_000);
});
