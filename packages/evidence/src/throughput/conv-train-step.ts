import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { findPyTorch } from '@accsgd/conformance';
import { OnnxTrainer } from '@accsgd/onnx-training';
import { createRng } from '../rng.js';
import { median, stepsPerBlock } from './stats.js';
import type { SectionResult, TrainStepResult, TrainStepRow } from './types.js';

const BATCH_SIZE = 64;
const HYPERPARAMS = { lr: 0.01, kappa: 1000, xi: 10 };
const DISTINCT_BATCHES = 8;
const WARMUP_STEPS = 3;
const BLOCK_SECONDS = 0.5;
const MIN_STEPS_PER_BLOCK = 2;
const MAX_STEPS_PER_BLOCK = 200;
const THREADS = [1, 2] as const;
/** examples/onnx-cnn's model, as torch.onnx.export wrote it (fixed batch 1). */
const MODEL = fileURLToPath(new URL('../../../../examples/onnx-cnn/model/cnn.onnx', import.meta.url));
const TORCH_SCRIPT = fileURLToPath(new URL('./conv_train_step.py', import.meta.url));
const WORKLOAD = `examples/onnx-cnn's conv net (Conv 1->16 5x5, Relu, MaxPool 2, Conv 16->32 5x5, Relu, MaxPool 2, Reshape, Gemm 512->64, Relu, Gemm 64->10), softmax cross-entropy, batch ${BATCH_SIZE}`;

/** One way of running the step, timed in blocks: `block(k)` runs k steps and gives their seconds. */
interface Runtime {
  framework: string;
  runtime: string;
  variant: string;
  threads: number;
  block(steps: number): Promise<{ seconds: number; loss: number }>;
  dispose(): Promise<void>;
}

function seededBatches(): { x: Float32Array; labels: Float32Array }[] {
  const rng = createRng(20_261_206);
  return Array.from({ length: DISTINCT_BATCHES }, () => {
    const x = new Float32Array(BATCH_SIZE * 784);
    for (let i = 0; i < x.length; i++) x[i] = rng.uniform();
    const labels = new Float32Array(BATCH_SIZE * 10);
    for (let r = 0; r < BATCH_SIZE; r++) labels[r * 10 + Math.floor(rng.uniform() * 10)] = 1;
    return { x, labels };
  });
}

async function onnxRuntime(ort: typeof import('onnxruntime-node'), threads: number): Promise<Runtime> {
  const trainer = await OnnxTrainer.create(new Uint8Array(readFileSync(MODEL)), {
    loss: 'softmax-cross-entropy',
    batchSize: BATCH_SIZE,
    hyperparams: HYPERPARAMS,
    ort,
    sessionOptions: { intraOpNumThreads: threads, interOpNumThreads: 1 },
  });
  const batches = seededBatches();
  let next = 0;
  return {
    framework: '@accsgd/onnx-training',
    runtime: `onnxruntime-node ${ort.env.versions?.common ?? ''} cpu, ${threads} thread${threads === 1 ? '' : 's'}`,
    variant: 'OnnxTrainer.step (AccSGD): forward, loss, backward and update in one session.run',
    threads,
    block: async (steps) => {
      const t0 = performance.now();
      let loss = Number.NaN;
      for (let s = 0; s < steps; s++) {
        const b = batches[next++ % batches.length]!;
        loss = await trainer.step({ x: b.x }, b.labels);
      }
      return { seconds: (performance.now() - t0) / 1000, loss };
    },
    dispose: () => trainer.dispose(),
  };
}

/** PyTorch in a child process that times blocks on request (conv_train_step.py). */
async function torchRuntime(python: string, threads: number): Promise<Runtime> {
  const child: ChildProcessWithoutNullStreams = spawn(python, [TORCH_SCRIPT, '--threads', String(threads)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += String(d);
  });
  const lines: Interface = createInterface({ input: child.stdout });
  const iterator = lines[Symbol.asyncIterator]();
  const read = async () => {
    const { value, done } = await iterator.next();
    if (done) throw new Error(`${python} ${TORCH_SCRIPT} ended: ${stderr.trim().split('\n').at(-1)}`);
    return JSON.parse(value as string) as Record<string, unknown>;
  };
  const ready = await read();
  return {
    framework: 'PyTorch',
    runtime: `torch ${String(ready.torch)} cpu, ${Number(ready.threads)} thread${threads === 1 ? '' : 's'}`,
    variant: 'forward + backward + torch.optim.SGD(momentum=0.9).step()',
    threads,
    block: async (steps) => {
      child.stdin.write(`block ${steps}\n`);
      const r = await read();
      return { seconds: Number(r.seconds), loss: Number(r.loss) };
    },
    dispose: async () => {
      child.stdin.write('quit\n');
      child.stdin.end();
      lines.close();
    },
  };
}

