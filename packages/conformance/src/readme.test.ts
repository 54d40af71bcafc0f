import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  codeBlocks,
  fencedBlocks,
  makeProject,
  removeProject,
  run,
  runModule,
} from '../../../scripts/readme-blocks.mjs';
import { findPyTorch, pytorchRequired } from './environment.js';
import { conformanceChecks } from './runner.js';
import { listGoldenCases } from './vectors.js';

/**
 * The README's blocks run as written, from a scratch project inside this package (so that
 * '@accsgd/conformance' and '@accsgd/core' are the built dist/, as in an installed package): the
 * vitest block with vitest, in a child process. Also: every block of the repository's README is
 * either an excerpt or run by the readme test of the package it imports, and the PyTorch block of
 * @accsgd/core's README runs on real PyTorch after that README's first block wrote its state file
 * (skipped with a notice without a Python with torch, failed when ACCSGD_REQUIRE_PYTORCH=1).
 */
const packageRoot = fileURLToPath(new URL('..', import.meta.url));
const coreRoot = fileURLToPath(new URL('../../core', import.meta.url));
const readme = join(packageRoot, 'README.md');
const coreReadme = join(coreRoot, 'README.md');
const rootReadme = fileURLToPath(new URL('../../../README.md', import.meta.url));
const vitestBin = join(dirname(createRequire(import.meta.url).resolve('vitest/package.json')), 'vitest.mjs');

interface VitestJson {
  numPassedTests: number;
  numFailedTests: number;
  testResults: { assertionResults: { ancestorTitles: string[]; title: string; status: string }[] }[];
}

/** Runs one test file with vitest in `dir` and returns its JSON report. */
async function vitestRun(dir: string, file: string): Promise<VitestJson> {
  await run(
    process.execPath,
    [vitestBin, 'run', file, '--reporter=json', `--outputFile=${join(dir, 'vitest.json')}`],
    dir,
    process.env,
    180_000,
  );
  return JSON.parse(readFileSync(join(dir, 'vitest.json'), 'utf8')) as VitestJson;
}

describe('README.md of @accsgd/conformance', () => {
  const runnable = codeBlocks(readme).filter((b) => !b.excerpt);
  const project = makeProject(packageRoot);
  afterAll(() => removeProject(project));

  it('has only runnable blocks and excerpts, and this test knows every runnable one', () => {
    expect(runnable.map((b) => b.code.split('\n')[0])).toEqual(['// conformance.test.js']);
  });

  it('conformance.test.js passes under vitest, with distinct test names for its two adapters', async () => {
    writeFileSync(join(project, 'conformance.test.js'), runnable[0]!.code);
    const report = await vitestRun(project, 'conformance.test.js');
    const tests = report.testResults.flatMap((f) => f.assertionResults);
    const names = tests.map((t) => [...t.ancestorTitles, t.title].join(' > '));
    expect(report.numFailedTests).toBe(0);
    expect(tests.every((t) => t.status === 'passed')).toBe(true);
    expect(tests.length).toBeGreaterThan(80);
    expect(new Set(names).size).toBe(names.length);
    expect(names).toContain('AccSGD conformance > core/float32 > golden: defaults');
    expect(names).toContain('CPU optimizer, float64 > golden: defaults');
    expect(names).toContain('AccSGD conformance > core/float32 > in use: defaults');
  }, 200_000);
});

describe('README.md of @accsgd/conformance: the counts it states', () => {
  const text = readFileSync(readme, 'utf8').replace(/\s+/g, ' ');

  it('states the number of golden trajectories that the vectors hold', async () => {
    const cases = await listGoldenCases();
    expect(text).toContain(`**Golden vectors** (\`vectors/*.safetensors\`): ${cases.length} trajectories`);
  });

  it('says the number of checks is computed, and quotes the count conformanceChecks() gives', async () => {
    expect(text).not.toMatch(/runs \d+ checks/);
    expect(text).toContain('runs every check of `conformanceChecks()`, a number computed');
    expect(text).toContain(`\`${(await conformanceChecks()).length} passed, 0 failed\` with this release`);
  });

  it('says to install it as a dev dependency', () => {
    expect(text).toContain('`npm install --save-dev @accsgd/conformance`');
  });
});

