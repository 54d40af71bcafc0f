import { AccSGD, AccSGDConfigError, AccSGDError } from '@accsgd/core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFlatStorage } from './flat-storage.js';
import { pattern } from './test-support/compare.js';
import { noGPU, noGPUReason, testDevice } from './test-support/gpu.js';
import { WebGPUAccSGD } from './webgpu-optimizer.js';

/**
 * Generated hostile input at every public entry point: random malformed values (wrong types, deep
 * and cyclic structures, exotic typed arrays, Maps, Sets, Proxies that forward, throw or are
 * revoked, look-alikes of buffers, destroyed buffers, buffers of another device) put in place of
 * one argument, or of one field inside an otherwise valid argument. Each call must either succeed
 * or reject with a typed AccSGD error (AccSGDConfigError, AccSGDGradientError, AccSGDStateError,
 * or this package's AccSGDDeviceError), and a rejected call must change nothing: the exported
 * state file and the parameters read back are byte for byte what they were, and every GPU buffer
 * the call created is destroyed again. One device and tiny tensors for the whole file.
 */
// ACCSGD_FUZZ_RUNS=1000 for a longer local search.
const RUNS = Number(process.env.ACCSGD_FUZZ_RUNS ?? 100);

/**
 * An exotic value by its index. fast-check inspects the values it generates (it looks for a clone
 * method with `in`), which a revoked or throwing Proxy does not survive, so arbitraries generate
 * picks and the properties turn them into the values (`real`).
 */
class Pick {
  constructor(readonly index: number) {}
  toString() {
    return `exotic[${this.index}]`;
  }
}
const STORAGE = 0x80;
const COPY_SRC = 0x4;
const COPY_DST = 0x8;

