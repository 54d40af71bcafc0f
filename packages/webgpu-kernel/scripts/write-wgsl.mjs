/**
 * Writes src/kernels/accsgd-update.wgsl, the shipped float32 kernel source, from the generator in
 * dist/ (run `npm run build` first). A test fails while the two differ.
 */
import { writeFileSync } from 'node:fs';
import { accsgdUpdateWGSL } from '../dist/index.js';

const file = new URL('../src/kernels/accsgd-update.wgsl', import.meta.url);
writeFileSync(file, accsgdUpdateWGSL('float32'));
console.log(`wrote ${file.pathname}`);
