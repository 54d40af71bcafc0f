import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ConformanceAdapter } from '@accsgd/core';

/** A spec is a file path when it is explicitly relative or absolute, or names an existing file. */
export function isFilePath(spec: string, cwd: string = process.cwd()): boolean {
  return (
    spec.startsWith('./') || spec.startsWith('../') || isAbsolute(spec) || existsSync(resolve(cwd, spec))
  );
}

/**
 * Resolves `spec` (a file path relative to `cwd`, or a package specifier resolved from `cwd`) to
 * an importable URL.
 */
export function resolveAdapterModule(spec: string, cwd: string = process.cwd()): string {
  if (isFilePath(spec, cwd)) return pathToFileURL(resolve(cwd, spec)).href;
  const require = createRequire(pathToFileURL(resolve(cwd, 'noop.js')).href);
  try {
    return pathToFileURL(require.resolve(spec)).href;
  } catch {
    // ESM-only packages have no "require" condition; import.meta.resolve honours "import".
    return import.meta.resolve(spec, pathToFileURL(resolve(cwd, 'noop.js')).href);
  }
}

/** Imports an adapter module and calls its factory with `options`. */
export async function loadAdapter(
  spec: string,
  exportName = 'conformanceAdapter',
  options?: Record<string, unknown>,
  cwd?: string,
): Promise<ConformanceAdapter> {
  const url = resolveAdapterModule(spec, cwd);
  const module = (await import(url)) as Record<string, unknown>;
  const factory = module[exportName];
  if (typeof factory !== 'function') {
    const available = Object.keys(module).filter((k) => typeof module[k] === 'function');
    throw new Error(
      `${spec} has no export "${exportName}" that is a function (functions exported: ${available.join(', ') || 'none'})`,
    );
  }
  const adapter = (await factory(options)) as ConformanceAdapter;
  if (!adapter || typeof adapter.open !== 'function' || typeof adapter.name !== 'string') {
    throw new Error(
      `${spec}#${exportName}() did not return a ConformanceAdapter (needs name, dtype and open())`,
    );
  }
  return adapter;
}
