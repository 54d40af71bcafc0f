import { curveAdvice, settingsAdvice } from './advice.js';
import {
  BACKEND_LABELS,
  BACKEND_NAMES,
  type BackendInfo,
  type BackendName,
  detectBackends,
  wasmThreads,
} from './backends.js';
import { drawBoundary } from './boundary.js';
import { CurveChart } from './chart.js';
import { decodeCheckpoint, encodeCheckpoint } from './checkpoint.js';
import type { AdapterName, ConformanceSummary } from './conformance.js';
import { TASKS, type TaskName } from './data.js';
import { setupPaperPanel } from './paper.js';
import { evaluateRun, type Run, startRun, stepRun, stepsPerSecond } from './runs.js';
import { measureThroughput } from './throughput.js';
import {
  defaultHyper,
  type Hyper,
  OPTIMIZERS,
  type OptimizerName,
  UnsupportedCombination,
} from './trainers/types.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

const ui = {
  task: $<HTMLSelectElement>('task'),
  backend: $<HTMLSelectElement>('backend'),
  backendList: $<HTMLUListElement>('backend-list'),
  optimizers: $<HTMLFieldSetElement>('optimizers'),
  kappa: $<HTMLInputElement>('kappa'),
  xi: $<HTMLInputElement>('xi'),
  smallConst: $<HTMLInputElement>('small-const'),
  settingsAdvice: $<HTMLUListElement>('settings-advice'),
  steps: $<HTMLInputElement>('steps'),
  seed: $<HTMLInputElement>('seed'),
  form: $<HTMLFormElement>('train-form'),
  train: $<HTMLButtonElement>('train'),
  stop: $<HTMLButtonElement>('stop'),
  status: $<HTMLParagraphElement>('status'),
  runs: $<HTMLTableElement>('runs'),
  curveAdvice: $<HTMLUListElement>('curve-advice'),
  boundaryFigure: $<HTMLElement>('boundary-figure'),
  boundary: $<HTMLCanvasElement>('boundary'),
  boundaryRun: $<HTMLSpanElement>('boundary-run'),
  save: $<HTMLButtonElement>('save'),
  import: $<HTMLInputElement>('import'),
  continueSteps: $<HTMLInputElement>('continue-steps'),
  continue: $<HTMLButtonElement>('continue'),
  checkpointStatus: $<HTMLParagraphElement>('checkpoint-status'),
  conformanceAdapter: $<HTMLSelectElement>('conformance-adapter'),
  conformanceRun: $<HTMLButtonElement>('conformance-run'),
  conformanceAll: $<HTMLButtonElement>('conformance-all'),
  conformanceSummary: $<HTMLTableElement>('conformance-summary'),
  conformanceChecks: $<HTMLTableElement>('conformance-checks'),
  throughputRun: $<HTMLButtonElement>('throughput-run'),
  throughput: $<HTMLTableElement>('throughput'),
};

const lossChart = new CurveChart($('loss-chart'), 'Training loss (log scale)', 'loss', true);
const accuracyChart = new CurveChart($('accuracy-chart'), 'Test accuracy', 'accuracy');

const backendsReady = detectBackends();
/** Runs of the current task, by label; the last one trained is `current`. */
const runs = new Map<string, Run>();
let runsTask: TaskName | undefined;
let current: Run | undefined;
let stopRequested = false;

/** One operation at a time: tfjs has one global backend, and the GPU one queue. */
let queue: Promise<unknown> = Promise.resolve();
function exclusive<T>(work: () => Promise<T>): Promise<T> {
  const result = queue.then(work, work);
  queue = result.catch(() => undefined);
  return result;
}

function setStatus(el: HTMLElement, text: string, kind: 'info' | 'error' = 'info'): void {
  el.textContent = text;
  el.dataset.kind = kind;
}

function setBusy(busy: boolean): void {
  for (const b of [ui.train, ui.save, ui.continue, ui.conformanceRun, ui.conformanceAll, ui.throughputRun])
    b.disabled = busy;
  ui.import.disabled = busy;
  ui.stop.disabled = !busy;
  document.body.dataset.busy = String(busy);
}

function number(input: HTMLInputElement, what: string): number {
  const value = Number(input.value);
  if (input.value.trim() === '' || !Number.isFinite(value))
    throw new Error(`${what}: "${input.value}" is not a number`);
  return value;
}