/**
 * The conv net's train step in steps per second: OnnxTrainer (AccSGD, one session.run) on
 * onnxruntime-node cpu at 1 and 2 intra-op threads beside PyTorch CPU at the same thread counts
 * (forward, backward, SGD with momentum), the baseline of the row with the same thread count.
 * PyTorch runs in child processes that time blocks on request, so the blocks of all four
 * runtimes alternate and load on a shared machine falls on all of them alike.
 */
export async function runConvTrainStep(repeats: number): Promise<SectionResult> {
  const section = 'conv-train-step';
  const skipped: TrainStepResult['skipped'] = [];
  const ort = await import('onnxruntime-node');
  const runtimes: Runtime[] = [];
  for (const threads of THREADS) runtimes.push(await onnxRuntime(ort, threads));
  const torch = findPyTorch();
  if (torch.available)
    for (const threads of THREADS) runtimes.push(await torchRuntime(torch.python, threads));
  else
    for (const threads of THREADS)
      skipped.push({ runtime: `PyTorch, ${threads} thread(s)`, reason: torch.reason });
  // node-webgpu is not measured here: on SwiftShader (no GPU) a conv step takes seconds and says
  // nothing about a GPU; the train-step section measures the MLP there.
  skipped.push({
    runtime: 'onnxruntime-node webgpu',
    reason: 'not measured for the conv net (SwiftShader, where there is no GPU, times the CPU emulation)',
  });
  const plans: { steps: number; rates: number[]; warmupLoss: number }[] = [];
  try {
    for (const r of runtimes) {
      const warm = await r.block(WARMUP_STEPS);
      const steps = stepsPerBlock(
        warm.seconds / WARMUP_STEPS,
        BLOCK_SECONDS,
        MIN_STEPS_PER_BLOCK,
        MAX_STEPS_PER_BLOCK,
      );
      plans.push({ steps, rates: [], warmupLoss: warm.loss });
    }
    for (let block = 0; block < repeats; block++)
      for (const [i, r] of runtimes.entries()) {
        const plan = plans[i]!;
        const { seconds } = await r.block(plan.steps);
        plan.rates.push(plan.steps / seconds);
      }
  } finally {
    for (const r of runtimes) await r.dispose();
  }
  const rate = (i: number) => median(plans[i]!.rates);
  const rows = runtimes.map((r, i): TrainStepRow => {
    const base = runtimes.findIndex((b) => b.framework === 'PyTorch' && b.threads === r.threads);
    return {
      framework: r.framework,
      runtime: r.runtime,
      variant: r.variant,
      stepsPerSecond: rate(i),
      stepsPerBlock: plans[i]!.steps,
      baseline: base >= 0 ? runtimes[base]!.runtime : 'none (no PyTorch)',
      baselineStepsPerSecond: base >= 0 ? rate(base) : Number.NaN,
      ratio: base >= 0 ? rate(i) / rate(base) : Number.NaN,
      warmupLoss: plans[i]!.warmupLoss,
    };
  });
  const result: TrainStepResult = {
    workload: WORKLOAD,
    warmupSteps: WARMUP_STEPS,
    blocks: repeats,
    blockSeconds: BLOCK_SECONDS,
    minStepsPerBlock: MIN_STEPS_PER_BLOCK,
    rows,
    skipped,
  };
  return {
    section,
    rows: [],
    convTrainStep: result,
    info: `PyTorch: ${torch.available ? `${torch.python}, torch ${torch.version}` : torch.reason}; ONNX Runtime sessions with intraOpNumThreads 1 and 2`,
  };
}
