// Run by step-threads.test.ts in a process of its own (node --expose-gc --import tsx): steps with
// worker threads, then, by mode, disposes of the optimizer ('dispose'), keeps it ('keep') or lets it
// be collected ('collect'). It never calls process.exit: the test sees whether the process ends by
// itself, which it cannot while a worker or another handle keeps it alive.
import { ParameterArena } from '../arena.js';
import { AccSGD } from '../optimizer.js';
import type { StepThreads } from '../threads/step-threads.js';

const mode = process.argv[2];
const n = 600_000;

async function stepOnce(): Promise<{ opt: AccSGD; threads: StepThreads }> {
  const arena = new ParameterArena(3 * n + 16, { shared: true });
  const p = arena.float32(n);
  const g = arena.float32(n);
  g.fill(0.5);
  // And a parameter over a SharedArrayBuffer, whose gradient's buffer is handed to the workers
  // through a channel each: neither may keep the process alive.
  const q = new Float32Array(new SharedArrayBuffer(4 * n));
  const gq = new Float32Array(new SharedArrayBuffer(4 * n)).fill(0.25);
  const opt = new AccSGD([p, q], { lr: 0.1 }, { arena, threads: 3 });
  await opt.threadsReady();
  opt.step([g, gq]);
  const expected = new Float32Array(n);
  new AccSGD([expected], { lr: 0.1 }).step([gq.slice()]);
  if (q.some((v, i) => v !== expected[i]) || q[0] === 0)
    throw new Error(`the shared parameter was not stepped as on one thread: ${q[0]}, not ${expected[0]}`);
  console.log(`stepped with ${opt.threads} threads`);
  return { opt, threads: (opt as unknown as { stepThreads: StepThreads }).stepThreads };
}

if (mode === 'dispose') {
  const { opt, threads } = await stepOnce();
  opt.dispose();
  await threads.exited;
  console.log('workers exited');
  console.log(`threads ${opt.threads}`);
} else if (mode === 'keep') {
  const { opt } = await stepOnce();
  (globalThis as { kept?: unknown }).kept = opt;
} else if (mode === 'collect') {
  // Only the StepThreads is kept: once the optimizer is collected its workers must go too.
  const threads = await (async () => (await stepOnce()).threads)();
  let exited = false;
  void threads.exited.then(() => {
    exited = true;
  });
  const gc = (globalThis as { gc?: () => void }).gc!;
  for (let i = 0; i < 50 && !exited; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  console.log(exited ? 'workers exited' : 'workers still running');
} else {
  throw new Error(`unknown mode ${mode}`);
}
