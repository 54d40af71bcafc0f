// Runs the code blocks of a README as a user would: each complete JavaScript block is written to a
// .mjs file in a scratch project inside a package (so that bare imports resolve through the
// workspace to the built dist/, as they would from an installed package) and run with node.
// Used by the packages' readme.test.ts files.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** A block that is not meant to run on its own starts with this line: `// excerpt: <why>`. */
export const EXCERPT = /^\/\/ excerpt: \S/;
const JS_LANGUAGES = ['js', 'javascript', 'mjs'];
const TS_LANGUAGES = ['ts', 'typescript'];

/** Every fenced block of a Markdown file, in order: { lang, code, line } (line: 1-based, of the fence). */
export function fencedBlocks(markdown) {
  const blocks = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^(`{3,})\s*([\w-]*)/.exec(lines[i]);
    if (!open) continue;
    const fence = open[1];
    const body = [];
    let j = i + 1;
    while (j < lines.length && !lines[j].startsWith(fence)) body.push(lines[j++]);
    if (j === lines.length) throw new Error(`unclosed code fence at line ${i + 1}`);
    blocks.push({ lang: open[2], code: `${body.join('\n')}\n`, line: i + 1 });
    i = j;
  }
  return blocks;
}

/**
 * The JavaScript and TypeScript blocks of a README file, each { code, line, excerpt }. A TypeScript
 * block must be an excerpt (node runs JavaScript); anything else throws, naming the block.
 */
export function codeBlocks(path) {
  const blocks = fencedBlocks(readFileSync(path, 'utf8'))
    .filter((b) => JS_LANGUAGES.includes(b.lang) || TS_LANGUAGES.includes(b.lang))
    .map((b) => ({ ...b, excerpt: EXCERPT.test(b.code) }));
  for (const b of blocks) {
    if (TS_LANGUAGES.includes(b.lang) && !b.excerpt)
      throw new Error(`${path}:${b.line}: a TypeScript block must start with "// excerpt: ..."`);
  }
  return blocks;
}

/**
 * A scratch project directory inside `packageRoot` (under its node_modules/, which git ignores),
 * with node_modules/@accsgd/<name> links for `links` ({ name: directory }), for files that find
 * packages by path (Python's sys.path). Remove it with removeProject.
 */
export function makeProject(packageRoot, links = {}) {
  const parent = join(packageRoot, 'node_modules', '.readme-tests');
  mkdirSync(parent, { recursive: true });
  const dir = mkdtempSync(join(parent, 'run-'));
  for (const [name, target] of Object.entries(links)) {
    mkdirSync(join(dir, 'node_modules', '@accsgd'), { recursive: true });
    symlinkSync(target, join(dir, 'node_modules', '@accsgd', name), 'dir');
  }
  return dir;
}

export function removeProject(dir) {
  rmSync(dir, { recursive: true, force: true });
}

/** Writes `code` to `<dir>/<file>` and runs it with node there; rejects on a non-zero exit. */
export async function runModule(dir, file, code, { env = process.env, timeout = 120_000 } = {}) {
  writeFileSync(join(dir, file), code);
  return run(process.execPath, [file], dir, env, timeout);
}

/** Runs a program in `dir`; resolves { stdout, stderr }, rejects with both in the message on failure. */
export async function run(command, args, dir, env = process.env, timeout = 120_000) {
  try {
    return await execFileAsync(command, args, { cwd: dir, env, timeout, maxBuffer: 64 << 20 });
  } catch (error) {
    throw new Error(
      `${command} ${args.join(' ')} failed (exit ${error.code}):\n${error.stdout ?? ''}\n${error.stderr ?? ''}`,
    );
  }
}