function hyperFor(task: TaskName, optimizer: OptimizerName): Hyper {
  const base = defaultHyper(task, optimizer);
  const lrInput = document.getElementById(`lr-${optimizer}`) as HTMLInputElement | null;
  return {
    ...base,
    lr: lrInput ? number(lrInput, `${optimizer} learning rate`) : base.lr,
    kappa: number(ui.kappa, 'kappa'),
    xi: number(ui.xi, 'xi'),
    smallConst: number(ui.smallConst, 'smallConst'),
  };
}

function buildOptimizerControls(task: TaskName): void {
  const checked = new Set(
    [...ui.optimizers.querySelectorAll<HTMLInputElement>('input[type=checkbox]:checked')].map((c) => c.value),
  );
  if (checked.size === 0) checked.add('accsgd').add('momentum');
  ui.optimizers.querySelectorAll('.optimizer').forEach((el) => el.remove());
  for (const name of OPTIMIZERS) {
    const span = document.createElement('span');
    span.className = 'optimizer';
    span.innerHTML = `<input type="checkbox" id="use-${name}" value="${name}" ${checked.has(name) ? 'checked' : ''} />
      <label for="use-${name}">${name === 'accsgd' ? 'AccSGD' : name}</label>
      <label for="lr-${name}" class="muted">lr</label>
      <input id="lr-${name}" type="number" step="any" min="0" value="${defaultHyper(task, name).lr}" />`;
    ui.optimizers.append(span);
  }
}

function renderBackends(list: BackendInfo[]): void {
  ui.backend.innerHTML = '';
  ui.backendList.innerHTML = '';
  for (const b of list) {
    const option = document.createElement('option');
    option.value = b.name;
    option.textContent = b.available ? BACKEND_LABELS[b.name] : `${BACKEND_LABELS[b.name]} (unavailable)`;
    option.disabled = !b.available;
    ui.backend.append(option);
    const li = document.createElement('li');
    li.className = b.available ? '' : 'unavailable';
    li.textContent = `${b.name}: ${b.available ? 'available' : `unavailable, ${b.reason}`}`;
    ui.backendList.append(li);
  }
  const firstAvailable = list.find((b) => b.available);
  if (firstAvailable)
    ui.backend.value = list.find((b) => b.name === 'tfjs-webgl' && b.available)?.name ?? firstAvailable.name;
  ui.conformanceAdapter.innerHTML = '';
  for (const name of ['core', ...list.filter((b) => b.available).map((b) => b.name)]) {
    const option = document.createElement('option');
    option.value = name;
    option.textContent = name;
    ui.conformanceAdapter.append(option);
  }
}

function renderSettingsAdvice(): void {
  ui.settingsAdvice.innerHTML = '';
  try {
    const task = ui.task.value as TaskName;
    const messages = settingsAdvice(hyperFor(task, 'accsgd'), task === 'toy' ? 32 : 64);
    for (const m of messages.length > 0
      ? messages
      : ['These settings are inside the ranges the authors advise.']) {
      const li = document.createElement('li');
      li.textContent = m;
      ui.settingsAdvice.append(li);
    }
  } catch (error) {
    const li = document.createElement('li');
    li.textContent = (error as Error).message;
    ui.settingsAdvice.append(li);
  }
}

let drawPending = false;
function redraw(): void {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    const list = [...runs.values()];
    lossChart.update(list.map((r) => ({ label: r.label, points: r.losses })));
    accuracyChart.update(list.map((r) => ({ label: r.label, points: r.accuracies })));
    const body = ui.runs.tBodies[0]!;
    body.innerHTML = '';
    ui.curveAdvice.innerHTML = '';
    for (const r of list) {
      const tr = body.insertRow();
      const sps = stepsPerSecond(r);
      for (const text of [
        r.label,
        String(r.step),
        r.losses.at(-1)?.y.toFixed(4) ?? '',
        r.accuracies.at(-1) ? `${(r.accuracies.at(-1)!.y * 100).toFixed(1)}%` : '',
        sps === null ? '' : sps.toFixed(1),
      ])
        tr.insertCell().textContent = text;
      const advice = curveAdvice(r.losses.map((p) => p.y));
      if (advice) {
        const li = document.createElement('li');
        li.textContent = `${r.label}: ${advice}`;
        ui.curveAdvice.append(li);
      }
    }
    document.body.dataset.drawn = String(list.reduce((n, r) => n + r.losses.length, 0));
  });
}

async function resetRunsFor(task: TaskName): Promise<void> {
  if (runsTask === task) return;
  for (const r of runs.values()) await r.trainer.dispose();
  runs.clear();
  current = undefined;
  runsTask = task;
  lossChart.clear();
  accuracyChart.clear();
  ui.boundaryFigure.hidden = task !== 'toy';
}

