import { AccSGDError } from '@accsgd/core';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { type AccSGDOptimizer, accsgd } from './accsgd-optimizer.js';

/**
 * Random malformed values (wrong types, deep structures, exotic typed arrays, Maps, Sets, Proxies,
 * getters and schedules that throw, disposed tensors, tensors of the wrong dtype or shape) at every
 * public entry point of AccSGDOptimizer, on the cpu backend. A call either succeeds or throws a
 * typed AccSGD error; a rejected call changes nothing (variables, the state file, the iteration
 * count, lastStep) and leaks no tensor.
 */

tf.env().set('IS_TEST', true);

let counter = 0;

/** A tensor, described; made inside the property so that every run (and shrink) has fresh ones. */
interface TensorSpec {
  readonly tensorSpec: true;
  dtype: 'float32' | 'int32' | 'bool' | 'string' | 'complex64';
  shape: readonly number[];
  disposed: boolean;
  special: 'none' | 'nan' | 'inf';
}

const tensorSpec: fc.Arbitrary<TensorSpec> = fc.record({
  tensorSpec: fc.constant(true as const),
  dtype: fc.constantFrom('float32', 'float32', 'float32', 'int32', 'bool', 'string', 'complex64'),
  shape: fc.oneof(
    fc.constant([2]),
    fc.constant([3]),
    fc.constant([]),
    fc.constant([0]),
    fc.constant([2, 1]),
    fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 3 }),
  ),
  disposed: fc.boolean(),
  special: fc.constantFrom('none', 'none', 'nan', 'inf'),
});

/** Values materialize() passes on untouched (it must not trip their traps itself). */
const opaque = new WeakSet<object>();
const throwingGetter = () => {
  const o = {};
  opaque.add(o);
  Object.defineProperty(o, 'name', {
    enumerable: true,
    get: () => {
      throw new Error('getter');
    },
  });
  return o;
};

const throwingProxy = () => {
  const trap = () => {
    throw new Error('trap');
  };
  const p = new Proxy({}, { get: trap, ownKeys: trap, getPrototypeOf: trap, has: trap });
  opaque.add(p);
  return p;
};

const exotic: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(new Float64Array([1, 2])),
  fc.constant(new Int8Array([1, -1])),
  fc.constant(new Uint8ClampedArray([255])),
  fc.constant(new BigInt64Array([1n])),
  fc.constant(new DataView(new ArrayBuffer(8))),
  fc.constant(new ArrayBuffer(16)),
  fc.constant(new SharedArrayBuffer(8)),
  fc.constant(new Uint8Array(0)),
  fc.uint8Array({ maxLength: 64 }),
  fc.constant(new Map([['a', 1]])),
  fc.constant(new Set([1])),
  fc.constant(new Date(0)),
  fc.constant(/re/),
  fc.constant(Symbol('s')),
  fc.constant(Object.create(null)),
  fc.constant(() => 0.1),
  fc.constant(() => Number.NaN),
  fc.constant(() => 'x'),
  fc.constant(() => {
    throw new Error('schedule');
  }),
  fc.constant(Promise.resolve(1)),
  fc.bigInt(),
  fc.constantFrom(Number.NaN, Infinity, -Infinity, -0, 1e308, -1, 0, 0.1, 2 ** 53),
  fc.constant(throwingGetter()),
  fc.constant({ throwingProxy: true }),
);

/** Any value, with tensors and exotic objects mixed in at any depth. */
const { hostile } = fc.letrec((tie) => ({
  hostile: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.anything({ maxDepth: 2 }),
    exotic,
    tensorSpec,
    fc.array(tie('hostile'), { maxLength: 3 }),
    fc.dictionary(fc.string({ maxLength: 6 }), tie('hostile'), { maxKeys: 3 }),
    tie('hostile').map((x) => ({ proxy: x })),
  ),
}));

