/**
 * `npm start` of the evidence package (and the root's): the linear-regression reproduction (our
 * protocol, then the paper's), then the MNIST comparison, each in its own process. `--full` goes to both (the full presets); any other
 * argument is refused here rather than passed to one of them only.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const unknown = args.filter((a) => a !== '--full');
if (unknown.length > 0) {
  process.stderr.write(
    `npm start takes only --full; got ${unknown.join(' ')}. For other options run one report: npm run linear-regression -- ... or npm run mnist -- ...\n`,
  );
  process.exit(2);
}
// The paper's protocol runs after ours: its report puts our slopes (from linear-regression.json) beside its own.
for (const [script, ...extra] of [
  ['./cli.ts'],
  ['./cli.ts', '--protocol', 'paper'],
  ['./mnist/cli.ts'],
] as const) {
  const path = fileURLToPath(new URL(script, import.meta.url));
  const { status } = spawnSync(process.execPath, ['--import', 'tsx', path, ...extra, ...args], {
    stdio: 'inherit',
  });
  if (status !== 0) process.exit(status ?? 1);
}
