import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findNodeWebGPU, findPyTorch, pytorchRequired } from '@accsgd/conformance';
import { fromBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGradientModel, OnnxTrainer } from '../index.js';
import { lockstep } from '../test-support/lockstep.js';
import { webgpuUnavailable } from '../test-support/webgpu.js';
import { tensorValues } from './proto.js';

/**
 * Gradients against PyTorch autograd, an oracle no one here wrote: Debian's torch 1.13 and
 * torchvision 0.14 export mobilenet_v2, resnet18, squeezenet1_1 and efficientnet_b0 (random
 * weights, 3x32x32, batch 2, 10 classes) in eval mode (Conv + BatchNormalization fused in torch,
 * as torch.onnx folds them) and in training mode (BatchNormalization with batch statistics), and
 * write autograd's gradient of the cross-entropy on fixed labels for every parameter
 * (python/torchvision_gradients.py). buildGradientModel, the public path OnnxTrainer takes,
 * differentiates each ONNX file; onnxruntime-node cpu runs it in float32 on the same batch.
 *
 * Every parameter maps by name: torch.onnx names an initializer after its state_dict entry, and in
 * eval mode the fused convolutions are the parameters of the module autograd differentiates (the
 * script draws BatchNormalization's statistics at random so that no two folded biases are equal
 * and shared). Running statistics are initializers without a torch gradient: they are not trained.
 *
 * Error per parameter: max |ours - torch| over the larger of max |torch| and FLOOR times the
 * model's largest gradient (efficientnet_b0 has BatchNormalization biases followed by another
 * batch-statistics normalisation, whose gradient is 0 in exact arithmetic and ~5e-6 of rounding
 * on both sides).
 * - eval mode: below TOLERANCE.eval = 1e-4 (measured: at most 5.5e-6). Both sides compute the
 *   same float32 sums in different orders; a wrong rule (a flipped kernel, a window off by one, a
 *   dropped group) is off by O(1).
 * - training mode: below TOLERANCE.train = 5e-2 (measured: up to 2.6e-2, resnet18's conv1.weight).
 *   A ReLU whose input lies within float32 rounding of 0 can fall on either side in two correct
 *   float32 computations, and its gradient is then dY or 0: resnet18's layer2.1 has a final ReLU
 *   input of 2.1e-7 (channel 21), and with batch statistics such a flip reaches every weight
 *   upstream of it. The same block fed torch's own activations agrees within 7e-7. Still far
 *   below the O(1) of a wrong rule.
 */
const TOLERANCE = { eval: 1e-4, train: 5e-2 } as const;
const FLOOR = 1e-3;
const SCRIPT = fileURLToPath(new URL('../../python/torchvision_gradients.py', import.meta.url));
const MODELS = ['mobilenet_v2', 'resnet18', 'squeezenet1_1', 'efficientnet_b0'];
const MODES = ['eval', 'train'] as const;

const torch = findPyTorch();
const torchvision =
  torch.available && spawnSync(torch.python, ['-c', 'import torchvision'], { encoding: 'utf8' }).status === 0;
const reason = !torch.available
  ? torch.reason
  : `${torch.python} has torch but not torchvision (apt-get install python3-torchvision)`;
if (!torchvision) {
  if (pytorchRequired()) throw new Error(`ACCSGD_REQUIRE_PYTORCH=1 but ${reason}`);
  console.warn(`[onnx-training] skipping the torchvision gradient checks against PyTorch: ${reason}`);
}

/** The exports, made once per version of the script (keyed by its hash) in the temp directory. */
function exports(): string {
  const hash = createHash('sha256').update(readFileSync(SCRIPT)).digest('hex').slice(0, 16);
  const dir = join(tmpdir(), `accsgd-torchvision-${hash}`);
  if (existsSync(join(dir, 'done'))) return dir;
  const partial = `${dir}.partial-${process.pid}`;
  rmSync(partial, { recursive: true, force: true });
  const run = spawnSync(torch.available ? torch.python : '', ['-B', SCRIPT, partial, ...MODELS], {
    encoding: 'utf8',
    timeout: 900_000,
  });
  if (run.status !== 0) throw new Error(`torchvision_gradients.py failed (${run.status}): ${run.stderr}`);
  writeFileSync(join(partial, 'done'), '');
  rmSync(dir, { recursive: true, force: true });
  renameSync(partial, dir);
  return dir;
}