/** Makes the tensors and Proxies a generated value describes. */
function materialize(value: unknown, made: tf.Tensor[], depth = 0): unknown {
  if (depth > 8 || typeof value !== 'object' || value === null || opaque.has(value)) return value;
  if (Object.keys(value).length === 1 && (value as { throwingProxy?: unknown }).throwingProxy === true) {
    return throwingProxy();
  }
  if ((value as TensorSpec).tensorSpec === true) {
    const spec = value as TensorSpec;
    const size = spec.shape.reduce((a, b) => a * b, 1);
    const fill = spec.special === 'nan' ? Number.NaN : spec.special === 'inf' ? Infinity : 0.5;
    const shape = [...spec.shape];
    const t =
      spec.dtype === 'string'
        ? tf.tensor(
            Array.from({ length: size }, () => 's'),
            shape,
            'string',
          )
        : spec.dtype === 'complex64'
          ? tf.complex(tf.fill(shape, fill), tf.zeros(shape))
          : tf.fill(shape, fill, spec.dtype);
    made.push(t);
    if (spec.disposed) t.dispose();
    return t;
  }
  if (Object.keys(value).length === 1 && 'proxy' in value) {
    const inner = materialize((value as { proxy: unknown }).proxy, made, depth + 1);
    return typeof inner === 'object' && inner !== null ? new Proxy(inner, {}) : inner;
  }
  if (Array.isArray(value)) return value.map((x) => materialize(x, made, depth + 1));
  if (Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, x]) => [k, materialize(x, made, depth + 1)]));
  }
  return value;
}

/** A fixture: two variables and an optimizer that has stepped one of them. */
function fixture() {
  const a = tf.variable(tf.tensor1d([1, -2]), true, `fz${counter++}_a`);
  const b = tf.variable(tf.tensor1d([0.5, 0.25]), true, `fz${counter++}_b`);
  const opt = accsgd({ lr: 0.1, kappa: 100, xi: 5 });
  tf.tidy(() => opt.applyGradients({ [a.name]: tf.tensor1d([0.1, 0.2]) }));
  return { a, b, opt };
}

async function fingerprint(opt: AccSGDOptimizer, vars: tf.Variable[]) {
  return JSON.stringify({
    vars: vars.map((v) => Array.from(v.dataSync())),
    state: Array.from(await opt.exportState()),
    iterations: opt.iterations,
    lastStep: opt.lastStep,
    groups: opt.paramGroups,
  });
}

const fromConfig = (config: unknown) => {
  const [cls, create] = tf.serialization.SerializationMap.getMap().classNameMap.AccSGD!;
  return create(cls, config as tf.serialization.ConfigDict);
};

type Input = { entry: string; args: unknown[] };
type Names = { a: string; b: string };

/** Per entry point: arguments built from hostile values, some near-valid around the fixture's names. */
const inputs: fc.Arbitrary<(names: Names) => Input> = fc.oneof(
  fc.tuple(hostile).map(([config]) => () => ({ entry: 'accsgd', args: [config] })),
  fc
    .record({ lr: hostile, kappa: hostile, groups: hostile, extra: fc.boolean() })
    .map(({ lr, kappa, groups, extra }) => () => ({
      entry: 'accsgd',
      args: [{ lr, ...(extra ? { kappa } : {}), groups }],
    })),
  fc.tuple(hostile).map(([config]) => () => ({ entry: 'fromConfig', args: [config] })),
  fc
    .record({ groups: hostile, lr: fc.oneof(fc.constant(0.1), hostile) })
    .map((config) => () => ({ entry: 'fromConfig', args: [config] })),
  fc
    .record({ params: hostile, names: hostile, lr: fc.oneof(fc.constant(0.1), hostile) })
    .map((g) => () => ({ entry: 'fromConfig', args: [{ lr: 0.1, groups: [g] }] })),
  ...(['applyGradients', 'applyGradientsAsync'] as const).flatMap((entry) => [
    fc.tuple(hostile).map(([grads]) => () => ({ entry, args: [grads] })),
    fc.tuple(hostile, hostile).map(([ga, gb]) => (n: Names) => ({ entry, args: [{ [n.a]: ga, [n.b]: gb }] })),
    fc.tuple(hostile, fc.boolean()).map(([g, asList]) => (n: Names) => ({
      entry,
      args: [
        asList
          ? [
              { name: n.a, tensor: tensorOk() },
              { name: n.b, tensor: g },
            ]
          : { [n.a]: tensorOk(), [n.b]: g },
      ],
    })),
    fc.array(hostile, { maxLength: 3 }).map((items) => () => ({ entry, args: [items] })),
  ]),
  fc.tuple(hostile, hostile).map(([lr, group]) => () => ({ entry: 'setLearningRate', args: [lr, group] })),
  fc.tuple(hostile).map(([lr]) => () => ({ entry: 'setLearningRate', args: [lr] })),
  fc.tuple(hostile).map(([w]) => () => ({ entry: 'setWeights', args: [w] })),
  fc.tuple(hostile, hostile, hostile).map(([iter, name, tensor]) => (n: Names) => ({
    entry: 'setWeights',
    args: [
      [
        { name: 'iter', tensor: iter },
        { name: fc.sample(fc.constantFrom(name, `${n.a}/momentum_buffer`), 1)[0], tensor },
      ],
    ],
  })),
  fc.tuple(hostile).map(([bytes]) => () => ({ entry: 'importState', args: [bytes] })),
);

