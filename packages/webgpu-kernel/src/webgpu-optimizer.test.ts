import { readFileSync } from 'node:fs';
import {
  AccSGD,
  AccSGDConfigError,
  AccSGDGradientError,
  AccSGDStateError,
  accuracyBound,
  relativeError,
} from '@accsgd/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AccSGDDeviceError, AccSGDDeviceLostError } from './errors.js';
import { createFlatStorage } from './flat-storage.js';
import { accsgdUpdateWGSL, dispatchSize, vec4Eligible } from './kernels/accsgd-update.js';
import { GAP_FILL, pattern, twinOptimizers } from './test-support/compare.js';
import { noGPU, noGPUReason, testDevice } from './test-support/gpu.js';
import { WebGPUAccSGD } from './webgpu-optimizer.js';

const STORAGE = 0x80;
const COPY_SRC = 0x4;
const COPY_DST = 0x8;

describe('accsgd-update.wgsl', () => {
  it('is the exported float32 kernel source, byte for byte (npm run wgsl rewrites it)', () => {
    const file = readFileSync(new URL('./kernels/accsgd-update.wgsl', import.meta.url), 'utf8');
    expect(file).toBe(accsgdUpdateWGSL('float32'));
  });

  it('declares float16 storage with float32 momentum and arithmetic in the float16 variant', () => {
    const source = accsgdUpdateWGSL('float16');
    expect(source.startsWith('enable f16;')).toBe(true);
    expect(source).toContain('var<storage, read_write> params: array<f16>');
    expect(source).toContain('var<storage, read> grads: array<f16>');
    expect(source).toContain('var<storage, read_write> buffers: array<f32>');
    expect(source).toContain('let p = f32(params[i]);');
  });

  it('caps workgroups per dispatch, since the kernel loops over chunks of 512 elements', () => {
    expect(dispatchSize(512 * 100, 65535, 64)).toEqual([64, 1]);
    expect(dispatchSize(512 * 10, 65535, 64)).toEqual([10, 1]);
    expect(dispatchSize(16_777_216, 65535, 4096)).toEqual([4096, 1]);
    // Capped at maxPerDimension^2 too, and folded: 2 x 2 for a limit of 2 per dimension.
    expect(dispatchSize(512 * 9, 2, 64)).toEqual([2, 2]);
    expect(dispatchSize(512 * 3, 2, 64)).toEqual([2, 2]);
    expect(dispatchSize(0, 65535, 64)).toEqual([1, 1]);
  });

  it('has a vec4 float32 variant that addresses vec4s and scales indices to elements', () => {
    const source = accsgdUpdateWGSL('float32', 'vec4');
    expect(source).toContain('var<storage, read_write> params: array<vec4<f32>>');
    expect(source).toContain('var<storage, read> grads: array<vec4<f32>>');
    expect(source).toContain('var<storage, read_write> buffers: array<vec4<f32>>');
    expect(source).toContain('let length = u.windowLength / 4u;');
    expect(source).toContain('let element = u.windowStart + j * 4u;');
    // The scalar float32 source is unchanged by the option.
    expect(accsgdUpdateWGSL('float32', 'scalar')).toBe(accsgdUpdateWGSL('float32'));
    expect(() => accsgdUpdateWGSL('float16', 'vec4')).toThrow(RangeError);
    // A vec4 workgroup covers 64 invocations x 8 vec4s = 2048 elements per chunk.
    expect(dispatchSize(2048 * 10, 65535, 64, 2048)).toEqual([10, 1]);
    expect(dispatchSize(2048 * 10 + 4, 65535, 64, 2048)).toEqual([11, 1]);
  });

  it('allows vec4 only when the window and every tensor it touches are multiples of 4 elements', () => {
    const aligned = [
      { offset: 0, size: 8 },
      { offset: 12, size: 4 },
    ];
    expect(vec4Eligible('float32', 0, 16, aligned)).toBe(true);
    expect(vec4Eligible('float32', 64, 4096, [{ offset: 0, size: 8192 }])).toBe(true);
    expect(vec4Eligible('float16', 0, 16, aligned)).toBe(false);
    expect(vec4Eligible('float32', 2, 16, aligned)).toBe(false);
    expect(vec4Eligible('float32', 0, 15, aligned)).toBe(false);
    expect(vec4Eligible('float32', 0, 16, [{ offset: 1, size: 8 }])).toBe(false);
    expect(vec4Eligible('float32', 0, 16, [{ offset: 0, size: 7 }])).toBe(false);
  });

  it('folds dispatches beyond the per-dimension limit into two dimensions', () => {
    // A workgroup covers 64 invocations x 8 elements = 512 elements.
    expect(dispatchSize(512 * 65535, 65535)).toEqual([65535, 1]);
    // 65,536 workgroups: two rows of 32,768.
    expect(dispatchSize(512 * 65536, 65535)).toEqual([32768, 2]);
    // 67,108,864 elements = 131,072 workgroups: 3 rows of 43,691 (3 * 43,691 = 131,073 >= 131,072).
    expect(dispatchSize(67_108_864, 65535)).toEqual([43691, 3]);
    expect(dispatchSize(1, 65535)).toEqual([1, 1]);
  });
});

