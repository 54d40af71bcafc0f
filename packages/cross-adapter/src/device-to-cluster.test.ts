import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { findPyTorch, pytorchRequired } from '@accsgd/conformance';
import {
  AccSGD,
  accuracyBound,
  decodeSafetensors,
  decodeState,
  encodeSafetensors,
  type ParamGroupInput,
  relativeError,
} from '@accsgd/core';
import { OnnxTrainer, type OrtModule } from '@accsgd/onnx-training';
import * as ortNode from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * "From device to cluster and back" (README.md), on a real distributed engine: a small MLP trains
 * N steps in JavaScript (@accsgd/core's AccSGD, gradients computed here), its weights and optimizer
 * state go to PyTorch, which continues M steps under DistributedDataParallel with 2 processes
 * (gloo on 127.0.0.1; each rank takes half of every batch), once with the optimizer replicated and
 * once sharded by ZeroRedundancyOptimizer (whose shards are consolidated into one state file);
 * the result comes back into JavaScript for K more steps.
 *
 * Truth is the same N + M + K steps in float64 (here, from the export at step N, whose float32
 * values float64 holds exactly). The bound is SPEC §3's float32 bound for the steps taken,
 * 2^-24 (32 + 4 t). That bound is the optimizer's own budget on identical gradients; DDP adds no
 * term of its own because it changes no value, only rounding: each rank's mean over 4 rows, summed
 * over 2 ranks and divided by 2, is the mean over the 8 rows that one process computes, rounded in
 * another order (a few float32 ulps of the gradient per step, damped by lr before it reaches a
 * weight). The test prints what each run used of the bound.
 *
 * Needs a Python with torch (Debian: apt-get install python3-torch): without one the tests skip
 * with a notice, or fail when ACCSGD_REQUIRE_PYTORCH=1, as in CI. Every Python process runs in its
 * own process group, which a timeout kills whole; the ranks also die with their parent
 * (PR_SET_PDEATHSIG in continue_under_ddp.py).
 */
const PYTHON_DIR = dirname(createRequire(import.meta.url).resolve('@accsgd/core/python/accsgd_torch.py'));
const CONTINUE = join(PYTHON_DIR, 'continue_under_ddp.py');

const torch = findPyTorch();
if (!torch.available) {
  if (pytorchRequired()) throw new Error(`ACCSGD_REQUIRE_PYTORCH=1 but ${torch.reason}`);
  console.warn(`[cross-adapter] skipping the device-to-cluster round trip: ${torch.reason}`);
}

const N = 10; // steps in JavaScript before the move
const M = 10; // steps under DDP
const K = 5; // steps back in JavaScript
// The trip through ONNX goes on from the DDP run: OnnxTrainer K steps, DDP + ZeRO L, OnnxTrainer J.
const L = 5;
const J = 3;
const BATCH = 8;
const [IN, HIDDEN, OUT] = [4, 8, 3];
// torch.nn.Sequential(Linear(4, 8), Tanh(), Linear(8, 3)): these are its state_dict names.
const SHAPES: Record<string, number[]> = {
  '0.weight': [HIDDEN, IN],
  '0.bias': [HIDDEN],
  '2.weight': [OUT, HIDDEN],
  '2.bias': [OUT],
};
const NAMES = Object.keys(SHAPES);
const size = (name: string) => SHAPES[name]!.reduce((a, d) => a * d, 1);
// Two groups, so that the state file and ZeroRedundancyOptimizer's partition carry groups too.
const GROUPS = [
  { names: ['0.weight', '2.weight'], weightDecay: 1e-4 },
  { names: ['0.bias', '2.bias'], weightDecay: 0 },
];
const DEFAULTS = { lr: 0.05, kappa: 100, xi: 4 };

/** Deterministic float32-representable values in [-scale, scale). */
function values(count: number, seed: number, scale = 1): Float32Array {
  let state = (seed * 2654435761) >>> 0 || 1;
  return Float32Array.from({ length: count }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state / 2 ** 31 - 1) * scale;
  });
}

const STEPS = N + M + K + L + J;
const X = values(STEPS * BATCH * IN, 11);
// Targets from a fixed smooth function of the inputs, so that the loss has something to learn.
const Y = Float32Array.from({ length: STEPS * BATCH * OUT }, (_, k) => {
  const row = Math.floor(k / OUT);
  const o = k % OUT;
  let s = 0;
  for (let i = 0; i < IN; i++) s += X[row * IN + i]! * ((i + 1) * (o % 2 ? 1 : -1)) * 0.5;
  return Math.sin(s + o);
});