describe.skipIf(noGPU)(`hostile input on ${noGPU ? `no adapter: ${noGPUReason}` : 'Dawn'}`, () => {
  let device: GPUDevice;
  let other: GPUDevice;
  /** Buffers created through device.createBuffer and not yet destroyed. */
  const live = new Set<GPUBuffer>();
  /** Buffers the test itself owns (params, grads, exotic values), kept out of the leak count. */
  const own = new Set<GPUBuffer>();
  let params: GPUBuffer;
  let grads: GPUBuffer;
  let listParams: GPUBuffer;
  let listGrads: GPUBuffer;
  let optimizer: WebGPUAccSGD;
  let exotic: unknown[];

  const ownBuffer = (descriptor: GPUBufferDescriptor, on = device) => {
    const buffer = on.createBuffer(descriptor);
    own.add(buffer);
    return buffer;
  };
  const validGroups = () => [
    {
      lr: 0.05,
      params,
      grads,
      segments: [
        { name: 'a', offset: 0, shape: [2, 2] },
        { name: 'b', offset: 8, size: 3 },
      ],
    },
    { tensors: [{ name: 'c', params: listParams, grads: listGrads, elements: 4 }] },
  ];
  const leaked = () => [...live].filter((b) => !own.has(b)).length;

  beforeAll(async () => {
    device = await testDevice();
    other = await testDevice();
    const createBuffer = device.createBuffer.bind(device);
    device.createBuffer = (descriptor: GPUBufferDescriptor) => {
      const buffer = createBuffer(descriptor);
      live.add(buffer);
      const destroy = buffer.destroy.bind(buffer);
      buffer.destroy = () => {
        live.delete(buffer);
        destroy();
      };
      return buffer;
    };
    const usage = STORAGE | COPY_SRC | COPY_DST;
    params = ownBuffer({ label: 'fuzz params', size: 64, usage });
    grads = ownBuffer({ label: 'fuzz grads', size: 64, usage });
    listParams = ownBuffer({ label: 'fuzz list params', size: 16, usage });
    listGrads = ownBuffer({ label: 'fuzz list grads', size: 16, usage });
    device.queue.writeBuffer(params, 0, pattern(16, 1) as Float32Array<ArrayBuffer>);
    device.queue.writeBuffer(grads, 0, pattern(16, 2) as Float32Array<ArrayBuffer>);
    device.queue.writeBuffer(listParams, 0, pattern(4, 3) as Float32Array<ArrayBuffer>);
    device.queue.writeBuffer(listGrads, 0, pattern(4, 4) as Float32Array<ArrayBuffer>);
    optimizer = await WebGPUAccSGD.create(device, validGroups(), { lr: 0.1 });
    await optimizer.step({ a: true, c: true }); // 'b' has no buffer yet

    const destroyed = ownBuffer({ label: 'destroyed', size: 64, usage });
    destroyed.destroy();
    own.add(destroyed);
    const ofOther = other.createBuffer({ label: 'other device', size: 64, usage });
    const readOnly = ownBuffer({ label: 'no storage', size: 64, usage: COPY_SRC | COPY_DST });
    const mapped = ownBuffer({ label: 'mapped', size: 64, usage: STORAGE, mappedAtCreation: true });
    const revoked = Proxy.revocable({}, {});
    revoked.revoke();
    const throwing = new Proxy(
      {},
      {
        get: () => {
          throw new Error('get trap');
        },
        has: () => {
          throw new Error('has trap');
        },
        ownKeys: () => {
          throw new Error('ownKeys trap');
        },
        getPrototypeOf: () => {
          throw new Error('getPrototypeOf trap');
        },
      },
    );
    const forwarding = (target: object) =>
      new Proxy(target, {
        get: (t, key) => {
          const value = Reflect.get(t, key, t);
          return typeof value === 'function' ? value.bind(t) : value;
        },
      });
    const cyclic: Record<string, unknown> = { lr: 0.1 };
    cyclic.self = cyclic;
    let deep: unknown = [true];
    for (let i = 0; i < 200; i++) deep = { a: deep, offset: deep, 0: deep };
    const sparse: unknown[] = [];
    sparse.length = 2 ** 32 - 1;
    const holey: unknown[] = [];
    holey[1] = true;
    holey[2] = true;
    const getterThrows = Object.defineProperty({}, 'a', {
      enumerable: true,
      get() {
        throw new RangeError('getter');
      },
    });
    exotic = [
      undefined,
      null,
      Number.NaN,
      -0,
      Number.POSITIVE_INFINITY,
      -1,
      0.5,
      2 ** 53,
      2 ** 32,
      1e308,
      '',
      'a',
      '0',
      'float16',
      Symbol('s'),
      10n,
      () => true,
      new Map([
        ['a', true],
        ['b', true],
        ['c', true],
      ]),
      new Set(['a', 'b', 'c']),
      Uint8Array.of(1, 1, 1),
      new Float64Array(3),
      new BigInt64Array(3),
      new Uint8ClampedArray(3),
      new Int32Array(4),
      new DataView(new ArrayBuffer(8)),
      new ArrayBuffer(8),
      new SharedArrayBuffer(8),
      new Date(0),
      /re/,
      new Error('value'),
      new WeakMap(),
      Promise.resolve(true),
      Object.create(null),
      Object.assign(Object.create(null), { a: true }),
      new (class Flags {
        a = true;
      })(),
      [true, true, true],
      [true, true],
      [],
      [1, 2, 3],
      [{}],
      sparse,
      holey,
      deep,
      cyclic,
      getterThrows,
      revoked.proxy,
      throwing,
      forwarding({ a: true, b: true, c: true }),
      forwarding([true, true, true]),
      forwarding(params),
      new Proxy(params, {}),
      Object.create(params),
      { size: 64, usage: STORAGE | COPY_SRC, label: '', destroy() {} },
      params,
      grads,
      listParams,
      destroyed,
      ofOther,
      readOnly,
      mapped,
      other,
      device,
      forwarding(device),
      { lr: 0.1 },
      { lr: -1 },
      { storage: 'float16' },
      { nonFinite: 'allow', typo: 1 },
      { timestampWrites: { querySet: {} } },
      { params, grads, segments: [{ offset: 0, size: 4 }] },
      { params, grads, segments: [{ offset: 4, size: 4 }] },
      { tensors: [{ params: listParams, grads: params, elements: 4 }] },
      { offset: 0, size: 2 ** 40 },
      { offset: 2 ** 31, size: 1 },
      { offset: 0, shape: [1.5, 2] },
      { offset: 0, shape: [-1, -1] },
      { offset: 0, size: 4, name: 'a' },
    ];
  });
  afterAll(() => {
    optimizer?.destroy();
    other?.destroy();
    device?.destroy();
  });

  const real = (value: unknown): unknown => (value instanceof Pick ? exotic[value.index] : value);
  /** A record or array of picks and values, made real one level down (own keys kept, __proto__ too). */
  const realIn = (value: unknown): unknown => {
    const picked = real(value);
    if (value instanceof Pick || typeof picked !== 'object' || picked === null) return picked;
    if (Array.isArray(picked)) return picked.map(real);
    if (Object.getPrototypeOf(picked) !== Object.prototype) return picked;
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(picked))
      Object.defineProperty(out, key, {
        value: realIn((picked as Record<string, unknown>)[key]),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    return out;
  };
  const anyValue = () =>
    fc.oneof(
      { weight: 3, arbitrary: fc.integer({ min: 0, max: exotic.length - 1 }).map((i) => new Pick(i)) },
      {
        weight: 1,
        arbitrary: fc.anything({
          maxDepth: 3,
          maxKeys: 4,
          withBigInt: true,
          withBoxedValues: true,
          withDate: true,
          withMap: true,
          withNullPrototype: true,
          withObjectString: true,
          withSet: true,
          withSparseArray: true,
          withTypedArray: true,
        }),
      },
    );

  /** The optimizer's whole state: the state file, every parameter read back, the groups as shown. */
  async function snapshot(): Promise<{ state: Uint8Array; read: unknown; groups: string }> {
    const read = await optimizer.read();
    return {
      state: await optimizer.exportState(),
      read: { params: [...read.params], buffers: [...read.buffers] },
      groups: JSON.stringify(optimizer.paramGroups),
    };
  }

  /** Runs `call` (sync or async); the outcome, requiring any error to be a typed AccSGD error. */
  async function outcome(call: () => unknown): Promise<{ ok: boolean; value?: unknown }> {
    let value: unknown;
    try {
      value = await call();
    } catch (error) {
      if (!(error instanceof AccSGDError)) {
        throw new Error(
          `untyped error: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`,
        );
      }
      expect(error.message.length).toBeGreaterThan(0);
      return { ok: false };
    }
    return { ok: true, value };
  }

  /**
   * Calls `call` on the shared optimizer: a typed error or success; after a rejection (or a call
   * that changes nothing), the state is what it was and no buffer leaked.
   */
  async function probe(call: () => unknown, mayChange: boolean): Promise<void> {
    const before = await snapshot();
    const buffers = leaked();
    const result = await outcome(call);
    expect(leaked()).toBe(buffers);
    if (result.ok && mayChange) return;
    const after = await snapshot();
    expect(after.groups).toBe(before.groups);
    expect(after.state).toEqual(before.state);
    expect(after.read).toEqual(before.read);
  }

  /** A valid value with the field at `path` replaced. */
  function replaced(value: unknown, path: readonly (string | number)[], by: unknown): unknown {
    if (path.length === 0) return by;
    const [head, ...rest] = path;
    const copy = (Array.isArray(value) ? [...value] : { ...(value as object) }) as Record<
      string | number,
      unknown
    >;
    copy[head!] = replaced(copy[head!], rest, by);
    return copy;
  }

  it('create: a typed error or an optimizer, never a crash or a leaked buffer', async () => {
    const argPaths: (string | number)[][] = [
      [0],
      [1],
      [1, 0],
      [1, 1],
      [1, 0, 'params'],
      [1, 0, 'grads'],
      [1, 0, 'segments'],
      [1, 0, 'segments', 0],
      [1, 0, 'segments', 1, 'offset'],
      [1, 0, 'segments', 1, 'size'],
      [1, 0, 'segments', 0, 'shape'],
      [1, 0, 'segments', 0, 'shape', 1],
      [1, 0, 'segments', 0, 'name'],
      [1, 0, 'lr'],
      [1, 0, 'kappa'],
      [1, 0, 'typo'],
      [1, 1, 'tensors'],
      [1, 1, 'tensors', 0],
      [1, 1, 'tensors', 0, 'params'],
      [1, 1, 'tensors', 0, 'grads'],
      [1, 1, 'tensors', 0, 'elements'],
      [1, 1, 'tensors', 0, 'shape'],
      [1, 1, 'tensors', 0, 'name'],
      [1, 1, 'params'],
      [1, 2],
      [2],
      [2, 'lr'],
      [2, 'xi'],
      [2, 'learningRate'],
      [3],
      [3, 'storage'],
      [3, 'label'],
      [3, 'nonFinite'],
      [3, 'maxBindingBytes'],
      [3, 'maxWorkgroupsPerDimension'],
      [3, 'workgroupsPerDispatch'],
      [3, 'typo'],
    ];
    // Fresh buffers for the new optimizers, so that a create that succeeds does not overlap the
    // shared optimizer's buffers (create only validates and allocates: it writes nothing).
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...argPaths), anyValue(), async (path, value) => {
        const args = replaced([device, validGroups(), { lr: 0.1 }, {}], path, real(value)) as Parameters<
          typeof WebGPUAccSGD.create
        >;
        const buffers = leaked();
        const before = await snapshot();
        const result = await outcome(() => WebGPUAccSGD.create(...args));
        if (result.ok) (result.value as WebGPUAccSGD).destroy();
        expect(leaked()).toBe(buffers);
        const after = await snapshot();
        expect(after.state).toEqual(before.state);
        expect(after.read).toEqual(before.read);
      }),
      { numRuns: RUNS },
    );
  });

  it('step: gradient flags and step options', async () => {
    const flags = fc.oneof(
      anyValue(),
      fc.dictionary(fc.constantFrom('a', 'b', 'c', 'd', '__proto__', 'constructor'), anyValue(), {
        maxKeys: 3,
      }),
      fc.array(anyValue(), { minLength: 3, maxLength: 3 }),
    );
    const options = fc.oneof(
      anyValue(),
      fc.record({ timestampWrites: anyValue() }),
      fc.record({ timestampWrites: fc.record({ querySet: anyValue(), endOfPassWriteIndex: anyValue() }) }),
    );
    await fc.assert(
      fc.asyncProperty(flags, fc.option(options, { nil: undefined }), async (present, stepOptions) => {
        await probe(() => optimizer.step(realIn(present) as never, realIn(stepOptions) as never), true);
      }),
      { numRuns: RUNS },
    );
  });

  it('setLearningRate, readParam, readBuffer, hasBuffer, read and exportState', async () => {
    const call = fc.oneof(
      fc.record({ kind: fc.constant('setLearningRate'), a: anyValue(), b: fc.option(anyValue()) }),
      fc.record({ kind: fc.constant('setLearningRate'), a: fc.double(), b: fc.option(anyValue()) }),
      fc.record({
        kind: fc.constantFrom('readParam', 'readBuffer', 'hasBuffer'),
        a: anyValue(),
        b: fc.constant(0),
      }),
      fc.record({ kind: fc.constantFrom('read', 'exportState'), a: anyValue(), b: anyValue() }),
    );
    await fc.assert(
      fc.asyncProperty(call, async ({ kind, a, b }) => {
        const target = optimizer as unknown as Record<string, (...args: unknown[]) => unknown>;
        await probe(
          () => target[kind]!.call(optimizer, real(a), real(b ?? undefined)),
          kind === 'setLearningRate',
        );
      }),
      { numRuns: RUNS },
    );
  });

  it('importState: malformed, mutated, truncated and wrongly typed state files', async () => {
    const valid = await optimizer.exportState();
    // A state file that decodes but does not fit (another layout), and one from the CPU optimizer that fits.
    const cpu = new AccSGD(
      [
        { lr: 0.05, params: [new Float32Array(4), new Float32Array(3)], names: ['a', 'b'] },
        { params: [new Float32Array(4)], names: ['c'] },
      ],
      { lr: 0.1 },
    );
    const misfit = new AccSGD([{ params: [new Float32Array(5)], names: ['a'] }], { lr: 0.1 }).exportState();
    const bytes = fc.oneof(
      anyValue(),
      fc.uint8Array({ maxLength: 64 }),
      fc.constant(misfit),
      fc.constant(cpu.exportState()),
      fc.constant('proxy of the valid file'),
      fc.constant(new Uint8ClampedArray(valid)),
      fc.constant(Buffer.from(valid)),
      fc.integer({ min: 0, max: valid.length }).map((n) => valid.slice(0, n)),
      fc
        .tuple(fc.integer({ min: 0, max: valid.length - 1 }), fc.integer({ min: 0, max: 255 }))
        .map(([at, byte]) => {
          const copy = valid.slice();
          copy[at] = byte;
          return copy;
        }),
    );
    await fc.assert(
      fc.asyncProperty(bytes, async (file) => {
        const bytes = file === 'proxy of the valid file' ? new Proxy(valid, {}) : real(file);
        await probe(() => optimizer.importState(bytes as never), true);
      }),
      { numRuns: RUNS },
    );
  });

  it('createFlatStorage and its write and binding: a typed error or a storage', async () => {
    const tensor = fc.oneof(anyValue(), fc.record({ name: anyValue(), shape: anyValue() }));
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(anyValue(), fc.array(tensor, { maxLength: 3 })),
        fc.option(anyValue(), { nil: undefined }),
        anyValue(),
        anyValue(),
        async (tensors, options, which, values) => {
          const buffers = leaked();
          const made = await outcome(() =>
            createFlatStorage(device, realIn(tensors) as never, real(options) as never),
          );
          if (made.ok) {
            const storage = made.value as ReturnType<typeof createFlatStorage>;
            const name = storage.segments[0]?.name ?? 'x';
            await outcome(() => storage.write(name, real(which) as never, real(values) as never));
            await outcome(() => storage.binding(name, real(which) as never));
            storage.destroy();
          }
          expect(leaked()).toBe(buffers);
        },
      ),
      { numRuns: RUNS },
    );
  });
});