const gpuUnavailable = torchvision ? await webgpuUnavailable(await findNodeWebGPU()) : 'no PyTorch';
const gpuRequired = process.env.ACCSGD_REQUIRE_WEBGPU === '1';
if (torchvision && gpuUnavailable !== undefined && !gpuRequired)
  console.warn(
    `[onnx-training] skipping the torchvision train step on onnxruntime-node webgpu: ${gpuUnavailable}`,
  );

interface Meta {
  labels: number[];
  classes: number;
  input: number[];
  loss: number;
  params: { name: string; shape: number[]; offset: number }[];
}

const floats = (path: string) => {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};

const measured: string[] = [];
afterAll(() => {
  if (measured.length) console.log(`[torchvision gradients vs PyTorch, float32]\n${measured.join('\n')}`);
});

describe.skipIf(!torchvision)('torchvision models: gradients against PyTorch autograd', () => {
  let dir = '';
  beforeAll(() => {
    dir = exports();
  }, 900_000);

  for (const model of MODELS)
    for (const mode of MODES)
      it(`${model}, ${mode} mode: every parameter's gradient within ${TOLERANCE[mode]} of autograd's`, async () => {
        const case_ = join(dir, `${model}-${mode}`);
        const meta = JSON.parse(readFileSync(join(case_, 'meta.json'), 'utf8')) as Meta;
        const bytes = new Uint8Array(readFileSync(join(case_, 'model.onnx')));
        const onnx = fromBinary(ModelProtoSchema, bytes);
        const initializers = new Map(onnx.graph!.initializer.map((t) => [t.name, t]));
        const names = meta.params.map((p) => p.name);
        // Every parameter autograd differentiates is an initializer of the same name.
        expect(names.filter((n) => !initializers.has(n))).toEqual([]);
        const gm = buildGradientModel(bytes, { loss: 'softmax-cross-entropy', trainable: names });
        const session = await ort.InferenceSession.create(gm.model, {
          executionProviders: ['cpu'],
          intraOpNumThreads: 2,
        });
        const [n] = meta.input as [number];
        const labels = new Float32Array(n * meta.classes);
        meta.labels.forEach((c, i) => {
          labels[i * meta.classes + c] = 1;
        });
        const feeds: Record<string, ort.Tensor> = {};
        for (const input of gm.inputs) {
          let data: Float32Array;
          if (input.name === 'input') data = floats(join(case_, 'input.bin'));
          else if (input.name === gm.labels?.name) data = labels;
          else {
            const t = initializers.get(input.name)!;
            expect(t.dataType).toBe(TensorProto_DataType.FLOAT);
            data = Float32Array.from(tensorValues(t)!);
          }
          feeds[input.name] = new ort.Tensor('float32', data, input.shape);
        }
        const out = await session.run(feeds);
        const loss = Number(out[gm.loss]!.data[0]);
        expect(Math.abs(loss - meta.loss)).toBeLessThan(1e-4 * Math.max(1, meta.loss));
        const reference = floats(join(case_, 'gradients.bin'));
        const slices = meta.params.map((p) => {
          const count = p.shape.reduce((a, b) => a * b, 1);
          const ours = out[gm.gradients.get(p.name)!]!.data as Float32Array;
          expect(ours.length, p.name).toBe(count);
          return { name: p.name, ours, theirs: reference.subarray(p.offset, p.offset + count) };
        });
        const maxAbs = (v: Float32Array) => v.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
        const largest = Math.max(...slices.map((s) => maxAbs(s.theirs)));
        let worst = { name: '', error: 0 };
        for (const { name, ours, theirs } of slices) {
          let diff = 0;
          for (let i = 0; i < theirs.length; i++) diff = Math.max(diff, Math.abs(ours[i]! - theirs[i]!));
          const scale = Math.max(maxAbs(theirs), FLOOR * largest);
          const error = diff / scale;
          if (error > worst.error) worst = { name, error };
          expect(error, `${name}: max |ours - torch| ${diff} over ${scale}`).toBeLessThan(TOLERANCE[mode]);
        }
        measured.push(
          `${model} ${mode}: ${meta.params.length} parameters, loss ${loss.toFixed(5)} (torch ${meta.loss.toFixed(5)}), worst relative error ${worst.error.toExponential(2)} (${worst.name})`,
        );
        await session.release();
      });

  it("resnet18, train mode: OnnxTrainer's default parameters are PyTorch's parameters(); the running statistics are buffers a step moves", async () => {
    const case_ = join(dir, 'resnet18-train');
    const meta = JSON.parse(readFileSync(join(case_, 'meta.json'), 'utf8')) as Meta;
    const bytes = new Uint8Array(readFileSync(join(case_, 'model.onnx')));
    const stats = fromBinary(ModelProtoSchema, bytes)
      .graph!.initializer.map((t) => t.name)
      .filter((n) => /running_(mean|var)$/.test(n));
    expect(stats.length).toBe(40); // 20 BatchNorm2d
    const trainer = await OnnxTrainer.create(bytes, {
      loss: 'softmax-cross-entropy',
      hyperparams: { lr: 0.01, weightDecay: 1e-4 },
      ort,
    });
    expect([...trainer.paramNames].sort()).toEqual(meta.params.map((p) => p.name).sort());
    expect([...trainer.runningStatisticNames].sort()).toEqual([...stats].sort());
    const before = (await trainer.read()).statistics;
    const labels = new Float32Array(meta.input[0]! * meta.classes);
    meta.labels.forEach((c, i) => {
      labels[i * meta.classes + c] = 1;
    });
    await trainer.step({ input: floats(join(case_, 'input.bin')) }, labels);
    const after = (await trainer.read()).statistics;
    for (const name of stats) {
      const [a, b] = [after.get(name)!, before.get(name)!];
      expect(a.every(Number.isFinite), name).toBe(true);
      expect(Array.from(a), name).not.toEqual(Array.from(b));
    }
    await trainer.dispose();
  }, 120_000);
});

