// Part of `npm run build`: copies the generated vectors module (JavaScript and its declarations)
// into dist/, which tsc does not do for a .js file.
import { copyFileSync, mkdirSync } from 'node:fs';

mkdirSync(new URL('../dist/', import.meta.url), { recursive: true });
for (const file of ['golden-vectors.generated.js', 'golden-vectors.generated.d.ts'])
  copyFileSync(new URL(`../src/${file}`, import.meta.url), new URL(`../dist/${file}`, import.meta.url));