describe.skipIf(noGPU)(`WebGPUAccSGD on ${noGPU ? `no adapter: ${noGPUReason}` : 'Dawn'}`, () => {
  let device: GPUDevice;
  beforeAll(async () => {
    device = await testDevice();
  });
  afterAll(() => device?.destroy());

  it('takes the step the spec gives, in numbers', async () => {
    // lr 0.1, kappa 1000, xi 10, smallConst 0.7: largeLr = 142.857..., alpha = 0.9951, beta = 0.0049,
    // zeta = 0.7 / 0.7049 = 0.993048...
    // Step 1, p = 1, g = 0.5: buf = p = 1, buf' = 0.9951 + 0.0049 - 0.7 * 0.5 = 0.65,
    //   p' = zeta * (1 - 0.1 * 0.5) + (1 - zeta) * 0.65 = 0.947914597815...
    // Step 2, g = -1: buf'' = 0.9951 * 0.65 + 0.0049 * 0.9479146 + 0.7 = 1.35145978...,
    //   p'' = zeta * (0.9479146 + 0.1) + (1 - zeta) * 1.3514598 = 1.05002464...
    const twin = await twinOptimizers(
      device,
      [{ hyperparams: {}, tensors: [{ name: 'w', size: 1, init: Float32Array.of(1) }] }],
      { lr: 0.1 },
    );
    await twin.step({ w: Float32Array.of(0.5) });
    expect((await twin.gpu.readBuffer('w'))![0]).toBeCloseTo(0.65, 6);
    expect((await twin.gpu.readParam('w'))[0]).toBeCloseTo(0.947914597815293, 6);
    await twin.step({ w: Float32Array.of(-1) });
    expect((await twin.gpu.readBuffer('w'))![0]).toBeCloseTo(1.351459781529296, 6);
    expect((await twin.gpu.readParam('w'))[0]).toBeCloseTo(1.0500246437795413, 6);
    twin.gpu.destroy();
  });

  it('matches the CPU optimizer over groups, gaps, skipped tensors and a learning-rate change, in one dispatch per group', async () => {
    const twin = await twinOptimizers(
      device,
      [
        {
          hyperparams: { lr: 0.05, weightDecay: 0.01 },
          tensors: [
            { name: 'a', size: 1000 },
            { name: 'b', size: 1, offset: 1003 },
            { name: 'c', size: 777, offset: 1100 },
            { name: 'empty', size: 0 },
          ],
        },
        {
          hyperparams: { kappa: 100, xi: 3, smallConst: 0.5 },
          tensors: [{ name: 'd', size: 4096, offset: 17 }],
        },
        { hyperparams: {}, tensors: [{ name: 'never', size: 33 }] },
      ],
      { lr: 0.1 },
    );
    const { gpu, cpu, cpuParams } = twin;
    expect(gpu.dispatchesPerStep).toBe(3);
    const sizes: Record<string, number> = { a: 1000, b: 1, c: 777, empty: 0, d: 4096, never: 33 };
    const schedule: string[][] = [
      ['a', 'b', 'd', 'empty'],
      ['a', 'c'],
      ['a', 'b', 'c', 'd'],
      ['c'],
      ['a', 'b', 'c', 'd', 'empty'],
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
      const read = await gpu.read();
      for (const name of Object.keys(sizes)) {
        expect(
          relativeError(read.params.get(name)!, cpuParams.get(name)!),
          `param ${name} at step ${t}`,
        ).toBeLessThanOrEqual(accuracyBound('float32', t));
        const cpuBuffer = cpu.buffer(name);
        if (cpuBuffer === null) expect(read.buffers.get(name), `buffer ${name} at step ${t}`).toBeNull();
        else
          expect(
            relativeError(read.buffers.get(name)!, cpuBuffer),
            `buffer ${name} at step ${t}`,
          ).toBeLessThanOrEqual(accuracyBound('float32', t));
      }
    }
    // 'never' had no gradient: bit-identical to its initial values, and its group never stepped.
    expect(await gpu.readParam('never')).toEqual(twin.init.get('never'));
    expect(gpu.paramGroups.map((g) => g.step)).toEqual([5, 3, 0]);
    expect(cpu.paramGroups.map((g) => g.step)).toEqual([5, 3, 0]);
    // Elements between tensors were never written.
    const flat = await twin.readFlat(0);
    for (const i of [1000, 1001, 1002, 1004, 1099]) expect(flat[i]).toBe(GAP_FILL);
    const flatD = await twin.readFlat(1);
    for (let i = 0; i < 17; i++) expect(flatD[i]).toBe(GAP_FILL);
    gpu.destroy();
  });

  it('splits a group across binding windows and folds dispatches into 2-D, with the same results', async () => {
    // 256-byte windows (64 elements); and at most 2 workgroups per dimension, so the one window's
    // dispatch of 4 workgroups (of the 9 chunks of 512 elements) is folded into 2 x 2, and the
    // grid-stride loop covers the rest.
    const groups = [
      {
        hyperparams: {},
        tensors: [
          { name: 'x', size: 3000, offset: 5 },
          { name: 'y', size: 1290, offset: 3020 },
        ],
      },
    ];
    const split = await twinOptimizers(device, groups, { lr: 0.1 }, { maxBindingBytes: 256 });
    expect(split.gpu.dispatchesPerStep).toBe(68); // elements [0, 4310) in windows of 64
    const folded = await twinOptimizers(device, groups, { lr: 0.1 }, { maxWorkgroupsPerDimension: 2 });
    expect(folded.gpu.dispatchesPerStep).toBe(1); // any number of workgroups covers any window
    for (let t = 1; t <= 3; t++) {
      const grads = { x: pattern(3000, t), y: t === 2 ? null : pattern(1290, 10 + t) };
      await split.step(grads);
      await folded.step(grads);
      for (const twin of [split, folded]) {
        const read = await twin.gpu.read();
        for (const name of ['x', 'y']) {
          expect(relativeError(read.params.get(name)!, twin.cpuParams.get(name)!)).toBeLessThanOrEqual(
            accuracyBound('float32', t),
          );
          expect(relativeError(read.buffers.get(name)!, twin.cpu.buffer(name)!)).toBeLessThanOrEqual(
            accuracyBound('float32', t),
          );
        }
      }
    }
    const flat = await split.readFlat(0);
    for (const i of [0, 4, 3005, 3019]) expect(flat[i]).toBe(GAP_FILL);
    split.gpu.destroy();
    folded.gpu.destroy();
  });

  it('matches the CPU optimizer when a few workgroups loop over many chunks, segments, gaps and tails', async () => {
    // 1 and 3 workgroups per dispatch: each workgroup strides over many chunks of 512 elements, through
    // chunks inside one tensor, chunks with tensor boundaries and gaps, tensors smaller than a
    // chunk, skipped tensors, tensors starting their buffer late, and a partial last chunk.
    const tensors = [
      { name: 'big', size: 5000, offset: 3 },
      { name: 'tiny', size: 1, offset: 5003 },
      { name: 'small', size: 70, offset: 5010 },
      { name: 'aligned', size: 1024, offset: 5120 },
      { name: 'late', size: 600, offset: 6144 },
      { name: 'tail', size: 301, offset: 6800 },
    ];
    const sizes = Object.fromEntries(tensors.map((t) => [t.name, t.size]));
    const groups = [{ hyperparams: { weightDecay: 0.01 }, tensors }];
    const twins = [
      await twinOptimizers(device, groups, { lr: 0.1 }, { workgroupsPerDispatch: 1 }),
      await twinOptimizers(device, groups, { lr: 0.1 }, { workgroupsPerDispatch: 3 }),
    ];
    const schedule: string[][] = [
      ['big', 'tiny', 'aligned', 'tail'],
      ['big', 'small', 'late', 'tail'],
      ['big', 'tiny', 'small', 'aligned', 'late', 'tail'],
      ['tiny', 'late'],
    ];
    for (let t = 1; t <= schedule.length; t++) {
      const grads = Object.fromEntries(
        schedule[t - 1]!.map((n) => [n, pattern(sizes[n]!, 50 * t + n.length)]),
      );
      for (const twin of twins) {
        await twin.step(grads);
        const read = await twin.gpu.read();
        for (const name of Object.keys(sizes)) {
          expect(
            relativeError(read.params.get(name)!, twin.cpuParams.get(name)!),
            `param ${name} at step ${t}`,
          ).toBeLessThanOrEqual(accuracyBound('float32', t));
          const cpuBuffer = twin.cpu.buffer(name);
          if (cpuBuffer === null) expect(read.buffers.get(name), `buffer ${name} at step ${t}`).toBeNull();
          else
            expect(
              relativeError(read.buffers.get(name)!, cpuBuffer),
              `buffer ${name} at step ${t}`,
            ).toBeLessThanOrEqual(accuracyBound('float32', t));
        }
      }
    }
    for (const twin of twins) {
      const flat = await twin.readFlat(0);
      for (const i of [0, 2, 5004, 5009, 5080, 5119, 6744, 6799]) expect(flat[i], `gap ${i}`).toBe(GAP_FILL);
      twin.gpu.destroy();
    }
  });

  it('updates 4-element-aligned layouts with vec4 accesses, matching the CPU optimizer over segments, gaps, skips and first steps', async () => {
    // Every offset and size is a multiple of 4, so every window takes the vec4 program: a tensor over
    // many chunks of 2048 elements, tensors meeting inside a chunk, gaps of 4 and more elements,
    // tensors of 4 elements, tensors that start their buffer late or never get a gradient, and a
    // partial last chunk; with 1 and 3 workgroups (grid-stride loop), 2 per dimension (folded
    // dispatch) and 256-byte binding windows (64 elements, tensors spanning many windows).
    const tensors = [
      { name: 'big', size: 5000, offset: 4 },
      { name: 'tiny', size: 4, offset: 5004 },
      { name: 'small', size: 72, offset: 5012 },
      { name: 'aligned', size: 2048, offset: 6144 },
      { name: 'late', size: 600, offset: 8192 },
      { name: 'never', size: 40, offset: 8800 },
      { name: 'tail', size: 300, offset: 8840 },
    ];
    const sizes = Object.fromEntries(tensors.map((t) => [t.name, t.size]));
    const groups = [{ hyperparams: { weightDecay: 0.01 }, tensors }];
    const twins = [
      await twinOptimizers(device, groups, { lr: 0.1 }),
      await twinOptimizers(device, groups, { lr: 0.1 }, { workgroupsPerDispatch: 1 }),
      await twinOptimizers(device, groups, { lr: 0.1 }, { workgroupsPerDispatch: 3 }),
      await twinOptimizers(
        device,
        groups,
        { lr: 0.1 },
        { maxWorkgroupsPerDimension: 2, workgroupsPerDispatch: 5 },
      ),
      await twinOptimizers(device, groups, { lr: 0.1 }, { maxBindingBytes: 256 }),
    ];
    expect(twins.map((t) => t.gpu.windowsByAccess)).toEqual([
      { scalar: 0, vec4: 1 },
      { scalar: 0, vec4: 1 },
      { scalar: 0, vec4: 1 },
      { scalar: 0, vec4: 1 },
      { scalar: 0, vec4: 143 }, // elements [0, 9140) in windows of 64: 142 whole and one of 52
    ]);
    const schedule: string[][] = [
      ['big', 'tiny', 'aligned', 'tail'],
      ['big', 'small', 'late', 'tail'],
      ['big', 'tiny', 'small', 'aligned', 'late', 'tail'],
      ['tiny', 'late'],
    ];
    for (let t = 1; t <= schedule.length; t++) {
      const grads = Object.fromEntries(
        schedule[t - 1]!.map((n) => [n, pattern(sizes[n]!, 70 * t + n.length)]),
      );
      for (const twin of twins) {
        await twin.step(grads);
        const read = await twin.gpu.read();
        for (const name of Object.keys(sizes)) {
          expect(
            relativeError(read.params.get(name)!, twin.cpuParams.get(name)!),
            `param ${name} at step ${t}`,
          ).toBeLessThanOrEqual(accuracyBound('float32', t));
          const cpuBuffer = twin.cpu.buffer(name);
          if (cpuBuffer === null) expect(read.buffers.get(name), `buffer ${name} at step ${t}`).toBeNull();
          else
            expect(
              relativeError(read.buffers.get(name)!, cpuBuffer),
              `buffer ${name} at step ${t}`,
            ).toBeLessThanOrEqual(accuracyBound('float32', t));
        }
      }
    }
    for (const twin of twins) {
      // First step of 'late' was step 2; 'never' is bit-identical and has no buffer.
      expect(twin.gpu.hasBuffer('late')).toBe(true);
      expect(twin.gpu.hasBuffer('never')).toBe(false);
      expect(await twin.gpu.readParam('never')).toEqual(twin.init.get('never'));
      const flat = await twin.readFlat(0);
      for (const i of [0, 3, 5008, 5011, 5084, 6143, 8792, 8799]) expect(flat[i], `gap ${i}`).toBe(GAP_FILL);
      twin.gpu.destroy();
    }
  });

  it('takes the first vec4 step bit for bit like the scalar program', async () => {
    // The same tensor at an aligned offset (vec4) and one element later (scalar): one step from the
    // same values gives the same bits, since both programs do the same float32 operations per element.
    const size = 4100;
    const init = pattern(size, 9);
    const grads = pattern(size, 10);
    const vector = await twinOptimizers(
      device,
      [{ hyperparams: {}, tensors: [{ name: 'w', size, offset: 4, init }] }],
      { lr: 0.1 },
    );
    const scalar = await twinOptimizers(
      device,
      [{ hyperparams: {}, tensors: [{ name: 'w', size, offset: 5, init }] }],
      { lr: 0.1 },
    );
    expect(vector.gpu.windowsByAccess).toEqual({ scalar: 0, vec4: 1 });
    expect(scalar.gpu.windowsByAccess).toEqual({ scalar: 1, vec4: 0 });
    for (let t = 1; t <= 2; t++) {
      await vector.step({ w: grads });
      await scalar.step({ w: grads });
      expect(await vector.gpu.readParam('w'), `param at step ${t}`).toEqual(await scalar.gpu.readParam('w'));
      expect(await vector.gpu.readBuffer('w'), `buffer at step ${t}`).toEqual(
        await scalar.gpu.readBuffer('w'),
      );
    }
    vector.gpu.destroy();
    scalar.gpu.destroy();
  });

  it('falls back to the scalar program per window for unaligned layouts, in one pass with vec4 windows', async () => {
    // Unaligned offset, unaligned size, unaligned end: the whole (one-window) group is scalar.
    for (const tensors of [
      [{ name: 'a', size: 64, offset: 2 }],
      [{ name: 'a', size: 63, offset: 0 }],
      [
        { name: 'a', size: 64, offset: 0 },
        { name: 'b', size: 9, offset: 64 },
      ],
    ]) {
      const twin = await twinOptimizers(device, [{ hyperparams: {}, tensors }], { lr: 0.1 });
      expect(twin.gpu.windowsByAccess, JSON.stringify(tensors)).toEqual({ scalar: 1, vec4: 0 });
      twin.gpu.destroy();
    }
    // 64-element windows: those inside aligned 'x' take vec4, those touching unaligned 'y' scalar.
    const twin = await twinOptimizers(
      device,
      [
        {
          hyperparams: {},
          tensors: [
            { name: 'x', size: 1000, offset: 8 },
            { name: 'y', size: 301, offset: 1027 },
          ],
        },
      ],
      { lr: 0.1 },
      { maxBindingBytes: 256 },
    );
    // Windows start at 0, 64, ..., 1280: [0, 1024) is vec4 (16 windows), [1024, 1328) scalar (5).
    expect(twin.gpu.windowsByAccess).toEqual({ scalar: 5, vec4: 16 });
    for (let t = 1; t <= 3; t++) {
      await twin.step({ x: pattern(1000, t), y: t === 2 ? null : pattern(301, 20 + t) });
      const read = await twin.gpu.read();
      for (const name of ['x', 'y']) {
        expect(relativeError(read.params.get(name)!, twin.cpuParams.get(name)!)).toBeLessThanOrEqual(
          accuracyBound('float32', t),
        );
        expect(relativeError(read.buffers.get(name)!, twin.cpu.buffer(name)!)).toBeLessThanOrEqual(
          accuracyBound('float32', t),
        );
      }
    }
    const flat = await twin.readFlat(0);
    for (const i of [0, 7, 1008, 1026]) expect(flat[i], `gap ${i}`).toBe(GAP_FILL);
    twin.gpu.destroy();
  });

  it('places createFlatStorage tensors at 4-element-aligned offsets, so whole-vec4 tensors get the vec4 program', async () => {
    const storage = createFlatStorage(device, [
      { name: 'weight', shape: [3, 4] },
      { name: 'bias', shape: [4] },
    ]);
    for (const segment of storage.segments) expect(segment.offset % 4).toBe(0);
    const optimizer = await WebGPUAccSGD.create(
      device,
      [{ params: storage.params, grads: storage.grads, segments: storage.segments }],
      { lr: 0.1 },
    );
    expect(optimizer.windowsByAccess).toEqual({ scalar: 0, vec4: 1 });
    optimizer.destroy();
    storage.destroy();
  });

  it('rejects a workgroupsPerDispatch that is not a positive integer', async () => {
    const params = device.createBuffer({ size: 64, usage: STORAGE });
    const grads = device.createBuffer({ size: 64, usage: STORAGE });
    for (const workgroupsPerDispatch of [0, 1.5, -3]) {
      await expect(
        WebGPUAccSGD.create(
          device,
          [{ params, grads, segments: [{ offset: 0, size: 16 }] }],
          { lr: 0.1 },
          {
            workgroupsPerDispatch,
          },
        ),
      ).rejects.toThrow(AccSGDConfigError);
    }
    params.destroy();
    grads.destroy();
  });

  it('never rebuilds the pipelines: one program per device, shared by optimizers, untouched by a learning-rate change', async () => {
    const own = await testDevice();
    let created = 0;
    const original = own.createComputePipeline.bind(own);
    own.createComputePipeline = (descriptor: GPUComputePipelineDescriptor) => {
      created++;
      return original(descriptor);
    };
    const first = await twinOptimizers(own, [{ hyperparams: {}, tensors: [{ name: 'w', size: 10 }] }], {
      lr: 0.1,
    });
    await first.step({ w: pattern(10, 1) });
    first.gpu.setLearningRate(0.01);
    first.cpu.setLearningRate(0.01);
    await first.step({ w: pattern(10, 2) });
    const second = await twinOptimizers(own, [{ hyperparams: {}, tensors: [{ name: 'v', size: 10 }] }], {
      lr: 0.3,
    });
    await second.step({ v: pattern(10, 3) });
    // One program: its update and its non-finite scan entry points.
    expect(created).toBe(2);
    expect(relativeError(await first.gpu.readParam('w'), first.cpuParams.get('w')!)).toBeLessThanOrEqual(
      accuracyBound('float32', 2),
    );
    own.destroy();
  });

  it('rejects mismatched buffers and bad layouts before creating anything', async () => {
    const params = device.createBuffer({ size: 400, usage: STORAGE | COPY_SRC | COPY_DST });
    const grads = device.createBuffer({ size: 400, usage: STORAGE | COPY_SRC | COPY_DST });
    const small = device.createBuffer({ size: 396, usage: STORAGE });
    const noStorage = device.createBuffer({ size: 400, usage: COPY_SRC | COPY_DST });
    const create = (group: object) => WebGPUAccSGD.create(device, [group as never], { lr: 0.1 });
    await expect(create({ params, grads: small, segments: [{ offset: 0, size: 100 }] })).rejects.toThrow(
      /groups\[0\]\.grads is too small: the segments reach element 100 \(float32\), so it needs at least 400 bytes; it has 396/,
    );
    await expect(create({ params, grads: noStorage, segments: [{ offset: 0, size: 100 }] })).rejects.toThrow(
      /STORAGE usage/,
    );
    await expect(
      create({
        params,
        grads,
        segments: [
          { offset: 0, size: 60 },
          { offset: 50, size: 10 },
        ],
      }),
    ).rejects.toThrow(/overlap/);
    await expect(
      create({ params, grads, segments: [{ offset: 0, shape: [3, 4], size: 13 }] }),
    ).rejects.toThrow(AccSGDConfigError);
    await expect(create({ params, grads: params, segments: [{ offset: 0, size: 10 }] })).rejects.toThrow(
      AccSGDConfigError,
    );
    await expect(
      create({ params, grads, segments: [{ offset: 0, size: 10 }], learningRate: 1 }),
    ).rejects.toThrow(/not an AccSGD hyperparameter/);
    await expect(
      WebGPUAccSGD.create(
        device,
        [{ params, grads, segments: [{ offset: 0, size: 10 }] }],
        { lr: 0.1 },
        { storage: 'float16' },
      ),
    ).rejects.toSatisfy(
      (e: unknown) =>
        e instanceof AccSGDDeviceError && e.reason === 'unsupported' && /shader-f16/.test(e.message),
    );
    for (const b of [params, grads, small, noStorage]) b.destroy();
  });

  it('rejects bad gradient flags before dispatching, leaving parameters and buffers as they were', async () => {
    const twin = await twinOptimizers(
      device,
      [
        {
          hyperparams: {},
          tensors: [
            { name: 'a', size: 8 },
            { name: 'b', size: 8 },
          ],
        },
      ],
      { lr: 0.1 },
    );
    await expect(twin.gpu.step([true])).rejects.toThrow(AccSGDGradientError);
    await expect(twin.gpu.step({ a: true, typo: true })).rejects.toThrow(
      /gradient for parameter "typo": no parameter has this name/,
    );
    await expect(twin.gpu.step([true, 1 as never])).rejects.toThrow(AccSGDGradientError);
    expect(await twin.gpu.readParam('a')).toEqual(twin.init.get('a'));
    expect(await twin.gpu.readBuffer('a')).toBeNull();
    expect(twin.gpu.paramGroups[0]!.step).toBe(0);
    twin.gpu.destroy();
  });

  it('rejects gradient flags in a Map, Set, typed array, class instance or sparse array, changing nothing', async () => {
    const twin = await twinOptimizers(
      device,
      [
        {
          hyperparams: {},
          tensors: [
            { name: 'a', size: 8 },
            { name: 'b', size: 8 },
          ],
        },
      ],
      { lr: 0.1 },
    );
    class Flags {
      a = true;
      b = true;
    }
    const sparse: boolean[] = [true];
    sparse.length = 2; // [true, <hole>]
    const wrong: unknown[] = [
      new Map([
        ['a', true],
        ['b', true],
      ]),
      new Set(['a', 'b']),
      Uint8Array.of(1, 1),
      new Flags(),
      sparse,
      new Date(0),
    ];
    for (const flags of wrong) {
      const error = await twin.gpu.step(flags as never).catch((e: unknown) => e);
      expect(error, String(flags)).toBeInstanceOf(AccSGDGradientError);
    }
    await expect(twin.gpu.step(new Map([['a', true]]) as never)).rejects.toThrow(
      /expected the gradient flags as an array of booleans \(one per tensor\) or a plain object \{ name: boolean \}, got a Map/,
    );
    await expect(twin.gpu.step(sparse)).rejects.toThrow(
      /gradient for parameter "b": expected true or false, got undefined/,
    );
    // Nothing changed: initial parameters, no buffers, no step counted.
    expect(await twin.gpu.readParam('a')).toEqual(twin.init.get('a'));
    expect(await twin.gpu.readParam('b')).toEqual(twin.init.get('b'));
    expect(await twin.gpu.readBuffer('a')).toBeNull();
    expect(twin.gpu.paramGroups[0]!.step).toBe(0);
    // The next valid step is the first step of a fresh optimizer: buffer = p + bufFromGrad * g, etc.
    await twin.step({ a: pattern(8, 11), b: pattern(8, 12) });
    for (const name of ['a', 'b']) {
      expect(relativeError(await twin.gpu.readParam(name), twin.cpuParams.get(name)!)).toBeLessThanOrEqual(
        accuracyBound('float32', 1),
      );
    }
    expect(twin.gpu.paramGroups[0]!.step).toBe(1);
    twin.gpu.destroy();
  });

  it('rejects create options that are null, not an object, or have unknown keys, creating nothing', async () => {
    const params = device.createBuffer({ size: 64, usage: STORAGE | COPY_SRC | COPY_DST });
    const grads = device.createBuffer({ size: 64, usage: STORAGE | COPY_SRC | COPY_DST });
    const groups = [{ params, grads, segments: [{ name: 'w', offset: 0, size: 16 }] }];
    const create = (options: unknown) => WebGPUAccSGD.create(device, groups, { lr: 0.1 }, options as never);
    await expect(create(null)).rejects.toThrow(/^options must be undefined or an object \{ storage\?/);
    await expect(create(null)).rejects.toBeInstanceOf(AccSGDConfigError);
    await expect(create('float16')).rejects.toThrow(/^options must be .*; got "the string \\"float16\\""$/);
    await expect(create(new Map([['storage', 'float32']]))).rejects.toBeInstanceOf(AccSGDConfigError);
    await expect(create({ storage: 'float32', nonFinte: 'allow' })).rejects.toThrow(
      /^options\.nonFinte is not an option of WebGPUAccSGD\.create \(expected one of storage, label, maxBindingBytes, maxWorkgroupsPerDimension, workgroupsPerDispatch, nonFinite\); got "allow"$/,
    );
    await expect(create({ label: 7 })).rejects.toBeInstanceOf(AccSGDConfigError);
    // A valid create still works and steps like a fresh optimizer: p = 1, g = 0.5 gives 0.9479146 (see above).
    device.queue.writeBuffer(params, 0, new Float32Array(16).fill(1));
    device.queue.writeBuffer(grads, 0, new Float32Array(16).fill(0.5));
    const optimizer = await create(undefined);
    await optimizer.step();
    const p = await optimizer.readParam('w');
    for (const v of p) expect(v).toBeCloseTo(0.947914597815293, 6);
    optimizer.destroy();
    params.destroy();
    grads.destroy();
  });

  it('rejects ranges of one buffer shared by two groups (params twice, grads as params, params as grads) at create', async () => {
    const a = device.createBuffer({ size: 256, usage: STORAGE | COPY_SRC | COPY_DST });
    const b = device.createBuffer({ size: 256, usage: STORAGE | COPY_SRC | COPY_DST });
    const c = device.createBuffer({ size: 256, usage: STORAGE | COPY_SRC | COPY_DST });
    const d = device.createBuffer({ size: 256, usage: STORAGE | COPY_SRC | COPY_DST });
    const create = (groups: object[]) => WebGPUAccSGD.create(device, groups as never, { lr: 0.1 });
    // Two groups over the same params buffer whose segments overlap: elements 8..15 updated twice.
    // Params ranges are the registry's storage ranges, so its overlap check (and message) applies.
    await expect(
      create([
        { params: a, grads: b, segments: [{ name: 'x', offset: 0, size: 16 }] },
        { params: a, grads: c, segments: [{ name: 'y', offset: 8, size: 16 }] },
      ]),
    ).rejects.toThrow(
      /^groups\[1\]\.segments\[0\] overlaps the memory of groups\[0\]\.segments\[0\] \(two views of the same buffer\); each parameter needs memory of its own; got "params elements \[8, 24\)"/,
    );
    // A group whose grads buffer is another group's params buffer, at the same elements.
    await expect(
      create([
        { params: a, grads: b, segments: [{ name: 'x', offset: 0, size: 16 }] },
        { params: c, grads: a, segments: [{ name: 'y', offset: 4, size: 4 }] },
      ]),
    ).rejects.toThrow(
      /^groups\[1\]\.segments\[0\] \("y"\) grads elements \[4, 8\) overlaps groups\[0\]\.segments\[0\] \("x"\) params elements \[0, 16\) in one GPUBuffer: elements \[4, 8\) would hold one tensor's gradient and another's parameters/,
    );
    // The other way round, and against a list-form tensor (its buffers hold it from element 0).
    await expect(
      create([
        { tensors: [{ name: 'x', params: c, grads: d, elements: 4 }] },
        { params: a, grads: c, segments: [{ name: 'y', offset: 2, size: 4 }] },
      ]),
    ).rejects.toThrow(
      /^groups\[1\]\.segments\[0\] \("y"\) grads elements \[2, 6\) overlaps groups\[0\]\.tensors\[0\] \("x"\) params elements \[0, 4\)/,
    );
    // Two groups reading one gradient range.
    await expect(
      create([
        { params: a, grads: b, segments: [{ name: 'x', offset: 0, size: 16 }] },
        { params: c, grads: b, segments: [{ name: 'y', offset: 15, size: 1 }] },
      ]),
    ).rejects.toThrow(/elements \[15, 16\) would be read as the gradient of two tensors/);
    // All AccSGDConfigError; disjoint ranges of shared buffers are fine, and step like the CPU optimizer.
    await expect(
      create([
        { params: a, grads: b, segments: [{ name: 'x', offset: 0, size: 16 }] },
        { params: a, grads: c, segments: [{ name: 'y', offset: 0, size: 16 }] },
      ]),
    ).rejects.toBeInstanceOf(AccSGDConfigError);
    const x = pattern(16, 1);
    const y = pattern(16, 2);
    device.queue.writeBuffer(a, 0, x as Float32Array<ArrayBuffer>);
    device.queue.writeBuffer(a, 128, y as Float32Array<ArrayBuffer>);
    device.queue.writeBuffer(b, 0, pattern(16, 3) as Float32Array<ArrayBuffer>);
    device.queue.writeBuffer(b, 64, pattern(16, 4) as Float32Array<ArrayBuffer>);
    const shared = await create([
      { params: a, grads: b, segments: [{ name: 'x', offset: 0, size: 16 }] },
      { lr: 0.05, params: a, grads: b, segments: [{ name: 'y', offset: 32, size: 16 }] },
    ]);
    // ...but group 1's grads [32, 48) of b do not hold pattern(16, 4) (written at element 16): write them.
    device.queue.writeBuffer(b, 128, pattern(16, 4) as Float32Array<ArrayBuffer>);
    await shared.step();
    const cpuParams = { x: Float32Array.from(x), y: Float32Array.from(y) };
    const cpu = new AccSGD(
      [
        { params: [cpuParams.x], names: ['x'] },
        { lr: 0.05, params: [cpuParams.y], names: ['y'] },
      ],
      { lr: 0.1 },
    );
    cpu.step({ x: pattern(16, 3), y: pattern(16, 4) });
    for (const name of ['x', 'y'] as const) {
      expect(relativeError(await shared.readParam(name), cpuParams[name])).toBeLessThanOrEqual(
        accuracyBound('float32', 1),
      );
    }
    shared.destroy();
    for (const buffer of [a, b, c, d]) buffer.destroy();
  });

  it("takes the registry's name rules: reserved, empty and non-string names are rejected at create", async () => {
    const params = device.createBuffer({ size: 64, usage: STORAGE });
    const grads = device.createBuffer({ size: 64, usage: STORAGE });
    for (const [name, pattern_] of [
      ['__proto__', /^groups\[0\]\.segments\[1\]\.name must be a non-empty string/],
      ['__metadata__', /^groups\[0\]\.segments\[1\]\.name must be a non-empty string/],
      ['', /^groups\[0\]\.segments\[1\]\.name must be a non-empty string/],
      [7, /^groups\[0\]\.segments\[1\]\.name must be a non-empty string/],
      ['a', /^groups\[0\]\.segments\[1\]\.name must be a unique name/],
    ] as const) {
      const error = await WebGPUAccSGD.create(
        device,
        [
          {
            params,
            grads,
            segments: [
              { name: 'a', offset: 0, size: 4 },
              { name: name as never, offset: 4, size: 4 },
            ],
          },
        ],
        { lr: 0.1 },
      ).catch((e: unknown) => e);
      expect(error, String(name)).toBeInstanceOf(AccSGDConfigError);
      expect((error as AccSGDConfigError).field).toBe('groups[0].segments[1].name');
      expect((error as Error).message).toMatch(pattern_);
    }
    // A getter that throws in the gradient flags is reported as unreadable flags.
    const optimizer = await WebGPUAccSGD.create(
      device,
      [{ params, grads, segments: [{ name: 'a', offset: 0, size: 4 }] }],
      { lr: 0.1 },
    );
    const flags = {
      get a(): boolean {
        throw new Error('boom');
      },
    };
    await expect(optimizer.step(flags)).rejects.toThrow(/could not read the gradient flags \(Error: boom\)/);
    optimizer.destroy();
    params.destroy();
    grads.destroy();
  });

  it('rejects a Proxy or look-alike of a GPUBuffer at create (Dawn would crash on a Proxy), creating nothing', async () => {
    const params = device.createBuffer({ size: 64, usage: STORAGE | COPY_SRC | COPY_DST });
    const grads = device.createBuffer({ size: 64, usage: STORAGE | COPY_SRC | COPY_DST });
    // Forwards every read to the real buffer, so it reads like one (size 64, STORAGE usage).
    const forwarding = new Proxy(grads, {
      get: (target, key) => {
        const value = Reflect.get(target, key, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    expect(forwarding.size).toBe(64);
    const lookAlike = { size: 64, usage: STORAGE | COPY_SRC, label: '', destroy() {} };
    for (const fake of [forwarding, lookAlike, Object.create(grads), new Proxy(grads, {})]) {
      await expect(
        WebGPUAccSGD.create(
          device,
          [{ params, grads: fake as GPUBuffer, segments: [{ offset: 0, size: 16 }] }],
          {
            lr: 0.1,
          },
        ),
      ).rejects.toThrow(
        /^groups\[0\]\.grads must be a GPUBuffer created by the device \(not a copy, look-alike or Proxy of one\)/,
      );
    }
    await expect(
      WebGPUAccSGD.create(
        device,
        [{ tensors: [{ name: 't', params: forwarding as GPUBuffer, grads: params, elements: 4 }] }],
        { lr: 0.1 },
      ),
    ).rejects.toBeInstanceOf(AccSGDConfigError);
    params.destroy();
    grads.destroy();
  });

  it('rejects unreadable or wrongly typed arguments of step, setLearningRate, read-backs and importState as typed errors, changing nothing', async () => {
    const twin = await twinOptimizers(device, [{ hyperparams: {}, tensors: [{ name: 'a', size: 4 }] }], {
      lr: 0.1,
    });
    await twin.step({ a: pattern(4, 1) });
    const before = await twin.gpu.exportState();
    const param = await twin.gpu.readParam('a');
    const revoked = Proxy.revocable({}, {});
    revoked.revoke();
    // step options: null, unknown keys, a query set that is not one.
    await expect(twin.gpu.step(undefined, null as never)).rejects.toThrow(
      /^step options must be undefined or \{ timestampWrites\? \}; got "null"$/,
    );
    await expect(twin.gpu.step(undefined, { timestamps: true } as never)).rejects.toBeInstanceOf(
      AccSGDConfigError,
    );
    await expect(
      twin.gpu.step(undefined, { timestampWrites: { querySet: {} as GPUQuerySet } }),
    ).rejects.toThrow(
      /^timestampWrites\.querySet must be a GPUQuerySet of type "timestamp" created by the device/,
    );
    await expect(twin.gpu.step(revoked.proxy as never)).rejects.toBeInstanceOf(AccSGDGradientError);
    // A revoked Proxy where a number or name belongs (core's message formatting cannot read it).
    expect(() => twin.gpu.setLearningRate(revoked.proxy as never)).toThrow(AccSGDConfigError);
    expect(() => twin.gpu.setLearningRate(0.2, revoked.proxy as never)).toThrow(AccSGDConfigError);
    expect(() => twin.gpu.hasBuffer(revoked.proxy as never)).toThrow(
      /^param must be an index in \[0, 0\] or one of the names a; got "an unreadable object \(a revoked Proxy\?\)"$/,
    );
    await expect(twin.gpu.readParam(revoked.proxy as never)).rejects.toBeInstanceOf(AccSGDConfigError);
    await expect(twin.gpu.readBuffer(revoked.proxy as never)).rejects.toBeInstanceOf(AccSGDConfigError);
    // importState: a Proxy of the right bytes, other views.
    await expect(twin.gpu.importState(new Proxy(before, {}))).rejects.toThrow(
      /^importState expects the state file as a Uint8Array \(the bytes exportState returned\); got a Uint8Array$/,
    );
    await expect(twin.gpu.importState(new Uint8ClampedArray(before) as never)).rejects.toBeInstanceOf(
      AccSGDStateError,
    );
    await expect(twin.gpu.importState(new DataView(before.buffer) as never)).rejects.toBeInstanceOf(
      AccSGDStateError,
    );
    // Nothing changed; the next step continues as if none of these calls were made.
    expect(await twin.gpu.exportState()).toEqual(before);
    expect(await twin.gpu.readParam('a')).toEqual(param);
    expect(twin.gpu.paramGroups[0]!.hyperparams.lr).toBe(0.1);
    await twin.step({ a: pattern(4, 2) });
    expect(relativeError(await twin.gpu.readParam('a'), twin.cpuParams.get('a')!)).toBeLessThanOrEqual(
      accuracyBound('float32', 2),
    );
    twin.gpu.destroy();
  });

  it('raises WebGPU validation errors as AccSGDDeviceError naming the call, without committing the step', async () => {
    const twin = await twinOptimizers(device, [{ hyperparams: {}, tensors: [{ name: 'w', size: 16 }] }], {
      lr: 0.1,
    });
    twin.buffers[0]!.params.destroy(); // the caller frees a buffer the optimizer still uses
    const error = await twin.gpu.step().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AccSGDDeviceError);
    expect(error).toMatchObject({ call: 'step', reason: 'validation' });
    expect((error as Error).message).toMatch(/^step: WebGPU validation error: /);
    expect(twin.gpu.hasBuffer('w')).toBe(false);
    expect(twin.gpu.paramGroups[0]!.step).toBe(0);
    twin.gpu.destroy();
  });

  it('rejects pending and later calls with AccSGDDeviceLostError when the device is lost', async () => {
    const own = await testDevice();
    const twin = await twinOptimizers(own, [{ hyperparams: {}, tensors: [{ name: 'w', size: 1 << 16 }] }], {
      lr: 0.1,
    });
    const pending = twin.gpu.step().then(() => twin.gpu.readParam('w'));
    own.destroy();
    await expect(pending).rejects.toBeInstanceOf(AccSGDDeviceLostError);
    const later = await twin.gpu.step().catch((e: unknown) => e);
    expect(later).toBeInstanceOf(AccSGDDeviceLostError);
    expect(later).toMatchObject({ call: 'step', reason: 'device-lost', lostReason: 'destroyed' });
    await expect(twin.gpu.exportState()).rejects.toMatchObject({
      call: 'exportState',
      reason: 'device-lost',
    });
  });

  it('exports the core state file and imports it all-or-nothing', async () => {
    const groups = [
      {
        hyperparams: { lr: 0.02 },
        tensors: [
          { name: 'a', size: 50 },
          { name: 'b', size: 7 },
        ],
      },
      { hyperparams: { weightDecay: 0.1 }, tensors: [{ name: 'c', size: 20 }] },
    ];
    const twin = await twinOptimizers(device, groups, { lr: 0.1 });
    await twin.step({ a: pattern(50, 1), c: pattern(20, 2) });
    await twin.step({ a: pattern(50, 3), c: pattern(20, 4) });
    const bytes = await twin.gpu.exportState();

    // The CPU optimizer reads it: same groups, steps and buffers; 'b' has none yet.
    const cpu = new AccSGD(
      [
        { lr: 0.02, params: [new Float32Array(50), new Float32Array(7)], names: ['a', 'b'] },
        { params: [new Float32Array(20)], names: ['c'] },
      ],
      { lr: 0.1 },
    );
    cpu.importState(bytes);
    expect(cpu.paramGroups.map((g) => g.step)).toEqual([2, 2]);
    expect(cpu.buffer('b')).toBeNull();
    expect(relativeError(cpu.buffer('a')!, twin.cpu.buffer('a')!)).toBeLessThanOrEqual(
      accuracyBound('float32', 2),
    );

    // A fresh GPU optimizer with the same parameters continues the trajectory exactly like the original.
    const resumed = await twinOptimizers(device, groups, { lr: 0.1 });
    resumed.gpu.setLearningRate(0.5); // overwritten by the import
    await resumed.gpu.importState(bytes);
    expect(resumed.gpu.paramGroups).toEqual(twin.gpu.paramGroups);
    // Parameters belong to the caller: copy the current ones over, then step both with the same gradients.
    const current = await twin.gpu.read();
    groups.forEach((group, g) => {
      for (const t of group.tensors) {
        const segment = resumed.layouts[g]!.segments.find((s) => s.name === t.name)!;
        device.queue.writeBuffer(
          resumed.buffers[g]!.params,
          segment.offset * 4,
          current.params.get(t.name)! as Float32Array<ArrayBuffer>,
        );
      }
    });
    const grads = { a: pattern(50, 5), b: pattern(7, 6), c: null };
    await twin.step(grads);
    await resumed.step(grads);
    const [original, continued] = [await twin.gpu.read(), await resumed.gpu.read()];
    for (const name of ['a', 'b', 'c']) {
      expect(continued.params.get(name), name).toEqual(original.params.get(name));
      expect(continued.buffers.get(name), name).toEqual(original.buffers.get(name));
    }
    expect(resumed.gpu.paramGroups.map((g) => g.step)).toEqual([3, 2]);
    twin.gpu.destroy();
    resumed.gpu.destroy();
  });

  it('refuses a state file that does not fit, changing nothing', async () => {
    const twin = await twinOptimizers(device, [{ hyperparams: {}, tensors: [{ name: 'a', size: 4 }] }], {
      lr: 0.1,
    });
    await twin.step({ a: pattern(4, 1) });
    const before = await twin.gpu.readBuffer('a');
    const other = new AccSGD([{ params: [new Float32Array(5)], names: ['a'] }], { lr: 0.3 });
    other.step([new Float32Array(5).fill(1)]);
    await expect(twin.gpu.importState(other.exportState())).rejects.toThrow(AccSGDStateError);
    await expect(twin.gpu.importState(new Uint8Array([1, 2, 3]))).rejects.toThrow(AccSGDStateError);
    expect(await twin.gpu.readBuffer('a')).toEqual(before);
    expect(twin.gpu.paramGroups[0]!.hyperparams.lr).toBe(0.1);
    twin.gpu.destroy();
  });

  it('rejects every call after destroy()', async () => {
    const twin = await twinOptimizers(device, [{ hyperparams: {}, tensors: [{ name: 'a', size: 4 }] }], {
      lr: 0.1,
    });
    twin.gpu.destroy();
    await expect(twin.gpu.step()).rejects.toMatchObject({ call: 'step', reason: 'destroyed' });
    await expect(twin.gpu.read()).rejects.toMatchObject({ call: 'read', reason: 'destroyed' });
  });
});
