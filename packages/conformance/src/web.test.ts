import { readFile } from 'node:fs/promises';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import * as webSource from './golden-source.web.js';
import { listGoldenCases, loadGoldenCase, VECTORS_DIR } from './vectors.js';

describe('@accsgd/conformance/web', () => {
  it('bundles the committed golden vectors byte for byte (regenerate with npm run vectors)', async () => {
    const { GOLDEN_CASE_NAMES, GOLDEN_VECTORS_BASE64 } = await import('./golden-vectors.generated.js');
    const committed = await listGoldenCases();
    expect(GOLDEN_CASE_NAMES).toEqual(committed);
    expect(committed).toHaveLength(13);
    for (const name of committed) {
      const onDisk = await readFile(new URL(`${name}.safetensors`, VECTORS_DIR));
      expect(Buffer.from(GOLDEN_VECTORS_BASE64[name]!, 'base64').equals(onDisk), name).toBe(true);
    }
  });

  it('decodes the bundled cases to the same cases as the files', async () => {
    expect(await webSource.listGoldenCases()).toEqual(await listGoldenCases());
    const bundled = await webSource.loadGoldenCase('groups');
    const fromDisk = await loadGoldenCase('groups');
    expect(bundled).toEqual(fromDisk);
    expect(bundled.steps.length).toBeGreaterThan(1);
  });

  it('rejects a case it does not bundle, and a directory, with a message saying what exists', async () => {
    await expect(webSource.loadGoldenCase('nope')).rejects.toThrow(/no bundled golden case "nope".*defaults/);
    await expect(webSource.listGoldenCases(new URL('file:///tmp/'))).rejects.toThrow(/need Node/);
  });

  it('bundles for the browser with no Node module and without the file reader', async () => {
    // What a web app's bundler sees: the package's "browser" field maps golden-source to its web twin.
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'));
    expect(pkg.browser).toEqual({ './dist/golden-source.js': './dist/golden-source.web.js' });
    const result = await build({
      entryPoints: [new URL('./web.ts', import.meta.url).pathname],
      bundle: true,
      write: false,
      metafile: true,
      format: 'esm',
      platform: 'browser',
      logLevel: 'silent',
      plugins: [
        {
          name: 'browser-field-for-sources',
          setup(b) {
            // The field names dist files; from sources the same swap is golden-source -> golden-source.web.
            b.onResolve({ filter: /golden-source\.js$/ }, () => ({
              path: new URL('./golden-source.web.ts', import.meta.url).pathname,
            }));
          },
        },
      ],
    });
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.some((i) => i.startsWith('node:'))).toBe(false);
    expect(inputs.some((i) => i.endsWith('/vectors.ts'))).toBe(false);
    expect(inputs.some((i) => i.endsWith('/golden-vectors.generated.js'))).toBe(true);
    expect(inputs.some((i) => i.endsWith('/runner.ts'))).toBe(true);
  });
});
