// One AccSGD step over 16,777,216 float32 parameters on the CPU, beside the memory floor measured
// in the same process: 2.5x a Float32Array.prototype.set copy of the same length (a step moves 20
// bytes per element, a copy 8). Prints ratios; never asserts on time.
import { AccSGD, fusedCoefficients, fusedUpdate, ParameterArena, resolveHyperparams } from '../dist/index.js';

const N = 16_777_216;
const REPEATS = Number(process.env.ACCSGD_BENCH_REPEATS ?? 15);

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function time(fn) {
  fn(); // warm-up: JIT and first-touch page faults
  const samples = [];
  for (let r = 0; r < REPEATS; r++) {
    const t0 = performance.now();
    fn();
    samples.push(performance.now() - t0);
  }
  return median(samples);
}

function filled(n, seed) {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(i * 0.001 + seed);
  return a;
}

const src = filled(N, 1);
const dst = new Float32Array(N);
const copyMs = time(() => dst.set(src));
const floorMs = 2.5 * copyMs;

const rows = [];
function row(label, ms) {
  rows.push({ label, ms, ratio: ms / floorMs });
}

for (const [label, tensors] of [
  ['1 tensor of 16,777,216', 1],
  ['1024 tensors of 16,384', 1024],
]) {
  const size = N / tensors;
  const params = Array.from({ length: tensors }, (_, t) => filled(size, t));
  const grads = Array.from({ length: tensors }, (_, t) => filled(size, t + 0.5).map((x) => x * 1e-3));
  for (const nonFinite of ['error', 'allow']) {
    const opt = new AccSGD(params, { lr: 1e-3 }, { nonFinite });
    opt.step(grads); // allocates the buffers
    row(
      `core AccSGD.step, ${label}, nonFinite '${nonFinite}'`,
      time(() => opt.step(grads)),
    );
  }
}

// Parameters, gradients and buffers in one ParameterArena: the SIMD kernel runs in place.
for (const nonFinite of ['error', 'allow']) {
  const arena = new ParameterArena(3 * N);
  const p = arena.float32(N);
  p.set(filled(N, 1));
  const g = arena.float32(N);
  g.set(filled(N, 1.5).map((x) => x * 1e-3));
  const opt = new AccSGD([p], { lr: 1e-3 }, { nonFinite, arena });
  opt.step([g]);
  row(
    `core AccSGD.step, 1 tensor in a ParameterArena, nonFinite '${nonFinite}'`,
    time(() => opt.step([g])),
  );
}

// The same steps with `threads: THREADS` (a shared arena; ordinary arrays streamed through the
// optimizer's own shared memory). Printed beside the one-thread floor, outside the target.
const THREADS = Number(process.env.ACCSGD_BENCH_THREADS ?? 2);
for (const inArena of [true, false]) {
  for (const nonFinite of ['error', 'allow']) {
    const arena = inArena ? new ParameterArena(3 * N, { shared: true }) : undefined;
    const p = arena ? arena.float32(N) : new Float32Array(N);
    p.set(filled(N, 1));
    const g = arena ? arena.float32(N) : new Float32Array(N);
    g.set(filled(N, 1.5).map((x) => x * 1e-3));
    const opt = new AccSGD([p], { lr: 1e-3 }, { nonFinite, arena, threads: THREADS });
    await opt.threadsReady();
    opt.step([g]);
    row(
      `threads: ${opt.threads}, 1 tensor ${inArena ? 'in a shared ParameterArena' : 'of Float32Array'}, nonFinite '${nonFinite}'`,
      time(() => opt.step([g])),
    );
    opt.dispose();
  }
}

// Just the fused kernel, and the reference's seven passes, for scale.
{
  const p = filled(N, 2);
  const g = filled(N, 3);
  const b = filled(N, 4);
  const c = fusedCoefficients(resolveHyperparams({ lr: 1e-3 }));
  row(
    'fusedUpdate kernel alone, 1 tensor',
    time(() => fusedUpdate(p, g, b, c, false)),
  );
  row(
    "seven separate passes (the reference's shape)",
    time(() => {
      for (let i = 0; i < N; i++) b[i] *= 203.08;
      for (let i = 0; i < N; i++) b[i] += -142.8 * g[i];
      for (let i = 0; i < N; i++) b[i] += p[i];
      for (let i = 0; i < N; i++) b[i] *= 0.0049;
      for (let i = 0; i < N; i++) p[i] += -0.001 * g[i];
      for (let i = 0; i < N; i++) p[i] *= 0.993;
      for (let i = 0; i < N; i++) p[i] += 0.007 * b[i];
    }),
  );
}

console.log(
  `\n@accsgd/core CPU benchmark: ${N.toLocaleString('en-US')} float32 parameters, median of ${REPEATS}`,
);
console.log(
  `Float32Array.set copy: ${copyMs.toFixed(1)} ms -> memory floor (2.5x copy): ${floorMs.toFixed(1)} ms\n`,
);
// The target applies to the optimizer's step (the rows that start with "core AccSGD.step"); the
// kernel alone and the seven passes are printed for scale only.
const TARGET = 1.2;
const verdict = (r) => (r.label.startsWith('core AccSGD.step') ? (r.ratio <= TARGET ? 'met' : 'missed') : '');
const width = Math.max(...rows.map((r) => r.label.length));
console.log(
  `${'case'.padEnd(width)}  ${'ms'.padStart(8)}  ${'x floor'.padStart(8)}  target <= ${TARGET.toFixed(2)}x`,
);
for (const r of rows)
  console.log(
    `${r.label.padEnd(width)}  ${r.ms.toFixed(1).padStart(8)}  ${r.ratio.toFixed(2).padStart(8)}  ${verdict(r)}`.trimEnd(),
  );
const stepRows = rows.filter((r) => r.label.startsWith('core AccSGD.step'));
const missed = stepRows.filter((r) => verdict(r) === 'missed').length;
console.log(
  `\ntarget: core float32 step <= ${TARGET.toFixed(2)}x floor: ${missed === 0 ? 'met' : 'missed'} (${stepRows.length - missed} of ${stepRows.length} cases met)`,
);
