// `npm run playground` (root) / `npm run serve`: serves the built page and prints its URL.
// PORT picks the port (default 5178; 0 for any free one).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startStaticServer } from './static-server.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist');
if (!existsSync(join(root, 'index.html'))) {
  console.error(`no build in ${root}: run \`npm run build -w @accsgd/example-playground\` first`);
  process.exit(1);
}
const server = await startStaticServer({ root, port: Number(process.env.PORT ?? 5178) });
console.log(`AccSGD playground: ${server.url}`);
console.log('(Ctrl-C to stop)');
