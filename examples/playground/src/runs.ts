import type { BackendName } from './backends.js';
import { batchAt, type Dataset, loadDataset, type TaskName } from './data.js';
import { initialModel, type ModelSpec } from './models.js';
import { createKernelTrainer } from './trainers/kernel.js';
import { createOrtTrainer } from './trainers/ort.js';
import { createTfjsTrainer } from './trainers/tfjs.js';
import type { Hyper, OptimizerName, Trainer } from './trainers/types.js';

export interface Point {
  x: number;
  y: number;
}

/** One model and optimizer on one backend, with its curves. */
export interface Run {
  label: string;
  task: TaskName;
  backend: BackendName;
  optimizer: OptimizerName;
  seed: number;
  hyper: Hyper;
  spec: ModelSpec;
  data: Dataset;
  trainer: Trainer;
  /** Steps taken (the next batch is batchAt(data, seed, step)). */
  step: number;
  losses: Point[];
  accuracies: Point[];
  /** Time spent in trainer.step, ms, and the steps it covers. */
  stepMs: number;
  timedSteps: number;
}

export function runLabel(optimizer: OptimizerName, backend: BackendName): string {
  return `${optimizer} @ ${backend}`;
}

export async function createTrainer(
  backend: BackendName,
  options: Parameters<typeof createTfjsTrainer>[1],
): Promise<Trainer> {
  switch (backend) {
    case 'tfjs-cpu':
      return createTfjsTrainer('cpu', options);
    case 'tfjs-wasm':
      return createTfjsTrainer('wasm', options);
    case 'tfjs-webgl':
      return createTfjsTrainer('webgl', options);
    case 'tfjs-webgpu':
      return createTfjsTrainer('webgpu', options);
    case 'webgpu-kernel':
      return createKernelTrainer(options);
    case 'ort-wasm':
      return createOrtTrainer('wasm', options);
    case 'ort-webgpu':
      return createOrtTrainer('webgpu', options);
  }
}

export async function startRun(options: {
  task: TaskName;
  backend: BackendName;
  optimizer: OptimizerName;
  seed: number;
  hyper: Hyper;
}): Promise<Run> {
  const { task, backend, optimizer, seed, hyper } = options;
  if (task === 'mnist-cnn' && backend === 'tfjs-wasm')
    throw new Error(
      'tfjs-wasm cannot train the conv net: tfjs-backend-wasm registers no conv backward kernels (Conv2DBackpropFilter); pick tfjs-cpu, tfjs-webgl, tfjs-webgpu, webgpu-kernel, ort-wasm or ort-webgpu',
    );
  const data = await loadDataset(task);
  const spec = initialModel(task, seed);
  const trainer = await createTrainer(backend, { spec, optimizer, hyper, batchSize: data.batchSize });
  return {
    label: runLabel(optimizer, backend),
    task,
    backend,
    optimizer,
    seed,
    hyper,
    spec,
    data,
    trainer,
    step: 0,
    losses: [],
    accuracies: [],
    stepMs: 0,
    timedSteps: 0,
  };
}

/** One step on the run's next batch; returns the batch's loss. */
export async function stepRun(run: Run): Promise<number> {
  const batch = batchAt(run.data, run.seed, run.step);
  const started = performance.now();
  const loss = await run.trainer.step(batch);
  // The first step compiles shaders and uploads weights: leave it out of steps/s.
  if (run.step > 0 || run.timedSteps > 0) {
    run.stepMs += performance.now() - started;
    run.timedSteps++;
  }
  run.step++;
  run.losses.push({ x: run.step, y: loss });
  return loss;
}

/** Test accuracy of the run's model now (argmax of the logits). */
export async function evaluateRun(run: Run): Promise<number> {
  const { test, classes } = run.data;
  const logits = await run.trainer.predict(test.x, test.count);
  let correct = 0;
  for (let r = 0; r < test.count; r++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (logits[r * classes + c]! > logits[r * classes + best]!) best = c;
    if (best === test.y[r]) correct++;
  }
  const accuracy = correct / test.count;
  run.accuracies.push({ x: run.step, y: accuracy });
  return accuracy;
}

export function stepsPerSecond(run: Run): number | null {
  return run.timedSteps > 0 ? (run.timedSteps * 1000) / run.stepMs : null;
}
