import { AccSGD, AccSGDGradientError, accuracyBound, relativeError } from '@accsgd/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AccSGDDeviceError } from './errors.js';
import { pattern, twinOptimizers } from './test-support/compare.js';
import { noGPU, noGPUReason, testDevice } from './test-support/gpu.js';
import { WebGPUAccSGD, type WebGPUAccSGDOptions } from './webgpu-optimizer.js';

const STORAGE = 0x80;
const COPY_SRC = 0x4;
const COPY_DST = 0x8;

/** Every tensor's parameters and buffer, group step counts and buffer flags, for "nothing changed" checks. */
async function snapshot(gpu: WebGPUAccSGD) {
  const { params, buffers } = await gpu.read();
  return {
    params: [...params].map(([n, v]) => [n, Array.from(v)]),
    buffers: [...buffers].map(([n, v]) => [n, v && Array.from(v)]),
    groups: gpu.paramGroups,
    hasBuffer: gpu.paramNames.map((n) => gpu.hasBuffer(n)),
  };
}

describe.skipIf(noGPU)(
  `WebGPUAccSGD ordering, atomicity and resource guarantees on ${noGPU ? `no adapter: ${noGPUReason}` : 'Dawn'}`,
  () => {
    let device: GPUDevice;
    beforeAll(async () => {
      device = await testDevice();
    });
    afterAll(() => device?.destroy());

    const oneTensor = [{ hyperparams: {}, tensors: [{ name: 'w', size: 24 }] }];

    describe('call order (no awaits between calls)', () => {
      it('importState then step: the step uses the imported hyperparameters and buffers', async () => {
        const source = new AccSGD([{ params: [pattern(24, 7)], names: ['w'] }], { lr: 0.5, kappa: 500 });
        source.step([pattern(24, 8)]);
        const bytes = source.exportState();
        const twin = await twinOptimizers(device, oneTensor, { lr: 0.1 });
        // The CPU twin does the same calls in the same order.
        twin.cpu.importState(bytes);
        void twin.gpu.importState(bytes);
        await twin.step({ w: pattern(24, 9) });
        expect(twin.gpu.paramGroups).toEqual(twin.cpu.paramGroups);
        expect(twin.gpu.paramGroups[0]!.hyperparams).toMatchObject({ lr: 0.5, kappa: 500 });
        expect(relativeError(await twin.gpu.readParam('w'), twin.cpuParams.get('w')!)).toBeLessThanOrEqual(
          accuracyBound('float32', 2),
        );
        twin.gpu.destroy();
      });

      it('importState then setLearningRate: the later learning rate wins, as in PyTorch', async () => {
        const source = new AccSGD([{ params: [pattern(24, 7)], names: ['w'] }], { lr: 0.5 });
        source.step([pattern(24, 8)]);
        const bytes = source.exportState();
        const twin = await twinOptimizers(device, oneTensor, { lr: 0.1 });
        twin.cpu.importState(bytes);
        twin.cpu.setLearningRate(0.03);
        const imported = twin.gpu.importState(bytes);
        twin.gpu.setLearningRate(0.03);
        await twin.step({ w: pattern(24, 9) });
        await imported;
        expect(twin.gpu.paramGroups[0]!.hyperparams.lr).toBe(0.03);
        expect(relativeError(await twin.gpu.readParam('w'), twin.cpuParams.get('w')!)).toBeLessThanOrEqual(
          accuracyBound('float32', 2),
        );
        twin.gpu.destroy();
      });

      it('importState then a setLearningRate the import makes invalid: no group takes it', async () => {
        // lr 1e30 is valid for xi 10 (the float32 multiplier bufFromGrad = -smallConst * xi * lr =
        // -7e30) when it is called, but the import queued before it gives the second group kappa
        // 1e10 and xi 1e9, where bufFromGrad = -7e38 overflows float32 (largest 3.4e38).
        // The change is dropped for every group, not applied to the first and refused by the second.
        const twoGroups = [
          { hyperparams: {}, tensors: [{ name: 'a', size: 8 }] },
          { hyperparams: {}, tensors: [{ name: 'b', size: 8 }] },
        ];
        const source = new AccSGD(
          [
            { params: [pattern(8, 1)], names: ['a'] },
            { params: [pattern(8, 2)], names: ['b'], kappa: 1e10, xi: 1e9 },
          ],
          { lr: 0.5 },
        );
        const bytes = source.exportState();
        const twin = await twinOptimizers(device, twoGroups, { lr: 0.1 });
        const imported = twin.gpu.importState(bytes);
        twin.gpu.setLearningRate(1e30);
        await imported;
        await twin.gpu.read();
        expect(twin.gpu.paramGroups.map((g) => [g.hyperparams.lr, g.hyperparams.kappa])).toEqual([
          [0.5, 1000],
          [0.5, 1e10],
        ]);
        twin.gpu.destroy();
      });

      it('setLearningRate then importState: the import wins', async () => {
        const source = new AccSGD([{ params: [pattern(24, 7)], names: ['w'] }], { lr: 0.5 });
        const bytes = source.exportState();
        const twin = await twinOptimizers(device, oneTensor, { lr: 0.1 });
        twin.gpu.setLearningRate(0.03);
        await twin.gpu.importState(bytes);
        expect(twin.gpu.paramGroups[0]!.hyperparams.lr).toBe(0.5);
        twin.gpu.destroy();
      });

      it('exportState then setLearningRate: the file has the rate of its own time', async () => {
        const twin = await twinOptimizers(device, oneTensor, { lr: 0.1 });
        const exported = twin.gpu.exportState();
        twin.gpu.setLearningRate(0.02);
        const cpu = new AccSGD([{ params: [new Float32Array(24)], names: ['w'] }], { lr: 0.7 });
        cpu.importState(await exported);
        expect(cpu.paramGroups[0]!.hyperparams.lr).toBe(0.1);
        expect((await twin.gpu.read()) && twin.gpu.paramGroups[0]!.hyperparams.lr).toBe(0.02);
        twin.gpu.destroy();
      });

      it('step then setLearningRate: the pending step keeps the old rate, the next one uses the new', async () => {
        const twin = await twinOptimizers(device, oneTensor, { lr: 0.1 });
        const grad1 = pattern(24, 1);
        const grad2 = pattern(24, 2);
        // Upload both gradients' effects in order: step 1 must run with lr 0.1 although the change
        // below is made before it runs.
        device.queue.writeBuffer(twin.buffers[0]!.grads, 0, grad1 as Float32Array<ArrayBuffer>);
        const first = twin.gpu.step();
        twin.gpu.setLearningRate(0.02);
        expect(twin.gpu.paramGroups[0]!.hyperparams.lr).toBe(0.02); // shown at once
        expect(() => twin.gpu.setLearningRate(-1)).toThrow(/lr/); // still checked at once
        await first;
        twin.cpu.step([grad1]);
        twin.cpu.setLearningRate(0.02);
        expect(twin.gpu.paramGroups[0]!.hyperparams.lr).toBe(0.02);
        await twin.step({ w: grad2 });
        expect(relativeError(await twin.gpu.readParam('w'), twin.cpuParams.get('w')!)).toBeLessThanOrEqual(
          accuracyBound('float32', 2),
        );
        twin.gpu.destroy();
      });
    });

    it('destroys what it created when create fails part-way', async () => {
      const own = await testDevice();
      const created: { label: string; destroyed: boolean }[] = [];
      const original = own.createBuffer.bind(own);
      own.createBuffer = (descriptor: GPUBufferDescriptor) => {
        if (descriptor.label?.includes('group 1 uniforms')) throw new Error('forced failure');
        const buffer = original(descriptor);
        const record = { label: descriptor.label ?? '', destroyed: false };
        created.push(record);
        const destroy = buffer.destroy.bind(buffer);
        buffer.destroy = () => {
          record.destroyed = true;
          destroy();
        };
        return buffer;
      };
      const twin = twinOptimizers(
        own,
        [
          { hyperparams: {}, tensors: [{ name: 'a', size: 16 }] },
          { hyperparams: {}, tensors: [{ name: 'b', size: 16 }] },
        ],
        { lr: 0.1 },
      );
      const error = await twin.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(AccSGDDeviceError);
      expect((error as Error).message).toMatch(/forced failure/);
      const mine = created.filter((b) => !b.label.startsWith('test '));
      expect(mine.map((b) => b.label)).toEqual(
        expect.arrayContaining(['accsgd status', 'accsgd group 0 momentum', 'accsgd group 1 momentum']),
      );
      expect(mine.filter((b) => !b.destroyed)).toEqual([]);
      own.destroy();
    });

    describe('two groups in one flat buffer', () => {
      for (const options of [{}, { maxBindingBytes: 1024 }] as WebGPUAccSGDOptions[]) {
        it(`sizes momentum from each group's first element and matches the CPU optimizer ${JSON.stringify(options)}`, async () => {
          const own = await testDevice();
          const sizes = new Map<string, number>();
          const original = own.createBuffer.bind(own);
          own.createBuffer = (descriptor: GPUBufferDescriptor) => {
            sizes.set(descriptor.label ?? '', descriptor.size);
            return original(descriptor);
          };
          // Group 0: a [0, 300), b [300, 1000); group 1: c [1030, 1330), d [1400, 1530).
          const layout = [
            [
              { name: 'a', offset: 0, size: 300 },
              { name: 'b', offset: 300, size: 700 },
            ],
            [
              { name: 'c', offset: 1030, size: 300 },
              { name: 'd', offset: 1400, size: 130 },
            ],
          ];
          const length = 1600;
          const flat = pattern(length, 11);
          const usage = STORAGE | COPY_SRC | COPY_DST;
          const params = own.createBuffer({ label: 'test params', size: length * 4, usage });
          const grads = own.createBuffer({ label: 'test grads', size: length * 4, usage });
          own.queue.writeBuffer(params, 0, flat as Float32Array<ArrayBuffer>);
          const gpu = await WebGPUAccSGD.create(
            own,
            [
              { params, grads, segments: layout[0]! },
              { params, grads, segments: layout[1]!, lr: 0.05, weightDecay: 0.01 },
            ],
            { lr: 0.1 },
            options,
          );
          const alignElements = own.limits.minStorageBufferOffsetAlignment / 4;
          expect(sizes.get('accsgd group 0 momentum')).toBe(1000 * 4);
          const base = Math.floor(1030 / alignElements) * alignElements;
          expect(sizes.get('accsgd group 1 momentum')).toBe((1530 - base) * 4);
          const cpuParams = layout.flat().map((s) => flat.slice(s.offset, s.offset + s.size));
          const cpu = new AccSGD(
            [
              { params: cpuParams.slice(0, 2), names: ['a', 'b'] },
              { params: cpuParams.slice(2), names: ['c', 'd'], lr: 0.05, weightDecay: 0.01 },
            ],
            { lr: 0.1 },
          );
          for (let t = 1; t <= 3; t++) {
            const g = pattern(length, 20 + t);
            own.queue.writeBuffer(grads, 0, g as Float32Array<ArrayBuffer>);
            const present = t === 2 ? { a: true, c: true } : undefined;
            await gpu.step(present);
            cpu.step(
              layout
                .flat()
                .map((s) => (present && !(s.name in present) ? null : g.slice(s.offset, s.offset + s.size))),
            );
          }
          const got = await gpu.read();
          for (const [k, s] of layout.flat().entries()) {
            expect(relativeError(got.params.get(s.name)!, cpuParams[k]!)).toBeLessThanOrEqual(
              accuracyBound('float32', 3),
            );
            expect(relativeError(got.buffers.get(s.name)!, cpu.buffer(s.name)!)).toBeLessThanOrEqual(
              accuracyBound('float32', 3),
            );
          }
          // The state file round-trips through the relative indexing too.
          const bytes = await gpu.exportState();
          await gpu.importState(bytes);
          expect(await gpu.exportState()).toEqual(bytes);
          gpu.destroy();
          own.destroy();
        });
      }
    });

    describe('non-finite gradients', () => {
      const groups = [
        {
          hyperparams: {},
          tensors: [
            { name: 'a', size: 40 },
            { name: 'b', size: 9 },
          ],
        },
        { hyperparams: { lr: 0.05 }, tensors: [{ name: 'c', size: 600 }] },
      ];

      async function prepared(options: WebGPUAccSGDOptions = {}) {
        const twin = await twinOptimizers(device, groups, { lr: 0.1 }, options);
        // Two steps without 'b', so 'b' has no buffer yet.
        await twin.step({ a: pattern(40, 1), b: null, c: pattern(600, 2) });
        await twin.step({ a: pattern(40, 3), b: null, c: pattern(600, 4) });
        return twin;
      }

      function upload(twin: Awaited<ReturnType<typeof prepared>>, grads: Record<string, Float32Array>) {
        for (const [name, grad] of Object.entries(grads)) {
          const g = groups.findIndex((group) => group.tensors.some((t) => t.name === name));
          const segment = twin.layouts[g]!.segments.find((s) => s.name === name)!;
          device.queue.writeBuffer(
            twin.buffers[g]!.grads,
            segment.offset * 4,
            grad as Float32Array<ArrayBuffer>,
          );
        }
      }

      it("rejects NaN in the last tensor by default ('error'), changing nothing", async () => {
        const twin = await prepared();
        expect(twin.gpu.nonFinite).toBe('error');
        const before = await snapshot(twin.gpu);
        const c = pattern(600, 5);
        c[599] = Number.NaN;
        upload(twin, { a: pattern(40, 5), b: pattern(9, 5), c });
        const error = await twin.gpu.step().catch((e: unknown) => e);
        expect(error).toBeInstanceOf(AccSGDGradientError);
        expect(error).toMatchObject({ param: 'c' });
        expect((error as Error).message).toBe(
          'gradient for parameter "c": element 599 is NaN (non-finite gradients are rejected; see the nonFinite option)',
        );
        expect(await snapshot(twin.gpu)).toEqual(before);
        expect(twin.gpu.hasBuffer('b')).toBe(false);
        // Infinity in the first tensor, too; then a finite step applies as usual.
        const a = pattern(40, 6);
        a[3] = Number.NEGATIVE_INFINITY;
        upload(twin, { a, c: pattern(600, 6) });
        await expect(twin.gpu.step()).rejects.toThrow(/"a": element 3 is -Infinity/);
        expect(await snapshot(twin.gpu)).toEqual(before);
        await twin.step({ a: pattern(40, 7), b: pattern(9, 7), c: pattern(600, 7) });
        for (const name of ['a', 'b', 'c']) {
          expect(
            relativeError(await twin.gpu.readParam(name), twin.cpuParams.get(name)!),
          ).toBeLessThanOrEqual(accuracyBound('float32', 3));
        }
        expect(twin.gpu.paramGroups.map((g) => g.step)).toEqual([3, 3]);
        twin.gpu.destroy();
      });

      it('ignores non-finite values in tensors without a gradient this step and in gaps', async () => {
        const twin = await prepared();
        const b = new Float32Array(9).fill(Number.NaN);
        upload(twin, { b });
        await expect(twin.gpu.step({ a: true, c: true })).resolves.toEqual({ applied: true });
        twin.gpu.destroy();
      });

      it("'skip-step' resolves as skipped, changing nothing", async () => {
        const twin = await prepared({ nonFinite: 'skip-step' });
        const before = await snapshot(twin.gpu);
        const c = pattern(600, 5);
        c[100] = Number.POSITIVE_INFINITY;
        upload(twin, { a: pattern(40, 5), b: pattern(9, 5), c });
        const result = await twin.gpu.step();
        expect(result).toEqual({
          applied: false,
          reason:
            'gradient for parameter "c": element 100 is Infinity (non-finite gradients are rejected; see the nonFinite option)',
        });
        expect(await snapshot(twin.gpu)).toEqual(before);
        twin.gpu.destroy();
      });

      it("'allow' computes with it", async () => {
        const twin = await prepared({ nonFinite: 'allow' });
        const c = pattern(600, 5);
        c[599] = Number.NaN;
        upload(twin, { a: pattern(40, 5), c });
        await expect(twin.gpu.step({ a: true, c: true })).resolves.toEqual({ applied: true });
        const got = await twin.gpu.readParam('c');
        expect(got[599]).toBeNaN();
        expect(got[0]).not.toBeNaN();
        expect(twin.gpu.paramGroups.map((g) => g.step)).toEqual([3, 3]);
        twin.gpu.destroy();
      });

      it('finds the element in the vec4 program too', async () => {
        const twin = await twinOptimizers(
          device,
          [{ hyperparams: {}, tensors: [{ name: 'v', size: 4096 }] }],
          { lr: 0.1 },
        );
        expect(twin.gpu.windowsByAccess.vec4).toBe(1);
        for (const at of [4095, 2050, 7]) {
          const v = pattern(4096, at);
          v[at] = Number.NaN;
          device.queue.writeBuffer(twin.buffers[0]!.grads, 0, v as Float32Array<ArrayBuffer>);
          await expect(twin.gpu.step()).rejects.toThrow(`"v": element ${at} is NaN`);
        }
        expect(await twin.gpu.readParam('v')).toEqual(twin.init.get('v'));
        expect(twin.gpu.hasBuffer('v')).toBe(false);
        twin.gpu.destroy();
      });

      it('finds the lowest element once every tensor has a buffer (no table walk), in full chunks and the tail', async () => {
        // One tensor that already has a buffer and gets a gradient: the window needs no segment
        // lookup, so the scan and the update take their table-free loop. 4,132 elements are two
        // full vec4 chunks (2,048 elements each) and a 36-element tail; 1,027 elements take the
        // scalar program: two full chunks of 512 and a 3-element tail.
        for (const [size, access] of [
          [4132, 'vec4'],
          [1027, 'scalar'],
        ] as const) {
          const twin = await twinOptimizers(device, [{ hyperparams: {}, tensors: [{ name: 'v', size }] }], {
            lr: 0.1,
          });
          expect(twin.gpu.windowsByAccess[access]).toBe(1);
          await twin.step({ v: pattern(size, 1) });
          const before = await snapshot(twin.gpu);
          for (const bad of [[size - 1], [size - 2, 600], [2050 % size, size - 3], [7, 1500 % size]]) {
            const v = pattern(size, 2);
            for (const at of bad) v[at] = Number.NaN;
            device.queue.writeBuffer(twin.buffers[0]!.grads, 0, v as Float32Array<ArrayBuffer>);
            await expect(twin.gpu.step()).rejects.toThrow(`"v": element ${Math.min(...bad)} is NaN`);
          }
          expect(await snapshot(twin.gpu)).toEqual(before);
          await twin.step({ v: pattern(size, 3) });
          expect(relativeError(await twin.gpu.readParam('v'), twin.cpuParams.get('v')!)).toBeLessThanOrEqual(
            accuracyBound('float32', 2),
          );
          expect(relativeError((await twin.gpu.readBuffer('v'))!, twin.cpu.buffer('v')!)).toBeLessThanOrEqual(
            accuracyBound('float32', 2),
          );
          twin.gpu.destroy();
        }
      });

      describe('the table-free path with folded dispatches and split windows', () => {
        // Two tensors with no gap between them ('b' starts at element 3000, and its size is not a
        // multiple of 4 in one case), so every step after the first needs no segment lookup. The
        // options force 2-D folding, windows that start past element 0, and single-workgroup
        // dispatches whose grid-stride loop makes several passes.
        for (const bSize of [1291, 1292]) {
          for (const options of [
            { maxWorkgroupsPerDimension: 2 },
            { maxBindingBytes: 1024 },
            { maxBindingBytes: 2048, maxWorkgroupsPerDimension: 1, workgroupsPerDispatch: 1 },
            { maxWorkgroupsPerDimension: 2, workgroupsPerDispatch: 3 },
          ]) {
            it(`b of ${bSize} elements, ${JSON.stringify(options)}: matches the CPU and finds the lowest non-finite element`, async () => {
              const twin = await twinOptimizers(
                device,
                [
                  {
                    hyperparams: {},
                    tensors: [
                      { name: 'a', size: 3000 },
                      { name: 'b', size: bSize },
                    ],
                  },
                ],
                { lr: 0.1 },
                options,
              );
              for (let t = 1; t <= 3; t++) {
                await twin.step({ a: pattern(3000, t), b: pattern(bSize, 10 + t) });
                const read = await twin.gpu.read();
                for (const name of ['a', 'b']) {
                  expect(
                    relativeError(read.params.get(name)!, twin.cpuParams.get(name)!),
                  ).toBeLessThanOrEqual(accuracyBound('float32', t));
                  expect(relativeError(read.buffers.get(name)!, twin.cpu.buffer(name)!)).toBeLessThanOrEqual(
                    accuracyBound('float32', t),
                  );
                }
              }
              // Several non-finite values in one vec4, in one invocation and across passes; odd
              // positions hold Infinity, even ones NaN.
              for (const bad of [
                [bSize - 1],
                [1200, 700, 5],
                [1100, 1101, 1102, 1103],
                [1289, 515, 515 + 512],
                [1024, 1025, 2],
              ]) {
                const grads = pattern(3000 + bSize, 99);
                for (const at of bad) grads[3000 + at] = at % 2 ? Number.POSITIVE_INFINITY : Number.NaN;
                device.queue.writeBuffer(twin.buffers[0]!.grads, 0, grads as Float32Array<ArrayBuffer>);
                const lowest = Math.min(...bad);
                await expect(twin.gpu.step()).rejects.toThrow(
                  `"b": element ${lowest} is ${lowest % 2 ? 'Infinity' : 'NaN'}`,
                );
              }
              twin.gpu.destroy();
            });
          }
        }
      });

      it('rejects an unknown policy', async () => {
        await expect(
          twinOptimizers(device, oneTensor, { lr: 0.1 }, { nonFinite: 'ignore' as 'allow' }),
        ).rejects.toThrow(/nonFinite must be "error", "skip-step" or "allow"/);
      });
    });

    describe('a create that the device reports as failed', () => {
      /**
       * The test device behind a proxy that counts shader modules and makes the first
       * popErrorScope report a validation error, as a pipeline whose compilation fails
       * asynchronously would. The proxy is its own device as far as the pipeline cache goes.
       */
      function failingOnce(target: GPUDevice) {
        const counts = { shaderModules: 0, injected: 0 };
        const proxy = new Proxy(target, {
          get(t, key) {
            if (key === 'createShaderModule') {
              return (descriptor: GPUShaderModuleDescriptor) => {
                counts.shaderModules++;
                return t.createShaderModule(descriptor);
              };
            }
            if (key === 'popErrorScope') {
              return async () => {
                const real = await t.popErrorScope();
                if (counts.injected > 0) return real;
                counts.injected++;
                return { message: 'injected: shader compilation failed' } as GPUError;
              };
            }
            const value = Reflect.get(t, key, t);
            return typeof value === 'function' ? value.bind(t) : value;
          },
        });
        return { proxy, counts };
      }

      it('throws AccSGDDeviceError and forgets the cached pipeline, so the next create compiles afresh and works', async () => {
        const { proxy, counts } = failingOnce(device);
        const error = await twinOptimizers(proxy, oneTensor, { lr: 0.1 }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(AccSGDDeviceError);
        expect(error).toMatchObject({ call: 'create', reason: 'validation' });
        expect((error as Error).message).toMatch(/injected: shader compilation failed/);
        const compiledBefore = counts.shaderModules;
        expect(compiledBefore).toBeGreaterThan(0);

        const twin = await twinOptimizers(proxy, oneTensor, { lr: 0.1 });
        expect(counts.shaderModules).toBeGreaterThan(compiledBefore);
        await twin.step({ w: pattern(24, 1) });
        await twin.step({ w: pattern(24, 2) });
        expect(relativeError(await twin.gpu.readParam('w'), twin.cpuParams.get('w')!)).toBeLessThanOrEqual(
          accuracyBound('float32', 2),
        );
        // A third create on the same device reuses the (now good) cached pipeline.
        const compiled = counts.shaderModules;
        const third = await twinOptimizers(proxy, oneTensor, { lr: 0.1 });
        expect(counts.shaderModules).toBe(compiled);
        third.gpu.destroy();
        twin.gpu.destroy();
      });
    });
  },
);

describe.skipIf(noGPU)('conformanceAdapter device ownership', () => {
  it('destroys the device it requested on dispose(), closing open sessions; a given device is left alone', async () => {
    const { conformanceAdapter } = await import('./conformance.js');
    const problem = {
      params: { w: { shape: [4], init: new Float64Array([1, 2, 3, 4]) } },
      groups: [
        {
          hyperparams: { lr: 0.1, kappa: 1000, xi: 10, smallConst: 0.7, weightDecay: 0 },
          params: ['w'],
        },
      ],
    };
    const adapter = await conformanceAdapter();
    const session = await adapter.open(problem);
    await session.step({ w: new Float64Array([1, 1, 1, 1]) });
    adapter.dispose();
    await expect(session.step({ w: new Float64Array(4) })).rejects.toThrow(/destroyed/);
    // A later open gets a fresh device.
    const again = await adapter.open(problem);
    await again.step({ w: new Float64Array([1, 1, 1, 1]) });
    // The suite relies on the optimizer's own non-finite check.
    await expect(again.step({ w: new Float64Array([0, 0, Number.NaN, 0]) })).rejects.toThrow(
      /"w": element 2 is NaN/,
    );
    adapter.dispose();

    const own = await testDevice();
    const given = await conformanceAdapter({ device: own });
    const s = await given.open(problem);
    given.dispose();
    const lost = await Promise.race([
      own.lost.then(() => true),
      new Promise((r) => setTimeout(r, 50, false)),
    ]);
    expect(lost).toBe(false);
    await s.close();
    own.destroy();
  });
});

describe('the unrolled WGSL', () => {
  it('derives its lane offsets from WORKGROUP_SIZE and the accesses per invocation', async () => {
    const { accsgdUpdateWGSL, ELEMENTS_PER_INVOCATION, VEC4_PER_INVOCATION, WORKGROUP_SIZE } = await import(
      './kernels/accsgd-update.js'
    );
    for (const [access, count] of [
      ['scalar', ELEMENTS_PER_INVOCATION],
      ['vec4', VEC4_PER_INVOCATION],
    ] as const) {
      const source = accsgdUpdateWGSL('float32', access);
      const chunk = Array.from({ length: count }, (_, k) => k * WORKGROUP_SIZE);
      // The update and the scan's first walk are each written twice: the table-free loop (no
      // lookup) and the table walk.
      for (const call of ['update\\(i \\+ (\\d+)u, init\\);', 'found \\| nonFinite\\(i \\+ (\\d+)u\\);']) {
        const offsets = [...source.matchAll(new RegExp(call, 'g'))].map((m) => Number(m[1]));
        expect(offsets).toEqual([...chunk, ...chunk]);
      }
    }
  });
});
