import {
  AccSGD,
  AccSGDGradientError,
  accuracyBound,
  fusedCoefficients,
  fusedUpdate,
  type HyperparamsInput,
  relativeError,
  resolveHyperparams,
} from '@accsgd/core';
import { Float16Array } from '@petamoriken/float16';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFlatStorage, type FlatStorage } from './flat-storage.js';
import { pattern } from './test-support/compare.js';
import { findShaderF16 } from './test-support/gpu.js';
import { WebGPUAccSGD } from './webgpu-optimizer.js';

/**
 * float16 parameter and gradient storage, with float32 arithmetic and float32 momentum buffers,
 * executed on a device with `shader-f16` (lavapipe when the test adapter lacks it). The oracle is
 * @accsgd/core's float32 fused update applied to the GPU's own state before each step, then the
 * parameters rounded to float16 (round to nearest even, by @petamoriken/float16), so every step is
 * checked on its own and differences cannot compound.
 */
const f16 = await findShaderF16();
if (!f16.device) {
  if (process.env.ACCSGD_REQUIRE_SHADER_F16 === '1')
    throw new Error(`ACCSGD_REQUIRE_SHADER_F16=1 but ${f16.reason}`);
  console.warn(`[webgpu-kernel] skipping float16 storage tests: ${f16.reason}`);
}

/** float16 bits of float values (round to nearest even). */
function halfBits(values: ArrayLike<number>): Uint16Array {
  const half = Float16Array.from(values as number[]);
  return new Uint16Array(half.buffer);
}

/** The value of float16 rounding (round to nearest even). */
function toHalf(values: ArrayLike<number>): Float32Array {
  return Float32Array.from(Float16Array.from(values as number[]));
}

/** The spacing of float16 values at magnitude x (subnormal spacing 2^-24 below 2^-14). */
function halfUlp(x: number): number {
  const magnitude = Math.abs(x);
  return magnitude < 2 ** -14 ? 2 ** -24 : 2 ** (Math.floor(Math.log2(magnitude)) - 10);
}

const TENSORS = [
  { name: 'weight', shape: [9, 7] },
  { name: 'bias', shape: [7] },
  { name: 'scale', shape: [3] },
];
const HYPER: HyperparamsInput = { lr: 0.05, kappa: 100, xi: 5, weightDecay: 1e-3 };