describe('the READMEs on `lr`', () => {
  // Issue 18: "set lr as for SGD" left open whether a momentum optimizer's lr is meant; with
  // momentum 0.9 that lr takes steps about 10 times as long.
  it('never say "as for SGD" without saying, close by, what a momentum lr is against it', () => {
    const repo = fileURLToPath(new URL('../../..', import.meta.url));
    const readmes = [
      join(repo, 'README.md'),
      ...['packages', 'examples'].flatMap((folder) =>
        readdirSync(join(repo, folder))
          .map((name) => join(repo, folder, name, 'README.md'))
          .filter((file) => existsSync(file)),
      ),
    ];
    const unexplained: string[] = [];
    for (const file of readmes) {
      const text = readFileSync(file, 'utf8').replace(/\s+/g, ' ');
      for (const m of text.matchAll(/as for (plain )?SGD/gi)) {
        const around = text.slice(m.index, m.index + 500);
        if (!/1 - (0\.9|momentum)/.test(around))
          unexplained.push(`${file}: ...${text.slice(m.index, m.index + 80)}...`);
      }
    }
    expect(readmes.length).toBeGreaterThan(5);
    expect(unexplained).toEqual([]);
  });
});

describe("README.md of the repository: every JavaScript block is an excerpt or some package's", () => {
  const owners = ['core', 'conformance', 'tfjs', 'webgpu-kernel'];
  const blocks = codeBlocks(rootReadme);
  const owner = (code: string) => /from '@accsgd\/([\w-]+)/.exec(code)?.[1];

  it('names, in each runnable block, a package whose readme.test.ts runs it', () => {
    const orphans = blocks.filter((b) => !b.excerpt && !owners.includes(owner(b.code) ?? ''));
    expect(orphans.map((b) => `README.md:${b.line}`)).toEqual([]);
    expect(blocks.filter((b) => b.excerpt).length).toBeGreaterThan(0);
  });

  it('runs the blocks that use @accsgd/conformance', async () => {
    const project = makeProject(packageRoot);
    try {
      for (const [i, b] of blocks.filter((b) => !b.excerpt && owner(b.code) === 'conformance').entries())
        await runModule(project, `root-readme-${i}.mjs`, b.code);
    } finally {
      removeProject(project);
    }
  });
});

const torch = findPyTorch();
if (!torch.available) {
  if (pytorchRequired()) throw new Error(`ACCSGD_REQUIRE_PYTORCH=1 but ${torch.reason}`);
  console.warn(`[conformance] SKIPPED the PyTorch block of @accsgd/core's README: ${torch.reason}`);
}

describe.skipIf(!torch.available)(
  `README.md of @accsgd/core: the PyTorch block${torch.available ? '' : ' (skipped: no Python with torch)'}`,
  () => {
    it('loads the state file the JavaScript example wrote into nn.Linear, transposing the kernel', async () => {
      // A project as a user has it: node_modules/@accsgd/core, which the block puts on sys.path.
      const project = makeProject(packageRoot, { core: coreRoot });
      try {
        const [first] = codeBlocks(coreReadme).filter((b) => !b.excerpt);
        const js = await runModule(project, 'core-readme.mjs', first!.code);
        const python = fencedBlocks(readFileSync(coreReadme, 'utf8')).filter((b) => b.lang === 'python');
        expect(python.length).toBe(1);
        writeFileSync(join(project, 'readme.py'), python[0]!.code);
        const py = await run(torch.available ? torch.python : 'python3', ['-B', 'readme.py'], project);
        // weight[3][1] in PyTorch is kernel[1][3] in JavaScript: the same buffer value.
        const fromJs = Number(js.stdout.trim().split('\n')[0]);
        expect(Number(py.stdout.trim())).toBe(fromJs);
        expect(fromJs).not.toBe(0);
        expect(readFileSync(join(project, 'torch-state.safetensors')).length).toBeGreaterThan(7850 * 4);
      } finally {
        removeProject(project);
      }
    }, 120_000);
  },
);
