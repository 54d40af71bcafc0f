#!/usr/bin/env node
// The published types stand alone: a consumer compiles every public entry point of the four
// packages with skipLibCheck: false, (a) in Node only (lib ES2022, types node, NodeNext), and (b) in
// a browser (lib DOM, bundler resolution). Run from the repository root after `npm run build`; the
// consumers live in a temp dir outside the workspace and see the packages through node_modules.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const root = resolve(import.meta.dirname, '..');
const PACKAGES = ['core', 'conformance', 'tfjs', 'webgpu-kernel', 'onnx-training'];
const packages = PACKAGES.map((dir) => {
  const manifest = JSON.parse(readFileSync(join(root, 'packages', dir, 'package.json'), 'utf8'));
  const entries = Object.entries(manifest.exports)
    .filter(([, target]) => typeof target === 'object' && target.types)
    .map(([subpath]) => `${manifest.name}${subpath === '.' ? '' : subpath.slice(1)}`);
  return { name: manifest.name, entries };
});

const CONSUMERS = {
  node: { module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2022'], types: ['node'] },
  browser: { module: 'ESNext', moduleResolution: 'bundler', lib: ['ES2022', 'DOM'], types: [] },
};
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const work = mkdtempSync(join(tmpdir(), 'accsgd-types-'));
const run = promisify(execFile);

/**
 * One program per package and consumer, so that one package's dependencies cannot supply types
 * another package's declarations lack. Errors in our packages' declarations fail; errors inside
 * third-party declarations (tfjs-core's need the DOM lib and `Long` even in Node) are upstream
 * problems: counted and shown, not failed on.
 */
async function check(pkg, consumer, options) {
  const dir = join(work, `${consumer}-${pkg.name.replace('@accsgd/', '')}`);
  mkdirSync(dir);
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `consumer-${consumer}`, type: 'module' }));
  const source = pkg.entries
    .map((specifier, i) => `import * as m${i} from '${specifier}';\nexport const e${i} = Object.keys(m${i});`)
    .join('\n');
  writeFileSync(join(dir, 'consumer.ts'), `${source}\n`);
  const compilerOptions = {
    ...options,
    target: 'ES2022',
    strict: true,
    noEmit: true,
    skipLibCheck: false,
    isolatedModules: true,
  };
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: ['consumer.ts'] }));
  let output = '';
  try {
    await run(process.execPath, [tsc, '-p', dir, '--pretty', 'false'], { cwd: dir, encoding: 'utf8' });
  } catch (error) {
    output = String(error.stdout ?? error.message);
  }
  const errors = output.split('\n').filter((line) => /error TS\d+/.test(line));
  const ours = errors.filter(
    (line) =>
      !line.includes('node_modules/') || /node_modules\/@accsgd\//.test(line) || line.includes('/packages/'),
  );
  const upstream = errors.length - ours.length;
  const label = `${consumer} consumer (${options.lib.join(', ')}; ${options.moduleResolution}) of ${pkg.entries.join(', ')}`;
  if (ours.length) {
    console.error(`types: FAILED ${label}:\n${ours.map((l) => `  ${l.replaceAll(root, '.')}`).join('\n')}`);
  } else {
    console.log(
      `types: ok ${label}${upstream ? ` (${upstream} errors inside third-party declarations, not ours)` : ''}`,
    );
  }
  return ours.length === 0;
}

let ok = true;
try {
  const results = await Promise.all(
    packages.flatMap((pkg) =>
      Object.entries(CONSUMERS).map(([consumer, options]) => check(pkg, consumer, options)),
    ),
  );
  ok = results.every(Boolean);
} finally {
  rmSync(work, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
