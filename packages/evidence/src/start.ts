/**
 * `npm start` of the evidence package (and the root's): every report, each stage in its own
 * process (src/stages.ts). `--full` runs the full presets and regenerates every committed report in
 * reports/; without it, the quick presets write reports/quick/. Any other argument is refused here
 * rather than passed to some stages only.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stageArgv, stageCommand, stages } from './stages.js';

const args = process.argv.slice(2);
const unknown = args.filter((a) => a !== '--full');
if (unknown.length > 0) {
  process.stderr.write(
    `npm start takes only --full; got ${unknown.join(' ')}. For other options run one report: npm run linear-regression -- ... or npm run mnist -- ...\n`,
  );
  process.exit(2);
}
const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { scripts } = JSON.parse(readFileSync(resolve(packageRoot, 'package.json'), 'utf8')) as {
  scripts: Record<string, string>;
};
const plan = stages(args.includes('--full'));
const started = performance.now();
for (const [i, stage] of plan.entries()) {
  process.stdout.write(`\n[stage ${i + 1}/${plan.length}] ${stageCommand(stage)}\n`);
  const t = performance.now();
  const { status } = spawnSync(process.execPath, stageArgv(stage, scripts, packageRoot), {
    stdio: 'inherit',
    cwd: packageRoot,
  });
  if (status !== 0) process.exit(status ?? 1);
  process.stdout.write(
    `[stage ${i + 1}/${plan.length}] done in ${((performance.now() - t) / 1000).toFixed(0)} s (${((performance.now() - started) / 1000).toFixed(0)} s so far)\n`,
  );
}