async function replaceRun(run: Run): Promise<void> {
  const old = runs.get(run.label);
  if (old) await old.trainer.dispose();
  runs.set(run.label, run);
  current = run;
}

async function checkBackend(backend: BackendName): Promise<void> {
  const list = await backendsReady;
  const info = list.find((b) => b.name === backend);
  if (!info) throw new Error(`unknown backend "${backend}"; the backends are ${BACKEND_NAMES.join(', ')}`);
  if (!info.available) throw new Error(`backend ${backend} is not available in this browser: ${info.reason}`);
}

const evaluateEvery = (run: Run) => (run.task === 'toy' ? 10 : 20);

async function afterStep(run: Run, last: boolean): Promise<void> {
  if (last || run.step % evaluateEvery(run) === 0) {
    await evaluateRun(run);
    if (run.task === 'toy') {
      await drawBoundary(ui.boundary, run);
      ui.boundaryRun.textContent = run.label;
    }
  }
  redraw();
}

/** Steps several runs in turn (side by side), `steps` each. */
async function advance(list: Run[], steps: number, label: string): Promise<void> {
  stopRequested = false;
  for (let s = 0; s < steps && !stopRequested; s++) {
    for (const run of list) {
      await stepRun(run);
      await afterStep(run, s === steps - 1);
    }
    if (s % 5 === 0) setStatus(ui.status, `${label}: step ${s + 1} of ${steps}`);
  }
  if (stopRequested) for (const run of list) await afterStep(run, true);
}

interface TrainRequest {
  task: TaskName;
  backend: BackendName;
  optimizer: OptimizerName;
  steps: number;
  seed?: number;
}

function checkRequest(request: TrainRequest): void {
  if (!TASKS.includes(request.task))
    throw new Error(`task "${request.task}" is not one of ${TASKS.join(', ')}`);
  if (!OPTIMIZERS.includes(request.optimizer))
    throw new Error(`optimizer "${request.optimizer}" is not one of ${OPTIMIZERS.join(', ')}`);
  if (!Number.isSafeInteger(request.steps) || request.steps < 1)
    throw new Error(`steps ${request.steps}: expected a positive integer`);
}

async function trainOne(request: TrainRequest) {
  checkRequest(request);
  await checkBackend(request.backend);
  // Show what the API trains: the task's controls (with its default learning rates) and the backend.
  if (ui.task.value !== request.task) {
    ui.task.value = request.task;
    buildOptimizerControls(request.task);
    renderSettingsAdvice();
  }
  ui.backend.value = request.backend;
  await resetRunsFor(request.task);
  setBusy(true);
  try {
    const run = await startRun({
      task: request.task,
      backend: request.backend,
      optimizer: request.optimizer,
      seed: request.seed ?? 1,
      hyper: hyperFor(request.task, request.optimizer),
    });
    await replaceRun(run);
    await advance([run], request.steps, run.label);
    setStatus(ui.status, `${run.label}: ${run.step} steps, loss ${run.losses.at(-1)?.y.toFixed(4)}`);
    return {
      losses: run.losses.map((p) => p.y),
      accuracy: run.accuracies.at(-1)?.y,
      backend: run.trainer.backend,
    };
  } finally {
    setBusy(false);
  }
}

async function trainFromForm(): Promise<void> {
  const task = ui.task.value as TaskName;
  const backend = ui.backend.value as BackendName;
  const steps = number(ui.steps, 'steps');
  const seed = number(ui.seed, 'seed');
  const chosen = [...ui.optimizers.querySelectorAll<HTMLInputElement>('input[type=checkbox]:checked')].map(
    (c) => c.value as OptimizerName,
  );
  if (chosen.length === 0) throw new Error('pick at least one optimizer');
  await checkBackend(backend);
  await resetRunsFor(task);
  setBusy(true);
  try {
    const started: Run[] = [];
    const skipped: string[] = [];
    for (const optimizer of chosen) {
      try {
        const run = await startRun({ task, backend, optimizer, seed, hyper: hyperFor(task, optimizer) });
        await replaceRun(run);
        started.push(run);
      } catch (error) {
        if (!(error instanceof UnsupportedCombination)) throw error;
        skipped.push(error.message);
      }
    }
    if (skipped.length > 0) setStatus(ui.checkpointStatus, skipped.join(' '));
    await advance(started, steps, `${task} on ${backend}`);
    setStatus(
      ui.status,
      `${task} on ${backend}: ${started.map((r) => `${r.optimizer} ${r.losses.at(-1)?.y.toFixed(4)}`).join(', ')}${skipped.length ? ` (skipped: ${skipped.join(' ')})` : ''}`,
    );
  } finally {
    setBusy(false);
  }
}