type Float = Float32Array | Float64Array;
type Params = Record<string, Float>;

/**
 * Loss and gradients of mean((W2 tanh(W1 x + b1) + b2 - y)^2) over batch `step`'s rows (as
 * torch.nn.functional.mse_loss), in float64 arithmetic, returned in the parameters' precision.
 */
function lossAndGradients(params: Params, step: number): { loss: number; grads: Params } {
  const [w1, b1, w2, b2] = NAMES.map((n) => params[n]!);
  const g = Object.fromEntries(NAMES.map((n) => [n, new Float64Array(size(n))]));
  const scale = 2 / (BATCH * OUT);
  let loss = 0;
  for (let r = 0; r < BATCH; r++) {
    const x = X.subarray((step * BATCH + r) * IN, (step * BATCH + r + 1) * IN);
    const y = Y.subarray((step * BATCH + r) * OUT, (step * BATCH + r + 1) * OUT);
    const h = new Float64Array(HIDDEN);
    for (let j = 0; j < HIDDEN; j++) {
      let z = b1![j]!;
      for (let i = 0; i < IN; i++) z += w1![j * IN + i]! * x[i]!;
      h[j] = Math.tanh(z);
    }
    const dh = new Float64Array(HIDDEN);
    for (let o = 0; o < OUT; o++) {
      let out = b2![o]!;
      for (let j = 0; j < HIDDEN; j++) out += w2![o * HIDDEN + j]! * h[j]!;
      const diff = out - y[o]!;
      loss += (diff * diff) / (BATCH * OUT);
      const dOut = scale * diff;
      g['2.bias']![o]! += dOut;
      for (let j = 0; j < HIDDEN; j++) {
        g['2.weight']![o * HIDDEN + j]! += dOut * h[j]!;
        dh[j]! += dOut * w2![o * HIDDEN + j]!;
      }
    }
    for (let j = 0; j < HIDDEN; j++) {
      const dz = dh[j]! * (1 - h[j]! * h[j]!);
      g['0.bias']![j]! += dz;
      for (let i = 0; i < IN; i++) g['0.weight']![j * IN + i]! += dz * x[i]!;
    }
  }
  const Array_ = w1 instanceof Float64Array ? Float64Array : Float32Array;
  return { loss, grads: Object.fromEntries(NAMES.map((n) => [n, Array_.from(g[n]!)])) };
}

/** The run in JavaScript: params in the given precision, the optimizer over the two groups. */
function jsRun(params: Params) {
  const groups: ParamGroupInput[] = GROUPS.map(({ names, weightDecay }) => ({
    params: names.map((n) => params[n]!),
    names,
    shapes: names.map((n) => SHAPES[n]!),
    weightDecay,
  }));
  const optimizer = new AccSGD(groups, DEFAULTS);
  const losses: number[] = [];
  return {
    params,
    optimizer,
    losses,
    train(from: number, to: number) {
      for (let step = from; step < to; step++) {
        const { loss, grads } = lossAndGradients(params, step);
        losses.push(loss);
        optimizer.step(grads);
      }
    },
    snapshot(): Snapshot {
      return {
        params: Object.fromEntries(NAMES.map((n) => [n, Float64Array.from(params[n]!)])),
        buffers: Object.fromEntries(NAMES.map((n) => [n, Float64Array.from(optimizer.buffer(n)!)])),
      };
    },
  };
}

interface Snapshot {
  params: Record<string, Float64Array>;
  buffers: Record<string, Float64Array>;
}

/** Largest SPEC §3 relative error over every parameter and buffer. */
function worst(got: Snapshot, truth: Snapshot): number {
  let error = 0;
  for (const n of NAMES) {
    error = Math.max(error, relativeError(got.params[n]!, truth.params[n]!));
    error = Math.max(error, relativeError(got.buffers[n]!, truth.buffers[n]!));
  }
  return error;
}

function weightsFile(params: Params): Uint8Array {
  return encodeSafetensors(
    NAMES.map((n) => [
      n,
      { dtype: params[n] instanceof Float64Array ? 'F64' : 'F32', shape: SHAPES[n]!, data: params[n]! },
    ]),
    {},
  );
}

function readWeights(path: string): Record<string, Float32Array | Float64Array> {
  const { tensors } = decodeSafetensors(readFileSync(path));
  expect([...tensors.keys()].sort()).toEqual([...NAMES].sort());
  return Object.fromEntries([...tensors].map(([n, t]) => [n, t.data]));
}