describe.skipIf(noGPU)('createFlatStorage rejects what it cannot lay out', () => {
  let gpuDevice: GPUDevice;
  let created = 0;
  let destroyed = 0;
  const leakedBuffers = () => created - destroyed;
  beforeAll(async () => {
    gpuDevice = await testDevice();
    const createBuffer = gpuDevice.createBuffer.bind(gpuDevice);
    gpuDevice.createBuffer = (descriptor: GPUBufferDescriptor) => {
      const buffer = createBuffer(descriptor);
      created++;
      const destroy = buffer.destroy.bind(buffer);
      buffer.destroy = () => {
        destroyed++;
        destroy();
      };
      return buffer;
    };
  });
  afterAll(() => gpuDevice?.destroy());

  it('names the field and what was expected, and creates no buffer', async () => {
    const bad: [unknown, unknown, RegExp][] = [
      [null, undefined, /tensors.*an array of \{ name: string, shape: number\[\] \}/],
      [[{ name: 'w', shape: [1.5, 2] }], undefined, /tensors\[0\]\.shape\[0\].*an integer >= 0/],
      [[{ name: 'w', shape: [-1, -1] }], undefined, /tensors\[0\]\.shape\[0\].*an integer >= 0/],
      [[{ name: 7, shape: [2] }], undefined, /tensors\[0\]\.name.*a non-empty string/],
      [[{ name: 'w', shape: [2] }], null, /options.*undefined or \{ storage/],
      [[{ name: 'w', shape: [2] }], { storage: 'float64' }, /options\.storage.*"float32" or "float16"/],
      [[{ name: 'w', shape: [2] }], { labl: 'x' }, /options\.labl/],
      [[{ name: 'w', shape: [2 ** 40] }], undefined, /maxBufferSize/],
    ];
    for (const [tensors, options, message] of bad) {
      const before = leakedBuffers();
      expect(() => createFlatStorage(gpuDevice, tensors as never, options as never)).toThrow(
        AccSGDConfigError,
      );
      expect(() => createFlatStorage(gpuDevice, tensors as never, options as never)).toThrow(message);
      expect(leakedBuffers()).toBe(before);
    }
  });

  it('writes only a Float32Array (float32 storage) into params or grads', () => {
    const storage = createFlatStorage(gpuDevice, [{ name: 'w', shape: [2] }]);
    expect(() => storage.write('w', 'params', new Float64Array(2) as never)).toThrow(/a Float32Array/);
    expect(() => storage.write('w', 'momentum' as never, new Float32Array(2))).toThrow(/"params" or "grads"/);
    expect(() => storage.binding('w', 'momentum' as never)).toThrow(/"params" or "grads"/);
    expect(() => storage.write('w', 'params', new Float32Array(3))).toThrow(/2 elements/);
    storage.write('w', 'grads', new Float32Array([1, 2]));
    expect(storage.binding('w', 'grads').size).toBe(8);
    storage.destroy();
  });
});