let lastSaved: Uint8Array | undefined;
async function saveCheckpoint(): Promise<Uint8Array> {
  const run = current;
  if (!run) throw new Error('nothing to save: train first');
  if (!run.trainer.checkpoint)
    throw new Error(
      `${run.label} has no state file to save: save and resume is for AccSGD (tfjs's own optimizers export no state file)`,
    );
  const { params, state } = await run.trainer.checkpoint();
  const bytes = encodeCheckpoint({
    task: run.task,
    backend: run.backend,
    seed: run.seed,
    step: run.step,
    params,
    state,
  });
  lastSaved = bytes;
  const url = URL.createObjectURL(new Blob([bytes as BlobPart], { type: 'application/octet-stream' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = `accsgd-${run.task}-${run.backend}-step${run.step}.safetensors`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  setStatus(ui.checkpointStatus, `saved ${run.label} at step ${run.step} (${bytes.length} bytes)`);
  return bytes;
}

/** Builds a fresh AccSGD run from the file; on any error nothing changes (the runs stay as they were). */
async function importCheckpoint(bytes: Uint8Array): Promise<{ step: number; backend: BackendName }> {
  const saved = decodeCheckpoint(bytes);
  const backend = (await backendsReady).some((b) => b.name === saved.backend && b.available)
    ? saved.backend
    : (ui.backend.value as BackendName);
  await checkBackend(backend);
  const run = await startRun({
    task: saved.task,
    backend,
    optimizer: 'accsgd',
    seed: saved.seed,
    hyper: hyperFor(saved.task, 'accsgd'),
  });
  try {
    if (!run.trainer.restore) throw new Error(`${backend} cannot import an AccSGD state file`);
    await run.trainer.restore(saved);
  } catch (error) {
    await run.trainer.dispose();
    throw error;
  }
  run.step = saved.step;
  await resetRunsFor(saved.task);
  ui.task.value = saved.task;
  await replaceRun(run);
  redraw();
  setStatus(ui.checkpointStatus, `imported: ${run.label} at step ${run.step}; Continue trains from there`);
  return { step: run.step, backend };
}

async function continueCurrent(steps: number): Promise<{ losses: number[]; step: number }> {
  const run = current;
  if (!run) throw new Error('nothing to continue: train or import first');
  setBusy(true);
  try {
    const before = run.losses.length;
    await advance([run], steps, `${run.label} continued`);
    setStatus(ui.status, `${run.label}: step ${run.step}, loss ${run.losses.at(-1)?.y.toFixed(4)}`);
    return { losses: run.losses.slice(before).map((p) => p.y), step: run.step };
  } finally {
    setBusy(false);
  }
}

async function conformance(
  adapter: AdapterName,
): Promise<{ passed: number; total: number; diagnosis?: string }> {
  const list = await backendsReady;
  if (adapter !== 'core') await checkBackend(adapter);
  else if (!list) throw new Error('backends not detected');
  setBusy(true);
  try {
    setStatus(ui.status, `conformance on ${adapter}: starting`);
    // Loaded on first use: the runner carries the golden vectors (about 4.7 MB).
    const { runAdapterConformance } = await import('./conformance.js');
    const summary: ConformanceSummary = await runAdapterConformance(adapter, (done) =>
      setStatus(ui.status, `conformance on ${adapter}: ${done} checks done`),
    );
    const tr = ui.conformanceSummary.tBodies[0]!.insertRow();
    tr.dataset.adapter = adapter;
    tr.insertCell().textContent = adapter;
    const passed = tr.insertCell();
    passed.textContent = `${summary.passed}/${summary.total}`;
    passed.className = summary.passed === summary.total ? 'pass' : 'fail';
    tr.insertCell().textContent =
      summary.diagnosis ?? (summary.passed === summary.total ? '' : 'no known mistake matches');
    const body = ui.conformanceChecks.tBodies[0]!;
    body.innerHTML = '';
    for (const r of summary.report.results) {
      const row = body.insertRow();
      row.insertCell().textContent = r.check;
      const cell = row.insertCell();
      cell.textContent = r.skipped ? 'skipped' : r.passed ? 'pass' : 'FAIL';
      cell.className = r.passed ? 'pass' : 'fail';
      row.insertCell().textContent =
        r.maxError === undefined ? '' : `${r.maxError.toExponential(2)} / ${r.bound?.toExponential(2) ?? ''}`;
      row.insertCell().textContent = r.detail;
    }
    setStatus(ui.status, `conformance on ${adapter}: ${summary.passed}/${summary.total} passed`);
    return {
      passed: summary.passed,
      total: summary.total,
      ...(summary.diagnosis ? { diagnosis: summary.diagnosis } : {}),
    };
  } finally {
    setBusy(false);
  }
}

function report(el: HTMLElement, work: () => Promise<unknown>): void {
  work().catch((error: unknown) => {
    setBusy(false);
    setStatus(el, error instanceof Error ? `${error.name}: ${error.message}` : String(error), 'error');
  });
}

// --- wiring

ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  report(ui.status, () => exclusive(trainFromForm));
});
ui.stop.addEventListener('click', () => {
  stopRequested = true;
});
ui.task.addEventListener('change', () => {
  buildOptimizerControls(ui.task.value as TaskName);
  renderSettingsAdvice();
});
for (const input of [ui.kappa, ui.xi, ui.smallConst]) input.addEventListener('input', renderSettingsAdvice);
ui.optimizers.addEventListener('input', renderSettingsAdvice);
ui.save.addEventListener('click', () => report(ui.checkpointStatus, () => exclusive(saveCheckpoint)));
ui.import.addEventListener('change', () => {
  const file = ui.import.files?.[0];
  if (!file) return;
  report(ui.checkpointStatus, () =>
    exclusive(async () => importCheckpoint(new Uint8Array(await file.arrayBuffer()))).finally(() => {
      ui.import.value = '';
    }),
  );
});
ui.continue.addEventListener('click', () =>
  report(ui.status, () => exclusive(() => continueCurrent(number(ui.continueSteps, 'continue steps')))),
);
ui.conformanceRun.addEventListener('click', () =>
  report(ui.status, () => exclusive(() => conformance(ui.conformanceAdapter.value as AdapterName))),
);
ui.conformanceAll.addEventListener('click', () =>
  report(ui.status, async () => {
    for (const option of [...ui.conformanceAdapter.options])
      await exclusive(() => conformance(option.value as AdapterName));
  }),
);
/** Throughput of the given backends (default: all), as the "Measure" button runs it. */
async function throughput(only?: BackendName[]) {
  const list = await backendsReady;
  const unknown = only?.find((name) => !BACKEND_NAMES.includes(name));
  if (unknown !== undefined)
    throw new Error(`unknown backend "${unknown}"; the backends are ${BACKEND_NAMES.join(', ')}`);
  setBusy(true);
  try {
    return await measureThroughput(
      only ? list.filter((b) => only.includes(b.name)) : list,
      ui.throughput,
      (text) => setStatus(ui.status, text),
    );
  } finally {
    setBusy(false);
  }
}
ui.throughputRun.addEventListener('click', () => report(ui.status, () => exclusive(() => throughput())));
window.addEventListener('resize', () => {
  lossChart.resize();
  accuracyChart.resize();
});

$('environment').textContent = globalThis.crossOriginIsolated
  ? `Cross-origin isolated: WebAssembly runs on ${wasmThreads()} threads.`
  : 'Not cross-origin isolated (the host sends no COOP/COEP headers): WebAssembly backends run on one thread.';

buildOptimizerControls('toy');
renderSettingsAdvice();
setBusy(false);
setupPaperPanel();

/** The stable API for scripts and tests (see README). */
const api = {
  backends: () => backendsReady.then((list) => list.map((b) => ({ ...b }))),
  train: (request: TrainRequest) => exclusive(() => trainOne(request)),
  conformance: (adapter: AdapterName) => exclusive(() => conformance(adapter)),
  /** The current run's checkpoint file (what "Save state" downloads). */
  save: () => exclusive(saveCheckpoint),
  /** Imports a checkpoint file as "Import state" does; rejects with the parser's message. */
  import: (bytes: Uint8Array) => exclusive(() => importCheckpoint(bytes)),
  continue: (steps: number) => exclusive(() => continueCurrent(steps)),
  lastSaved: () => lastSaved,
  /** Steps per second of AccSGD and of tfjs's momentum per backend (the throughput panel). */
  throughput: (backends?: BackendName[]) => exclusive(() => throughput(backends)),
  currentRun: () => (current ? { label: current.label, step: current.step, backend: current.backend } : null),
};
declare global {
  interface Window {
    accsgdPlayground: typeof api;
  }
}
window.accsgdPlayground = api;
backendsReady.then(renderBackends).then(() => {
  document.body.dataset.ready = 'true';
});