describe.skipIf(!f16.device)(
  `float16 storage on ${f16.device ? f16.description : `no shader-f16: ${f16.reason}`}`,
  () => {
    let device: GPUDevice;
    beforeAll(async () => {
      device = await f16.device!();
    });
    afterAll(() => device?.destroy());

    type Tensor = { name: string; shape: number[] };
    const sizeOf = (t: Tensor) => t.shape.reduce((a, d) => a * d, 1);

    async function setup(
      tensors: Tensor[] = TENSORS,
    ): Promise<{ storage: FlatStorage; optimizer: WebGPUAccSGD }> {
      const storage = createFlatStorage(device, tensors, { storage: 'float16' });
      tensors.forEach((t, k) => {
        // Magnitudes from 1e-3 to 8, so the float16 grid differs across tensors.
        const init = pattern(sizeOf(t), 10 + k).map((v) => v * 8 ** (k - 1));
        storage.write(t.name, 'params', halfBits(init));
      });
      const optimizer = await WebGPUAccSGD.create(
        device,
        [{ params: storage.params, grads: storage.grads, segments: storage.segments }],
        HYPER,
        { storage: 'float16' },
      );
      return { storage, optimizer };
    }

    /**
     * Runs the steps of `schedule` (which tensors have a gradient at each step), checking each one
     * against the oracle from the GPU's own state before it. Returns how many parameter elements
     * were checked and how many matched exactly.
     */
    async function checkSteps(
      tensors: Tensor[],
      schedule: string[][],
      { storage, optimizer }: { storage: FlatStorage; optimizer: WebGPUAccSGD },
    ): Promise<{ checked: number; exact: number }> {
      const coefficients = fusedCoefficients(resolveHyperparams(HYPER));
      let exact = 0;
      let checked = 0;
      for (const [s, active] of schedule.entries()) {
        const before = await optimizer.read();
        const present: Record<string, boolean> = {};
        const expected = new Map<string, { param: Float32Array; buffer: Float32Array }>();
        for (const t of tensors) {
          const grad = toHalf(pattern(sizeOf(t), 100 * s + t.name.length).map((v) => v * 4));
          present[t.name] = active.includes(t.name);
          storage.write(t.name, 'grads', halfBits(grad));
          if (!present[t.name]) continue;
          const expectedParam = Float32Array.from(before.params.get(t.name)!);
          const previousBuffer = before.buffers.get(t.name) ?? null;
          const expectedBuffer = previousBuffer
            ? Float32Array.from(previousBuffer)
            : new Float32Array(sizeOf(t));
          fusedUpdate(expectedParam, grad, expectedBuffer, coefficients, previousBuffer === null);
          expected.set(t.name, { param: toHalf(expectedParam), buffer: expectedBuffer });
        }
        await expect(optimizer.step(present)).resolves.toEqual({ applied: true });
        const after = await optimizer.read();
        for (const t of tensors) {
          const got = after.params.get(t.name)!;
          if (!present[t.name]) {
            expect(got).toEqual(before.params.get(t.name));
            expect(after.buffers.get(t.name)).toEqual(before.buffers.get(t.name));
            continue;
          }
          const want = expected.get(t.name)!;
          // The float32 value before rounding may differ in its last bits (fused multiply-adds), which
          // can move the float16 result to a neighbour, never further.
          for (let i = 0; i < got.length; i++) {
            const e = want.param[i]!;
            expect(Math.abs(got[i]! - e)).toBeLessThanOrEqual(
              halfUlp(Math.max(Math.abs(e), Math.abs(got[i]!))),
            );
            if (got[i] === e) exact++;
            checked++;
          }
          expect(relativeError(after.buffers.get(t.name)!, want.buffer)).toBeLessThanOrEqual(
            accuracyBound('float32', 1),
          );
          // The step moved the parameters (gradients are far from zero).
          expect(got).not.toEqual(before.params.get(t.name));
        }
      }
      return { checked, exact };
    }

    it('steps tensors with gaps between them like the float32 fused update followed by float16 rounding', async () => {
      const prepared = await setup();
      // Which tensors have a gradient at each step: 'scale' starts late, 'bias' skips step 3.
      const { checked, exact } = await checkSteps(
        TENSORS,
        [
          ['weight', 'bias'],
          ['weight', 'bias', 'scale'],
          ['weight', 'scale'],
          ['weight', 'bias', 'scale'],
        ],
        prepared,
      );
      // 4 steps over 63, 7 and 3 elements, minus the skipped ones.
      expect(checked).toBe(4 * 63 + 3 * 7 + 3 * 3);
      expect(exact / checked).toBeGreaterThan(0.9);
      expect(prepared.optimizer.paramGroups[0]!.step).toBe(4);
      prepared.optimizer.destroy();
      prepared.storage.destroy();
    });

    it('takes the table-free path for one tensor that has a buffer, and finds the lowest non-finite element there', async () => {
      // One tensor fills its window with no gap, so every step after the first needs no segment lookup.
      const one = [{ name: 'w', shape: [1500] }];
      const prepared = await setup(one);
      const { checked, exact } = await checkSteps(one, [['w'], ['w'], ['w']], prepared);
      expect(checked).toBe(3 * 1500);
      expect(exact / checked).toBeGreaterThan(0.9);
      const before = await prepared.optimizer.read();
      for (const bad of [[1499], [1000, 600], [7, 1300]]) {
        const grad = halfBits(pattern(1500, 9));
        for (const at of bad) grad[at] = 0x7e00; // a float16 NaN
        prepared.storage.write('w', 'grads', grad);
        await expect(prepared.optimizer.step()).rejects.toThrow(`"w": element ${Math.min(...bad)} is NaN`);
      }
      expect(await prepared.optimizer.read()).toEqual(before);
      prepared.optimizer.destroy();
      prepared.storage.destroy();
    });

    it('rejects a float16 infinity or NaN in a gradient, naming the element, and changes nothing', async () => {
      const { storage, optimizer } = await setup();
      TENSORS.forEach((t) => storage.write(t.name, 'grads', halfBits(pattern(sizeOf(t), 3))));
      await optimizer.step();
      const before = await optimizer.read();
      for (const [at, bits, shown] of [
        [40, 0x7c00, 'Infinity'],
        [5, 0xfe00, 'NaN'],
      ] as const) {
        const grad = halfBits(pattern(63, 4));
        grad[at] = bits;
        storage.write('weight', 'grads', grad);
        const error = await optimizer.step().catch((e: unknown) => e);
        expect(error).toBeInstanceOf(AccSGDGradientError);
        expect((error as Error).message).toMatch(new RegExp(`"weight": element ${at} is ${shown}`));
      }
      expect(await optimizer.read()).toEqual(before);
      optimizer.destroy();
      storage.destroy();
    });

    it('exports float32 momentum buffers in the core state file that the CPU optimizer imports', async () => {
      const { storage, optimizer } = await setup();
      TENSORS.forEach((t) =>
        storage.write(
          t.name,
          'grads',
          halfBits(
            pattern(
              t.shape.reduce((a, d) => a * d, 1),
              5,
            ),
          ),
        ),
      );
      await optimizer.step();
      await optimizer.step({ weight: true, bias: true, scale: false });
      const { params, buffers } = await optimizer.read();
      const cpu = new AccSGD(
        [
          {
            params: TENSORS.map((t) => Float32Array.from(params.get(t.name)!)),
            names: TENSORS.map((t) => t.name),
            shapes: TENSORS.map((t) => t.shape),
          },
        ],
        HYPER,
      );
      cpu.importState(await optimizer.exportState());
      for (const t of TENSORS) expect(cpu.buffer(t.name)).toEqual(buffers.get(t.name));
      expect(cpu.paramGroups[0]!.step).toBe(2);
      optimizer.destroy();
      storage.destroy();
    });
  },
);