/** Snapshot of a PyTorch run's output files (buffers from the state file). */
function readRun(weightsPath: string, statePath: string): Snapshot {
  const weights = readWeights(weightsPath);
  const state = decodeState(readFileSync(statePath));
  return {
    params: Object.fromEntries(NAMES.map((n) => [n, Float64Array.from(weights[n]!)])),
    buffers: Object.fromEntries(NAMES.map((n) => [n, Float64Array.from(state.buffers.get(n)!.data)])),
  };
}

/** Runs a Python script in its own process group; a timeout kills the group (every rank). */
function python(args: string[], timeoutMs = 90_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(torch.available ? torch.python : 'python3', ['-B', ...args], {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
      reject(new Error(`${args.join(' ')} ran past ${timeoutMs} ms; killed its process group\n${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else reject(new Error(`${args.join(' ')} failed (${code}):\n${stderr}`));
    });
  });
}

interface TorchRun {
  world_size: number;
  losses: number[];
  rank_disagreement: number;
}

describe.skipIf(!torch.available)(
  `From device to cluster and back (${torch.available ? `${torch.python}, torch ${torch.version}` : 'no torch'}; gloo, 2 processes)`,
  () => {
    // Made in beforeAll, so that a skipped suite leaves no directory behind.
    let dir = '';
    afterAll(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });
    const file = (name: string) => join(dir, name);
    const runs: Record<string, { out: TorchRun; snapshot: Snapshot; state: string; weights: string }> = {};
    let truthAtMove: Snapshot; // float64, after N + M steps
    let truthAtEnd: Snapshot; // float64, after N + M + K steps
    let truthAtLast: Snapshot; // float64, after N + M + K + L steps
    let truthAtFinal: Snapshot; // float64, after N + M + K + L + J steps
    let oneProcess: ReturnType<typeof jsRun>; // float32 JavaScript, all N + M + K steps in one process
    let oneProcessAtMove: Snapshot;
    let exported: Snapshot;

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'accsgd-cluster-'));
      const init = Object.fromEntries(NAMES.map((n, k) => [n, values(size(n), 1 + k, 0.5)]));
      // 1. N steps in JavaScript; export the weights (state_dict names) and the optimizer state.
      const device = jsRun(Object.fromEntries(NAMES.map((n) => [n, Float32Array.from(init[n]!)])));
      device.train(0, N);
      exported = device.snapshot();
      writeFileSync(file('weights.safetensors'), weightsFile(device.params));
      writeFileSync(file('state.safetensors'), device.optimizer.exportState());
      writeFileSync(
        file('batches.safetensors'),
        encodeSafetensors(
          [
            ['x', { dtype: 'F32', shape: [STEPS, BATCH, IN], data: X }],
            ['y', { dtype: 'F32', shape: [STEPS, BATCH, OUT], data: Y }],
          ],
          {},
        ),
      );

      // The truth: the export continued in float64 for M + K steps; and the float32 run that
      // never left this process.
      const truth = jsRun(Object.fromEntries(NAMES.map((n) => [n, Float64Array.from(device.params[n]!)])));
      truth.optimizer.importState(readFileSync(file('state.safetensors')));
      truth.train(N, N + M);
      truthAtMove = truth.snapshot();
      truth.train(N + M, N + M + K);
      truthAtEnd = truth.snapshot();
      truth.train(N + M + K, N + M + K + L);
      truthAtLast = truth.snapshot();
      truth.train(N + M + K + L, STEPS);
      truthAtFinal = truth.snapshot();
      oneProcess = jsRun(Object.fromEntries(NAMES.map((n) => [n, Float32Array.from(init[n]!)])));
      oneProcess.train(0, N + M);
      oneProcessAtMove = oneProcess.snapshot();
      oneProcess.train(N + M, N + M + K);

      // 2. M steps on PyTorch: one process (reference path, float32 and float64), and 2 processes
      // under DDP with the optimizer replicated and sharded (multi-tensor path).
      const variants: [string, string[]][] = [
        ['single', []],
        ['single-float64', ['--dtype', 'float64']],
        // Also written as a torch.onnx export, where the trip through ONNX starts.
        ['ddp', ['--world-size', '2', '--foreach', '--export-onnx', file('ddp.onnx')]],
        ['zero', ['--world-size', '2', '--zero', '--foreach']],
      ];
      for (const [name, extra] of variants) {
        const weights = file(`${name}.weights.safetensors`);
        const state = file(`${name}.state.safetensors`);
        const stdout = await python([
          CONTINUE,
          ...['--weights', file('weights.safetensors'), '--state', file('state.safetensors')],
          ...['--batches', file('batches.safetensors'), '--first-batch', String(N), '--steps', String(M)],
          ...['--out-weights', weights, '--out-state', state],
          ...extra,
        ]);
        runs[name] = {
          out: JSON.parse(stdout.trim().split('\n').at(-1)!),
          snapshot: readRun(weights, state),
          state,
          weights,
        };
      }
    }, 240_000);

    it('PyTorch computes the same problem: its float64 continuation is the float64 truth within 1e-12', () => {
      const error = worst(runs['single-float64']!.snapshot, truthAtMove);
      console.log(
        `[device-to-cluster] PyTorch float64 vs JavaScript float64 after ${N + M} steps: ${error.toExponential(2)}`,
      );
      expect(error).toBeLessThanOrEqual(accuracyBound('float64', N + M));
      // And the M steps moved the weights far beyond any bound.
      expect(relativeError(truthAtMove.params['0.weight']!, exported.params['0.weight']!)).toBeGreaterThan(
        1e-3,
      );
    });

    it('DDP and ZeroRedundancyOptimizer on 2 processes stay within the float32 contract of one process', () => {
      const bound = accuracyBound('float32', N + M);
      const errors: Record<string, number> = {};
      for (const name of ['single', 'ddp', 'zero']) {
        const run = runs[name]!;
        expect(run.out.world_size, name).toBe(name === 'single' ? 1 : 2);
        expect(run.out.rank_disagreement, `${name}: the ranks' weights differ`).toBe(0);
        errors[`${name} vs float64 truth`] = worst(run.snapshot, truthAtMove);
        if (name !== 'single')
          errors[`${name} vs one PyTorch process`] = worst(run.snapshot, runs.single!.snapshot);
        errors[`${name} vs one JavaScript process`] = worst(run.snapshot, oneProcessAtMove);
      }
      errors['JavaScript one process vs float64 truth'] = worst(oneProcessAtMove, truthAtMove);
      console.log(
        `[device-to-cluster] after ${N} + ${M} steps, bound 2^-24 (32 + 4 * ${N + M}) = ${bound.toExponential(2)}:\n${Object.entries(
          errors,
        )
          .map(([k, v]) => `  ${k}: ${v.toExponential(2)} (${((100 * v) / bound).toFixed(1)}% of the bound)`)
          .join('\n')}`,
      );
      for (const [what, error] of Object.entries(errors)) {
        // Two float32 runs each within the bound of the truth are within twice it of each other.
        const allowed = what.includes('truth') ? bound : 2 * bound;
        expect(error, what).toBeLessThanOrEqual(allowed);
      }
      expect(runs.ddp!.out.losses).toHaveLength(M);
    });

    it("ZeroRedundancyOptimizer's shards come back as one state file that JavaScript reads", () => {
      const state = decodeState(readFileSync(runs.zero!.state));
      expect(state.groups.map((g) => [g.params, g.step])).toEqual([
        [['0.weight', '2.weight'], N + M],
        [['0.bias', '2.bias'], N + M],
      ]);
      expect(state.groups.map((g) => g.hyperparams.weightDecay)).toEqual([1e-4, 0]);
      expect([...state.buffers.keys()].sort()).toEqual([...NAMES].sort());
    });

    it('the run comes back into JavaScript and continues K steps within the contract of the float64 truth', () => {
      const bound = accuracyBound('float32', N + M + K);
      for (const name of ['ddp', 'zero']) {
        const weights = readWeights(runs[name]!.weights);
        const back = jsRun(Object.fromEntries(NAMES.map((n) => [n, Float32Array.from(weights[n]!)])));
        back.optimizer.importState(readFileSync(runs[name]!.state));
        expect(back.optimizer.paramGroups.map((g) => g.step)).toEqual([N + M, N + M]);
        back.train(N + M, N + M + K);
        const error = worst(back.snapshot(), truthAtEnd);
        const againstOneProcess = worst(back.snapshot(), oneProcess.snapshot());
        console.log(
          `[device-to-cluster] ${name} then ${K} steps in JavaScript: ${error.toExponential(2)} vs float64 truth, ${againstOneProcess.toExponential(2)} vs the run that never left (bound ${bound.toExponential(2)})`,
        );
        expect(error).toBeLessThanOrEqual(bound);
        expect(againstOneProcess).toBeLessThanOrEqual(2 * bound);
        expect(back.optimizer.paramGroups.map((g) => g.step)).toEqual([N + M + K, N + M + K]);
      }
    });

    it("the trip through ONNX: DDP's torch.onnx export into OnnxTrainer, its exportModel() into DDP + ZeRO, back into OnnxTrainer", async () => {
      const ort = ortNode as unknown as OrtModule;
      const options = {
        loss: 'mse' as const,
        batchSize: BATCH,
        hyperparams: DEFAULTS,
        // The ONNX model's initializers are the state_dict names; the unclaimed biases form the
        // last group, as in the state file.
        groups: [{ params: GROUPS[0]!.names, weightDecay: GROUPS[0]!.weightDecay }],
        ort,
      };
      const onnxSnapshot = async (trainer: OnnxTrainer): Promise<Snapshot> => {
        const { params, buffers } = await trainer.read();
        return {
          params: Object.fromEntries(NAMES.map((n) => [n, Float64Array.from(params.get(n)!)])),
          buffers: Object.fromEntries(NAMES.map((n) => [n, Float64Array.from(buffers.get(n)!)])),
        };
      };
      const train = async (trainer: OnnxTrainer, from: number, to: number) => {
        for (let step = from; step < to; step++)
          await trainer.step(
            { x: X.slice(step * BATCH * IN, (step + 1) * BATCH * IN) },
            Y.slice(step * BATCH * OUT, (step + 1) * BATCH * OUT),
          );
      };
      const continueWith = async (
        weights: string,
        state: string,
        first: number,
        steps: number,
        out: string,
        extra: string[],
      ) => {
        const stdout = await python([
          CONTINUE,
          ...['--weights', weights, '--state', state, '--batches', file('batches.safetensors')],
          ...['--first-batch', String(first), '--steps', String(steps)],
          ...[
            '--out-weights',
            file(`${out}.weights.safetensors`),
            '--out-state',
            file(`${out}.state.safetensors`),
          ],
          ...['--export-onnx', file(`${out}.onnx`)],
          ...extra,
        ]);
        return JSON.parse(stdout.trim().split('\n').at(-1)!) as TorchRun;
      };

      // PyTorch -> OnnxTrainer: the DDP run's torch.onnx export and state file, K steps on
      // onnxruntime-node.
      const first = await OnnxTrainer.create(readFileSync(file('ddp.onnx')), options);
      await first.importState(readFileSync(runs.ddp!.state));
      expect(first.paramNames.slice().sort()).toEqual([...NAMES].sort());
      expect(first.stepCount).toBe(N + M);
      await train(first, N + M, N + M + K);
      const errors: Record<string, number> = {
        [`OnnxTrainer after ${N + M + K} steps`]: worst(await onnxSnapshot(first), truthAtEnd),
      };
      writeFileSync(file('trainer.onnx'), await first.exportModel());
      writeFileSync(file('trainer.state.safetensors'), await first.exportState());
      await first.dispose();

      // OnnxTrainer -> PyTorch: its exportModel() bytes and state file into DDP with
      // ZeroRedundancyOptimizer on 2 processes, L steps.
      const zero = await continueWith(
        file('trainer.onnx'),
        file('trainer.state.safetensors'),
        N + M + K,
        L,
        'from-trainer',
        ['--world-size', '2', '--zero', '--foreach'],
      );
      expect(zero.rank_disagreement).toBe(0);
      errors[`DDP + ZeRO after ${N + M + K + L} steps`] = worst(
        readRun(file('from-trainer.weights.safetensors'), file('from-trainer.state.safetensors')),
        truthAtLast,
      );

      // And back: the torch.onnx export of that result into a new OnnxTrainer, J more steps.
      const last = await OnnxTrainer.create(readFileSync(file('from-trainer.onnx')), options);
      await last.importState(readFileSync(file('from-trainer.state.safetensors')));
      expect(last.stepCount).toBe(N + M + K + L);
      await train(last, N + M + K + L, STEPS);
      expect(last.stepCount).toBe(STEPS);
      errors[`OnnxTrainer after ${STEPS} steps`] = worst(await onnxSnapshot(last), truthAtFinal);
      await last.dispose();

      console.log(
        `[device-to-cluster] the ONNX trip against the float64 truth:\n${Object.entries(errors)
          .map(([k, v]) => `  ${k}: ${v.toExponential(2)}`)
          .join('\n')}`,
      );
      for (const [what, error] of Object.entries(errors))
        expect(error, what).toBeLessThanOrEqual(
          accuracyBound('float32', Number(what.match(/after (\d+)/)![1])),
        );
    });
  },
);
