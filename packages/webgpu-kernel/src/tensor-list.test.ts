import {
  AccSGD,
  AccSGDConfigError,
  AccSGDGradientError,
  accuracyBound,
  type HyperparamsInput,
  relativeError,
} from '@accsgd/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFlatStorage } from './flat-storage.js';
import { cpuTwin, GAP_FILL, pattern } from './test-support/compare.js';
import { noGPU, noGPUReason, testDevice } from './test-support/gpu.js';
import { type TensorInput, WebGPUAccSGD, type WebGPUAccSGDOptions } from './webgpu-optimizer.js';

const STORAGE = 0x80;
const COPY_SRC = 0x4;
const COPY_DST = 0x8;
const MAP_READ = 0x1;

interface ListTensor {
  name: string;
  size: number;
  /** Extra float32 elements after the tensor in its buffers (filled with GAP_FILL, never written). */
  slack?: number;
}

interface ListGroup {
  hyperparams: Partial<HyperparamsInput>;
  tensors: ListTensor[];
}

async function readWhole(device: GPUDevice, buffer: GPUBuffer): Promise<Float32Array> {
  const staging = device.createBuffer({ size: buffer.size, usage: MAP_READ | COPY_DST });
  const encoder = device.createCommandEncoder();
  encoder.copyBufferToBuffer(buffer, 0, staging, 0, buffer.size);
  device.queue.submit([encoder.finish()]);
  await staging.mapAsync(MAP_READ);
  const out = new Float32Array(staging.getMappedRange().slice(0));
  staging.destroy();
  return out;
}

/** The same problem as list-form groups on the GPU (one params and one grads buffer per tensor) and on the CPU. */
async function listTwins(
  device: GPUDevice,
  groups: ListGroup[],
  defaults: HyperparamsInput,
  options: WebGPUAccSGDOptions = {},
) {
  const init = new Map<string, Float32Array>();
  const buffers = new Map<string, { params: GPUBuffer; grads: GPUBuffer }>();
  let seed = 1;
  const inputs = groups.map((group) => ({
    ...group.hyperparams,
    tensors: group.tensors.map((t): TensorInput => {
      const values = pattern(t.size, seed++);
      init.set(t.name, values);
      const length = Math.max(t.size + (t.slack ?? 0), 1);
      const params = device.createBuffer({
        label: `list params ${t.name}`,
        size: length * 4,
        usage: STORAGE | COPY_SRC | COPY_DST,
      });
      const grads = device.createBuffer({
        label: `list grads ${t.name}`,
        size: length * 4,
        usage: STORAGE | COPY_SRC | COPY_DST,
      });
      const filled = new Float32Array(length).fill(GAP_FILL);
      filled.set(values);
      device.queue.writeBuffer(params, 0, filled);
      buffers.set(t.name, { params, grads });
      return { name: t.name, params, grads, elements: t.size };
    }),
  }));
  const gpu = await WebGPUAccSGD.create(device, inputs, defaults, options);
  const { cpu, cpuParams } = cpuTwin(groups, init, defaults);
  function writeGrads(grads: Record<string, Float32Array | null>): void {
    for (const [name, grad] of Object.entries(grads))
      if (grad && grad.length > 0)
        device.queue.writeBuffer(buffers.get(name)!.grads, 0, grad as Float32Array<ArrayBuffer>);
  }
  async function step(grads: Record<string, Float32Array | null>): Promise<void> {
    writeGrads(grads);
    await gpu.step(Object.fromEntries(gpu.paramNames.map((n) => [n, grads[n] != null])));
    cpu.step(grads);
  }
  function destroy(): void {
    gpu.destroy();
    for (const { params, grads } of buffers.values()) {
      params.destroy();
      grads.destroy();
    }
  }
  return { gpu, cpu, cpuParams, init, buffers, writeGrads, step, destroy };
}

function expectMatches(
  read: { params: Map<string, Float32Array>; buffers: Map<string, Float32Array | null> },
  cpu: AccSGD,
  cpuParams: Map<string, Float32Array>,
  t: number,
): void {
  for (const [name, expected] of cpuParams) {
    expect(relativeError(read.params.get(name)!, expected), `param ${name} at step ${t}`).toBeLessThanOrEqual(
      accuracyBound('float32', t),
    );
    const cpuBuffer = cpu.buffer(name);
    if (cpuBuffer === null) expect(read.buffers.get(name), `buffer ${name} at step ${t}`).toBeNull();
    else
      expect(
        relativeError(read.buffers.get(name)!, cpuBuffer),
        `buffer ${name} at step ${t}`,
      ).toBeLessThanOrEqual(accuracyBound('float32', t));
  }
}

