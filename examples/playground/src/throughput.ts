import type { BackendInfo, BackendName } from './backends.js';
import { startRun, stepRun } from './runs.js';
import { defaultHyper, type OptimizerName } from './trainers/types.js';

const WARMUP = 3;
const TIMED = 15;

/** Steps per second of one optimizer on one backend, after a warm-up (shader compilation, uploads). */
async function stepsPerSecond(backend: BackendName, optimizer: OptimizerName): Promise<number> {
  const run = await startRun({
    task: 'mnist',
    backend,
    optimizer,
    seed: 1,
    hyper: defaultHyper('mnist', optimizer),
  });
  try {
    for (let i = 0; i < WARMUP; i++) await stepRun(run);
    const started = performance.now();
    for (let i = 0; i < TIMED; i++) await stepRun(run);
    return (TIMED * 1000) / (performance.now() - started);
  } finally {
    await run.trainer.dispose();
  }
}

/**
 * AccSGD's whole training step beside tfjs's momentum on the same backend, same model and batches.
 * The raw kernel is compared with tfjs-webgpu's momentum, and ONNX Runtime (AccSGD only) shows no ratio.
 */
export async function measureThroughput(
  backends: BackendInfo[],
  table: HTMLTableElement,
  progress: (text: string) => void,
): Promise<{ backend: BackendName; accsgd: number; momentum: number | null }[]> {
  const body = table.tBodies[0]!;
  body.innerHTML = '';
  const rows: { backend: BackendName; accsgd: number; momentum: number | null }[] = [];
  const momentumOf = new Map<BackendName, number>();
  for (const b of backends) {
    const tr = body.insertRow();
    tr.insertCell().textContent = b.name;
    if (!b.available) {
      tr.insertCell().textContent = `unavailable: ${b.reason}`;
      continue;
    }
    progress(`throughput: ${b.name}`);
    const accsgd = await stepsPerSecond(b.name, 'accsgd');
    let momentum: number | null = null;
    if (b.name.startsWith('tfjs-')) {
      momentum = await stepsPerSecond(b.name, 'momentum');
      momentumOf.set(b.name, momentum);
    } else if (b.name === 'webgpu-kernel') momentum = momentumOf.get('tfjs-webgpu') ?? null;
    rows.push({ backend: b.name, accsgd, momentum });
    tr.insertCell().textContent = accsgd.toFixed(1);
    tr.insertCell().textContent =
      momentum === null
        ? 'no momentum on this backend'
        : `${momentum.toFixed(1)}${b.name === 'webgpu-kernel' ? ' (tfjs-webgpu)' : ''}`;
    tr.insertCell().textContent = momentum === null ? '' : `${(accsgd / momentum).toFixed(2)}x`;
  }
  progress('throughput: done (ratio = AccSGD steps/s over momentum steps/s; above 1 is faster)');
  return rows;
}
