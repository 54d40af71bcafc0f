// Regenerates the committed golden vectors from the float64 reference: `npm run vectors`.
import { mkdir, writeFile } from 'node:fs/promises';
import { generateGoldenCases } from '../src/golden-cases.js';
import { encodeGoldenCase, VECTORS_DIR } from '../src/vectors.js';

await mkdir(VECTORS_DIR, { recursive: true });
const cases = generateGoldenCases();
for (const c of cases) {
  const bytes = encodeGoldenCase(c);
  await writeFile(new URL(`${c.name}.safetensors`, VECTORS_DIR), bytes);
  console.log(`${c.name}.safetensors  ${bytes.length} bytes  ${c.steps.length} steps`);
}
await writeFile(
  new URL('index.json', VECTORS_DIR),
  `${JSON.stringify({ cases: cases.map((c) => c.name) }, null, 2)}\n`,
);