describe.skipIf(noGPU)(
  `WebGPUAccSGD, list form ({ tensors }), on ${noGPU ? `no adapter: ${noGPUReason}` : 'Dawn'}`,
  () => {
    let device: GPUDevice;
    beforeAll(async () => {
      device = await testDevice();
    });
    afterAll(() => device?.destroy());

    it('matches the CPU optimizer over steps with a skipped tensor, a late first step and a learning-rate change, one dispatch per tensor', async () => {
      const twin = await listTwins(
        device,
        [
          {
            hyperparams: { lr: 0.05, weightDecay: 0.01 },
            tensors: [
              { name: 'a', size: 1000, slack: 7 },
              { name: 'b', size: 1, slack: 3 },
              { name: 'c', size: 777 },
              { name: 'empty', size: 0 },
            ],
          },
          {
            hyperparams: { kappa: 100, xi: 3, smallConst: 0.5 },
            tensors: [
              { name: 'd', size: 4096 },
              { name: 'late', size: 64 },
            ],
          },
          { hyperparams: {}, tensors: [{ name: 'never', size: 33 }] },
        ],
        { lr: 0.1 },
      );
      const { gpu, cpu, cpuParams } = twin;
      // One window per non-empty tensor; whole-vec4 tensors (a, d, late) get the vec4 program, b, c and never the scalar one.
      expect(gpu.dispatchesPerStep).toBe(6);
      expect(gpu.windowsByAccess).toEqual({ scalar: 3, vec4: 3 });
      expect(gpu.paramNames).toEqual(['a', 'b', 'c', 'empty', 'd', 'late', 'never']);
      const sizes: Record<string, number> = { a: 1000, b: 1, c: 777, empty: 0, d: 4096, late: 64, never: 33 };
      const schedule: string[][] = [
        ['a', 'b', 'd', 'empty'],
        ['a', 'c'],
        ['a', 'b', 'c', 'd', 'late'],
        ['c', 'late'],
        ['a', 'b', 'c', 'd', 'empty', 'late'],
      ];
      for (let t = 1; t <= schedule.length; t++) {
        if (t === 3) {
          gpu.setLearningRate(0.2, 0);
          cpu.setLearningRate(0.2, 0);
        }
        const grads = Object.fromEntries(
          schedule[t - 1]!.map((n) => [n, pattern(sizes[n]!, 100 * t + n.length)]),
        );
        await twin.step(grads);
        expectMatches(await gpu.read(), cpu, cpuParams, t);
        expect(gpu.hasBuffer('late')).toBe(t >= 3);
      }
      expect(await gpu.readParam('never')).toEqual(twin.init.get('never'));
      expect(gpu.paramGroups.map((g) => g.step)).toEqual([5, 4, 0]);
      expect(cpu.paramGroups.map((g) => g.step)).toEqual([5, 4, 0]);
      // Elements of the callers' buffers beyond the tensors were never written.
      const a = await readWhole(device, twin.buffers.get('a')!.params);
      expect([...a.subarray(1000)]).toEqual(new Array(7).fill(GAP_FILL));
      const b = await readWhole(device, twin.buffers.get('b')!.params);
      expect([...b.subarray(1)]).toEqual(new Array(3).fill(GAP_FILL));
      twin.destroy();
    });

    it('splits a tensor beyond the binding limit into windows and mixes with flat-form groups, with the same results', async () => {
      const twin = await listTwins(
        device,
        [
          {
            hyperparams: {},
            tensors: [
              { name: 'x', size: 3000 },
              { name: 'y', size: 10 },
            ],
          },
        ],
        { lr: 0.1 },
        { maxBindingBytes: 256 },
      );
      expect(twin.gpu.dispatchesPerStep).toBe(Math.ceil(3000 / 64) + 1);
      for (let t = 1; t <= 3; t++) {
        await twin.step({ x: pattern(3000, t), y: t === 2 ? null : pattern(10, 10 + t) });
        expectMatches(await twin.gpu.read(), twin.cpu, twin.cpuParams, t);
      }
      twin.destroy();

      // One flat-form group and one list-form group in one optimizer.
      const flat = createFlatStorage(device, [{ name: 'f', shape: [100] }]);
      const fInit = pattern(100, 7);
      flat.write('f', 'params', fInit);
      const usage = STORAGE | COPY_SRC | COPY_DST;
      const lp = device.createBuffer({ size: 40, usage });
      const lg = device.createBuffer({ size: 40, usage });
      const lInit = pattern(10, 8);
      device.queue.writeBuffer(lp, 0, lInit as Float32Array<ArrayBuffer>);
      const gpu = await WebGPUAccSGD.create(
        device,
        [
          { params: flat.params, grads: flat.grads, segments: flat.segments },
          { lr: 0.3, tensors: [{ name: 'l', params: lp, grads: lg, elements: 10, shape: [2, 5] }] },
        ],
        { lr: 0.1 },
      );
      const cpuF = Float32Array.from(fInit);
      const cpuL = Float32Array.from(lInit);
      const cpu = new AccSGD(
        [
          { params: [cpuF], names: ['f'] },
          { lr: 0.3, params: [cpuL], names: ['l'] },
        ],
        { lr: 0.1 },
      );
      expect(gpu.dispatchesPerStep).toBe(2);
      for (let t = 1; t <= 2; t++) {
        const grads = { f: pattern(100, 20 + t), l: pattern(10, 30 + t) };
        flat.write('f', 'grads', grads.f);
        device.queue.writeBuffer(lg, 0, grads.l as Float32Array<ArrayBuffer>);
        await gpu.step();
        cpu.step(grads);
        expectMatches(
          await gpu.read(),
          cpu,
          new Map([
            ['f', cpuF],
            ['l', cpuL],
          ]),
          t,
        );
      }
      gpu.destroy();
      flat.destroy();
      lp.destroy();
      lg.destroy();
    });

    it('rejects bad element counts, too-small buffers, missing usages and shared buffers before creating anything', async () => {
      const usage = STORAGE | COPY_SRC | COPY_DST;
      const made: GPUBuffer[] = [];
      const buffer = (size: number, u = usage) => {
        const b = device.createBuffer({ size, usage: u });
        made.push(b);
        return b;
      };
      const p = buffer(64);
      const g = buffer(64);
      const initial = pattern(16, 3);
      device.queue.writeBuffer(p, 0, initial as Float32Array<ArrayBuffer>);
      const create = (tensors: unknown, extra: Record<string, unknown> = {}) =>
        WebGPUAccSGD.create(device, [{ ...extra, tensors } as never], { lr: 0.1 });
      const cases: [unknown, string, Record<string, unknown>?][] = [
        [[], 'groups[0].tensors'],
        [[{ params: p, grads: g, elements: -1 }], 'groups[0].tensors[0].elements'],
        [[{ params: p, grads: g, elements: 2.5 }], 'groups[0].tensors[0].elements'],
        [[{ params: p, grads: g }], 'groups[0].tensors[0].elements'],
        [[{ params: p, grads: g, elements: 16, shape: [3, 5] }], 'groups[0].tensors[0].shape'],
        // 17 float32 elements need 68 bytes; the buffers have 64.
        [[{ params: p, grads: g, elements: 17 }], 'groups[0].tensors[0].params'],
        [[{ params: p, grads: buffer(60), elements: 16 }], 'groups[0].tensors[0].grads'],
        [
          [{ params: buffer(64, COPY_SRC | COPY_DST), grads: g, elements: 16 }],
          'groups[0].tensors[0].params',
        ],
        [[{ params: p, grads: buffer(64, COPY_DST), elements: 16 }], 'groups[0].tensors[0].grads'],
        [[{ params: p, grads: p, elements: 16 }], 'groups[0].tensors[0].grads'],
        [
          [
            { params: p, grads: g, elements: 16 },
            { params: buffer(64), grads: g, elements: 16 },
          ],
          'groups[0].tensors[1].grads',
        ],
        [
          [
            { name: 'w', params: p, grads: g, elements: 16 },
            { name: 'w', params: buffer(64), grads: buffer(64), elements: 16 },
          ],
          'groups[0].tensors[1].name',
        ],
        [[{ params: p, grads: g, elements: 16 }], 'groups[0].segments', { segments: [] }],
      ];
      for (const [tensors, field, extra] of cases) {
        const error = await create(tensors, extra).catch((e: unknown) => e);
        expect(error, field).toBeInstanceOf(AccSGDConfigError);
        expect((error as AccSGDConfigError).field, JSON.stringify(field)).toBe(field);
      }
      // Nothing was dispatched: the caller's parameters are as they were.
      expect(await readWhole(device, p)).toEqual(initial);
      // Reading parameters back needs COPY_SRC on that tensor's params buffer, checked at the call.
      const noCopy = await WebGPUAccSGD.create(
        device,
        [{ tensors: [{ name: 'q', params: buffer(64, STORAGE | COPY_DST), grads: g, elements: 16 }] }],
        { lr: 0.1 },
      );
      await expect(noCopy.readParam('q')).rejects.toThrow(/groups\[0\]\.tensors\[0\]\.params/);
      noCopy.destroy();
      for (const b of made) b.destroy();
    });

    it('rejects or skips a step with a non-finite gradient, changing nothing in any tensor or group', async () => {
      for (const nonFinite of ['error', 'skip-step'] as const) {
        const twin = await listTwins(
          device,
          [
            {
              hyperparams: {},
              tensors: [
                { name: 'a', size: 100 },
                { name: 'b', size: 30 },
              ],
            },
            { hyperparams: {}, tensors: [{ name: 'c', size: 40 }] },
          ],
          { lr: 0.1 },
          { nonFinite },
        );
        await twin.step({ a: pattern(100, 1), b: null, c: pattern(40, 2) });
        const before = await twin.gpu.read();
        const steps = twin.gpu.paramGroups.map((g) => g.step);
        const bad = pattern(30, 3);
        bad[5] = Number.NaN;
        twin.writeGrads({ a: pattern(100, 4), b: bad, c: pattern(40, 5) });
        const stepping = twin.gpu.step();
        if (nonFinite === 'error') {
          const error = await stepping.catch((e: unknown) => e);
          expect(error).toBeInstanceOf(AccSGDGradientError);
          expect((error as Error).message).toMatch(/"?b"?.*element 5 is NaN/);
        } else {
          const result = await stepping;
          expect(result.applied).toBe(false);
          expect((result as { reason: string }).reason).toMatch(/"b".*element 5 is NaN/);
        }
        const after = await twin.gpu.read();
        expect(after.params).toEqual(before.params);
        expect(after.buffers).toEqual(before.buffers);
        expect(twin.gpu.hasBuffer('b')).toBe(false);
        expect(twin.gpu.paramGroups.map((g) => g.step)).toEqual(steps);
        twin.destroy();
      }
    });

    it('exports a state file that a flat-form optimizer with the same names imports and continues identically', async () => {
      const groups: ListGroup[] = [
        {
          hyperparams: { lr: 0.05 },
          tensors: [
            { name: 'w', size: 48 },
            { name: 'bias', size: 5 },
            { name: 'late', size: 12 },
          ],
        },
        { hyperparams: { kappa: 200 }, tensors: [{ name: 'head', size: 20 }] },
      ];
      const list = await listTwins(device, groups, { lr: 0.1 });
      await list.step({ w: pattern(48, 1), bias: pattern(5, 2), late: null, head: pattern(20, 3) });
      await list.step({ w: pattern(48, 4), bias: null, late: null, head: pattern(20, 5) });
      list.gpu.setLearningRate(0.07, 1);
      const state = await list.gpu.exportState();
      const read = await list.gpu.read();

      const storages = groups.map((group) =>
        createFlatStorage(
          device,
          group.tensors.map((t) => ({ name: t.name, shape: [t.size] })),
        ),
      );
      groups.forEach((group, g) => {
        for (const t of group.tensors) storages[g]!.write(t.name, 'params', read.params.get(t.name)!);
      });
      const flat = await WebGPUAccSGD.create(
        device,
        storages.map((s) => ({ params: s.params, grads: s.grads, segments: s.segments })),
        { lr: 0.9 },
      );
      await flat.importState(state);
      expect(flat.paramGroups).toEqual(list.gpu.paramGroups);
      expect(await flat.read()).toEqual(read);

      const schedule: Record<string, Float32Array | null>[] = [
        { w: pattern(48, 6), bias: pattern(5, 7), late: pattern(12, 8), head: null },
        { w: pattern(48, 9), bias: pattern(5, 10), late: pattern(12, 11), head: pattern(20, 12) },
      ];
      for (const grads of schedule) {
        list.writeGrads(grads);
        groups.forEach((group, g) => {
          for (const t of group.tensors) {
            const grad = grads[t.name];
            if (grad) storages[g]!.write(t.name, 'grads', grad);
          }
        });
        const present = Object.fromEntries(Object.entries(grads).map(([n, v]) => [n, v !== null]));
        await list.gpu.step(present);
        await flat.step(present);
        expect(await flat.read()).toEqual(await list.gpu.read());
        expect(flat.paramGroups).toEqual(list.gpu.paramGroups);
      }
      flat.destroy();
      for (const s of storages) s.destroy();
      list.destroy();
    });
  },
);