/** A valid gradient for a [2] variable, described (made in materialize). */
function tensorOk(): TensorSpec {
  return { tensorSpec: true, dtype: 'float32', shape: [2], disposed: false, special: 'none' };
}

async function call(opt: AccSGDOptimizer, { entry, args }: Input): Promise<unknown> {
  switch (entry) {
    case 'accsgd':
      return accsgd(args[0] as never);
    case 'fromConfig':
      return fromConfig(args[0]);
    case 'applyGradients':
      return opt.applyGradients(args[0] as never);
    case 'applyGradientsAsync':
      return opt.applyGradientsAsync(args[0] as never);
    case 'setLearningRate':
      return opt.setLearningRate(args[0] as never, args[1] as never);
    case 'setWeights':
      return opt.setWeights(args[0] as never);
    case 'importState':
      return opt.importState(args[0] as never);
    default:
      throw new Error(entry);
  }
}

describe('hostile input at every public entry point (cpu)', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('throws only typed AccSGD errors, and a rejected call changes nothing and leaks nothing', async () => {
    const seen = new Map<string, { ok: number; rejected: number }>();
    await fc.assert(
      fc.asyncProperty(inputs, async (build) => {
        const { a, b, opt } = fixture();
        const made: tf.Tensor[] = [];
        try {
          const input = build({ a: a.name, b: b.name });
          const args = input.args.map((x) => materialize(x, made));
          const before = await fingerprint(opt, [a, b]);
          const tensors = tf.memory().numTensors;
          let error: unknown = null;
          let result: unknown;
          try {
            result = await call(opt, { entry: input.entry, args });
          } catch (e) {
            error = e;
          }
          const count = seen.get(input.entry) ?? { ok: 0, rejected: 0 };
          seen.set(input.entry, count);
          if (error === null) {
            count.ok++;
            if (result != null && result instanceof tf.Optimizer) result.dispose();
            return;
          }
          count.rejected++;
          if (!(error instanceof AccSGDError)) {
            throw new Error(`${input.entry} threw an untyped ${String(error)}`, { cause: error });
          }
          expect(tf.memory().numTensors).toBe(tensors);
          expect(await fingerprint(opt, [a, b])).toBe(before);
        } finally {
          opt.dispose();
          tf.dispose([a, b, ...made.filter((t) => !t.isDisposed)]);
        }
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 3000), seed: Number(process.env.FUZZ_SEED ?? 20261202) },
    );
    if (process.env.FUZZ_REPORT) console.log(Object.fromEntries(seen));
    // Every entry point was reached, and rejected something.
    expect([...seen.keys()].sort()).toEqual(
      [
        'accsgd',
        'applyGradients',
        'applyGradientsAsync',
        'fromConfig',
        'importState',
        'setLearningRate',
        'setWeights',
      ].sort(),
    );
    for (const count of seen.values()) expect(count.rejected).toBeGreaterThan(0);
  }, 300_000);
});