/**
 * A real export's train step on the GPU: squeezenet1_1 (eval export: Conv, Relu, MaxPool with
 * ceil_mode, Concat, GlobalAveragePool, Flatten) trains on onnxruntime-node webgpu with strict
 * placement (no node falls back to the CPU) and matches cpu. About 40 s on SwiftShader; the
 * other models place as well but take minutes there (mobilenet_v2's training export: 100 s for
 * two steps).
 */
describe.skipIf(!torchvision || (gpuUnavailable !== undefined && !gpuRequired))(
  'torchvision squeezenet1_1 on onnxruntime-node webgpu',
  () => {
    it('trains with strict placement and matches cpu', async () => {
      const case_ = join(exports(), 'squeezenet1_1-eval');
      const meta = JSON.parse(readFileSync(join(case_, 'meta.json'), 'utf8')) as Meta;
      const bytes = new Uint8Array(readFileSync(join(case_, 'model.onnx')));
      const options = {
        loss: 'softmax-cross-entropy' as const,
        trainable: meta.params.map((p) => p.name),
        hyperparams: { lr: 0.01 },
        ort,
      };
      const gpu = await OnnxTrainer.create(bytes, {
        ...options,
        executionProvider: 'webgpu',
        strictPlacement: true,
      });
      const cpu = await OnnxTrainer.create(bytes, { ...options, executionProvider: 'cpu' });
      const labels = new Float32Array(meta.input[0]! * meta.classes);
      meta.labels.forEach((c, i) => {
        labels[i * meta.classes + c] = 1;
      });
      const batch = { batch: { input: floats(join(case_, 'input.bin')) }, labels };
      const worst = await lockstep(gpu, cpu, [batch, batch]);
      await gpu.dispose();
      await cpu.dispose();
      console.log(
        `[squeezenet1_1 on webgpu] loss relative difference ${worst.loss.toExponential(2)}, parameters ${worst.params.toExponential(2)}`,
      );
      expect(worst.loss).toBeLessThan(1e-4);
      expect(worst.params).toBeLessThan(1e-4);
    }, 600_000);
  },
);
