import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AccSGDError, AccSGDStateError } from './errors.js';
import { HYPERPARAM_NAMES, type Hyperparams, validateHyperparams } from './hyperparams.js';
import { AccSGD } from './optimizer.js';
import { decodeSafetensors, encodeSafetensors } from './safetensors.js';
import { decodeState, encodeState, type OptimizerState, type StateBuffer } from './state-file.js';
import { resizableBuffer, twoGroupOptimizer } from './test-support/hostile.js';

/**
 * Property tests for the hostile-input rules:
 * - writer/reader symmetry: whatever encodeState accepts, decodeState reads back identically;
 *   whatever it refuses, it refuses with AccSGDStateError (and exactly when an independent oracle
 *   says the state is invalid);
 * - every public entry point, given random malformed values, either succeeds or throws a typed
 *   AccSGD error, changes nothing when it throws, and leaves the optimizer stepping as a fresh twin.
 */

const good: Hyperparams = { lr: 0.1, kappa: 1000, xi: 10, smallConst: 0.7, weightDecay: 0 };

// ---------------------------------------------------------------------------------------------
// Writer/reader symmetry
// ---------------------------------------------------------------------------------------------

const nameArb = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '__proto__',
      '__metadata__',
      '',
      '"',
      '\\',
      '\u0000\u001f',
      '\ud800',
      '\udfff\ud800',
      'a.momentum_buffer',
      'constructor',
      'toString',
      '{"a":1}',
      '🚀ü',
    ),
  },
);

const hyperValue = (valid: fc.Arbitrary<number>) =>
  fc.oneof(
    { weight: 29, arbitrary: valid },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        Number.NaN,
        -1,
        Number.POSITIVE_INFINITY,
        1e308,
        -0,
        0,
        2,
        '0.1' as unknown as number,
      ),
    },
  );
const hyperparamsArb: fc.Arbitrary<Hyperparams> = fc.record({
  lr: hyperValue(fc.double({ min: 0, max: 10, noNaN: true })),
  kappa: hyperValue(fc.double({ min: 1, max: 1e6, noNaN: true })),
  xi: hyperValue(fc.double({ min: 1e-3, max: 1, noNaN: true })),
  smallConst: hyperValue(fc.double({ min: 1e-3, max: 1, noNaN: true })),
  weightDecay: hyperValue(fc.double({ min: 0, max: 1, noNaN: true })),
});

const stepArb = fc.oneof(
  { weight: 8, arbitrary: fc.oneof(fc.nat(), fc.maxSafeNat(), fc.constant(2 ** 53 - 1)) },
  { weight: 1, arbitrary: fc.constantFrom(2 ** 53, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY) },
);

const bufferArb: fc.Arbitrary<StateBuffer> = fc
  .record({
    shape: fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 3 }),
    f64: fc.boolean(),
    // Sometimes a shape that does not fit the data, or is not a valid shape at all.
    skew: fc.oneof(
      { weight: 9, arbitrary: fc.constant(0) },
      { weight: 1, arbitrary: fc.constantFrom(1, -1) },
    ),
    negative: fc.oneof(
      { weight: 19, arbitrary: fc.constant(false) },
      { weight: 1, arbitrary: fc.constant(true) },
    ),
    seed: fc.array(fc.double(), { maxLength: 27 }),
  })
  .map(({ shape, f64, skew, negative, seed }) => {
    const n = Math.max(0, shape.reduce((a, b) => a * b, 1) + skew);
    const values = Array.from({ length: n }, (_, i) => seed[i % Math.max(seed.length, 1)] ?? 0);
    return {
      shape: negative && shape.length > 0 ? shape.map((d) => -d - 1) : shape,
      data: f64 ? Float64Array.from(values) : Float32Array.from(values),
    };
  });

const stateArb: fc.Arbitrary<OptimizerState> = fc
  .record({
    names: fc.array(nameArb, { minLength: 0, maxLength: 6 }),
    groups: fc.array(fc.record({ hyperparams: hyperparamsArb, step: stepArb, size: fc.nat(3) }), {
      minLength: 1,
      maxLength: 3,
    }),
    buffered: fc.array(fc.boolean(), { minLength: 6, maxLength: 6 }),
    buffers: fc.array(bufferArb, { minLength: 7, maxLength: 7 }),
    orphan: fc.oneof({ weight: 9, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: nameArb }),
  })
  .map(({ names, groups, buffered, buffers, orphan }) => {
    // Names are dealt out to the groups in order (a repeated name, if any, lands in two places).
    let next = 0;
    const stateGroups = groups.map((g, i) => {
      const take = i === groups.length - 1 ? names.length - next : Math.min(g.size, names.length - next);
      const params = names.slice(next, next + Math.max(take, 0));
      next += Math.max(take, 0);
      return { hyperparams: g.hyperparams, params, step: g.step };
    });
    const map = new Map<string, StateBuffer>();
    names.forEach((name, i) => {
      if (buffered[i]) map.set(name, buffers[i]!);
    });
    if (orphan !== undefined) map.set(orphan, buffers[6]!);
    return { groups: stateGroups, buffers: map };
  });

/** The oracle, written independently of the writer: is `state` one the reader accepts? */
function valid(state: OptimizerState): boolean {
  const seen = new Set<string>();
  for (const g of state.groups) {
    try {
      validateHyperparams({ ...g.hyperparams });
    } catch {
      return false;
    }
    if (!Number.isSafeInteger(g.step) || g.step < 0) return false;
    for (const name of g.params) {
      if (seen.has(name)) return false;
      seen.add(name);
    }
  }
  for (const [name, buffer] of state.buffers) {
    if (!seen.has(name)) return false;
    if (!buffer.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) return false;
    if (buffer.shape.reduce((a, b) => a * b, 1) !== buffer.data.length) return false;
  }
  return true;
}

/** What the reader gives back for a valid state: -0 hyperparameters as 0 (JSON has no -0). */
function expected(state: OptimizerState): OptimizerState {
  return {
    groups: state.groups.map((g) => ({
      hyperparams: Object.fromEntries(
        HYPERPARAM_NAMES.map((k) => [k, Object.is(g.hyperparams[k], -0) ? 0 : g.hyperparams[k]]),
      ) as unknown as Hyperparams,
      params: [...g.params],
      step: g.step,
    })),
    buffers: state.buffers,
  };
}

describe('writer/reader symmetry', () => {
  it('whatever encodeState accepts, decodeState reads back identically; it refuses exactly the invalid', () => {
    const outcome = { written: 0, refused: 0 };
    fc.assert(
      fc.property(stateArb, (state) => {
        let bytes: Uint8Array;
        try {
          bytes = encodeState(state);
        } catch (error) {
          expect(error).toBeInstanceOf(AccSGDStateError);
          expect(valid(state)).toBe(false);
          outcome.refused++;
          return;
        }
        expect(valid(state)).toBe(true);
        expect(decodeState(bytes)).toEqual(expected(state));
        // And byte for byte: writing what was read gives the same file.
        expect(encodeState(decodeState(bytes))).toEqual(bytes);
        outcome.written++;
      }),
      { numRuns: 2_000, seed: 2026_12_02 },
    );
    // Both outcomes must be well exercised.
    expect(outcome.written).toBeGreaterThan(700);
    expect(outcome.refused).toBeGreaterThan(300);
  });

  it('a step count of 2^53 - 1 and F32/F64 buffers with zero dimensions round-trip', () => {
    const state: OptimizerState = {
      groups: [{ hyperparams: good, params: ['a', 'b', 'c'], step: 2 ** 53 - 1 }],
      buffers: new Map<string, StateBuffer>([
        ['a', { shape: [0, 3], data: new Float32Array(0) }],
        ['b', { shape: [2, 0, 2 ** 40], data: new Float64Array(0) }],
        ['c', { shape: [], data: new Float64Array([Number.NaN]) }],
      ]),
    };
    expect(decodeState(encodeState(state))).toEqual(state);
  });

  it('encodeSafetensors: whatever it writes, decodeSafetensors reads back', () => {
    const tensorArb = fc.tuple(nameArb, bufferArb);
    fc.assert(
      fc.property(
        fc.array(tensorArb, { maxLength: 5 }),
        fc.dictionary(nameArb, fc.string()),
        (tensors, metadata) => {
          const entries = tensors.map(
            ([name, b]) =>
              [
                name,
                { dtype: b.data instanceof Float64Array ? 'F64' : 'F32', shape: b.shape, data: b.data },
              ] as [string, { dtype: 'F32' | 'F64'; shape: number[]; data: Float32Array | Float64Array }],
          );
          let bytes: Uint8Array;
          try {
            bytes = encodeSafetensors(entries, metadata);
          } catch (error) {
            expect(error).toBeInstanceOf(AccSGDStateError);
            const names = entries.map(([n]) => n);
            const bad =
              new Set(names).size !== names.length ||
              names.includes('__metadata__') ||
              entries.some(
                ([, t]) =>
                  !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0) ||
                  t.shape.reduce((a, b) => a * b, 1) !== t.data.length,
              );
            expect(bad).toBe(true);
            return;
          }
          const file = decodeSafetensors(bytes);
          expect({ ...file.metadata }).toEqual({ ...metadata });
          expect([...file.tensors.keys()].sort()).toEqual(entries.map(([n]) => n).sort());
          for (const [name, tensor] of entries) expect(file.tensors.get(name)).toEqual(tensor);
        },
      ),
      { numRuns: 1_500, seed: 2026_12_03 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Hostile values at every entry point
// ---------------------------------------------------------------------------------------------

const deepArray = (depth: number) => {
  const root: unknown[] = [];
  let cursor = root;
  for (let i = 0; i < depth; i++) {
    const next: unknown[] = [];
    cursor.push(next);
    cursor = next;
  }
  return root;
};
const deepObject = (depth: number) => {
  const root: Record<string, unknown> = {};
  let cursor = root;
  for (let i = 0; i < depth; i++) {
    const next: Record<string, unknown> = {};
    cursor.lr = next;
    cursor = next;
  }
  return root;
};
const throwingGetters = (keys: string[]) => {
  const object = {};
  for (const key of keys) {
    Object.defineProperty(object, key, {
      enumerable: true,
      get() {
        throw new Error(`getter ${key}`);
      },
    });
  }
  return object;
};
const throwingProxy = <T extends object>(target: T) =>
  new Proxy(target, {
    get() {
      throw new RangeError('trap');
    },
    ownKeys() {
      throw new RangeError('trap');
    },
    getPrototypeOf() {
      throw new RangeError('trap');
    },
    has() {
      throw new RangeError('trap');
    },
  });
const revoked = () => {
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  return proxy;
};
const detached = (n: number) => {
  const a = new Float32Array(n);
  structuredClone(a.buffer, { transfer: [a.buffer] });
  return a;
};
const spoofed = () => {
  // A Float32Array that claims a different length, and an Int8Array posing as a Float32Array.
  const a = new Float32Array(4);
  Object.defineProperty(a, 'length', { value: 1_000 });
  const b = new Int8Array(16);
  Object.setPrototypeOf(b, Float32Array.prototype);
  return [a, b];
};
const Float16 = (globalThis as { Float16Array?: new (n: number) => ArrayBufferView }).Float16Array;

/** Fresh hostile values (a function, so that stateful ones such as resizable buffers start anew). */
const hostileMakers: (() => unknown)[] = [
  () => null,
  () => undefined,
  () => Number.NaN,
  () => -0,
  () => 1e308,
  () => 'w',
  () => '',
  () => Symbol('hostile'),
  () => 10n ** 30n,
  () => true,
  () => () => 0,
  () => deepArray(5_000),
  () => deepObject(5_000),
  () => [[[[[[[[[[0.1]]]]]]]]]],
  () => new Int8Array(4),
  () => new Uint8Array(16),
  () => new BigInt64Array(4),
  () => new Float32Array(3),
  () => new Float64Array(4),
  () => new DataView(new ArrayBuffer(16)),
  () => (Float16 ? new Float16(4) : new Uint16Array(4)),
  () => new Float32Array(resizableBuffer(16, 64)),
  () => new Float32Array(new SharedArrayBuffer(16)),
  () =>
    new Float32Array(
      new (SharedArrayBuffer as unknown as new (n: number, o: object) => SharedArrayBuffer)(16, {
        maxByteLength: 64,
      }),
    ),
  () => new Uint8Array(new SharedArrayBuffer(64)),
  () => detached(4),
  () => spoofed()[0],
  () => spoofed()[1],
  () => new Proxy(new Float32Array(4), {}),
  () => new Proxy([new Float32Array(4), null], {}),
  () => new Proxy(new Map(), {}),
  () => throwingProxy({ lr: 0.1 }),
  () => throwingProxy([new Float32Array(4)]),
  () => revoked(),
  () => throwingGetters(['lr', 'w', 'groups', 'maxTensors', 'nonFinite', 'params']),
  () => new Map([['w', new Float32Array(4)]]),
  () => new Set([1]),
  () => new Date(0),
  () => Object.create(null),
  () => ({ __proto__: null, w: new Float32Array(4) }),
  () => ({ lr: 0.1 }),
  () => ({ w: new Float32Array(4), b: new Float64Array(3) }),
  () => ({ groups: [], buffers: new Map() }),
  () => ({ maxHeaderBytes: 1.5 }),
  () => ({ maxTensors: Number.NaN }),
  () => [null, null],
  () => [new Float32Array(4), new Float64Array(3)],
  () => Object.assign([], { length: 2 }),
  () => new Uint8Array(8),
];
const hostile = fc
  .integer({ min: 0, max: hostileMakers.length - 1 })
  .map((i) => ({ i, make: hostileMakers[i]! }));

const makeOptimizer = () => twoGroupOptimizer(good);
const fingerprint = ({ opt, w, b }: ReturnType<typeof makeOptimizer>) =>
  JSON.stringify({ w: [...w], b: [...b], state: [...opt.exportState()], groups: opt.paramGroups });
const validBytes = makeOptimizer().opt.exportState();

/** Each entry point, with the hostile value `h` in one argument position. */
const calls: [string, (ctx: ReturnType<typeof makeOptimizer>, h: unknown) => unknown][] = [
  ['new AccSGD(h, ...)', (_c, h) => new AccSGD(h as never, good)],
  ['new AccSGD(p, h)', (_c, h) => new AccSGD([new Float32Array(2)], h as never)],
  ['new AccSGD(p, d, h)', (_c, h) => new AccSGD([new Float32Array(2)], good, h as never)],
  ['new AccSGD([h])', (_c, h) => new AccSGD([h] as never, good)],
  ['new AccSGD([{ params: [h] }])', (_c, h) => new AccSGD([{ params: [h] }] as never, good)],
  [
    'new AccSGD([{ names: h }])',
    (_c, h) => new AccSGD([{ params: [new Float32Array(2)], names: h }] as never, good),
  ],
  [
    'new AccSGD([{ names: [h] }])',
    (_c, h) => new AccSGD([{ params: [new Float32Array(2)], names: [h] }] as never, good),
  ],
  [
    'new AccSGD([{ shapes: h }])',
    (_c, h) => new AccSGD([{ params: [new Float32Array(2)], shapes: h }] as never, good),
  ],
  [
    'new AccSGD([{ shapes: [h] }])',
    (_c, h) => new AccSGD([{ params: [new Float32Array(2)], shapes: [h] }] as never, good),
  ],
  [
    'new AccSGD([{ lr: h }])',
    (_c, h) => new AccSGD([{ params: [new Float32Array(2)], lr: h }] as never, good),
  ],
  ['new AccSGD(p, { lr: h })', (_c, h) => new AccSGD([new Float32Array(2)], { lr: h } as never)],
  [
    'new AccSGD(p, d, { arena: h })',
    (_c, h) => new AccSGD([new Float32Array(2)], good, { arena: h } as never),
  ],
  [
    'new AccSGD(p, d, { nonFinite: h })',
    (_c, h) => new AccSGD([new Float32Array(2)], good, { nonFinite: h } as never),
  ],
  ['step(h)', ({ opt }, h) => opt.step(h as never)],
  ['step([h, null])', ({ opt }, h) => opt.step([h, null] as never)],
  ['step([null, h])', ({ opt }, h) => opt.step([null, h] as never)],
  ['step({ w: h })', ({ opt }, h) => opt.step({ w: h } as never)],
  ['setLearningRate(h)', ({ opt }, h) => opt.setLearningRate(h as never)],
  ['setLearningRate(0.2, h)', ({ opt }, h) => opt.setLearningRate(0.2, h as never)],
  ['buffer(h)', ({ opt }, h) => opt.buffer(h as never)],
  ['importState(h)', ({ opt }, h) => opt.importState(h as never)],
  ['importState(bytes, h)', ({ opt }, h) => opt.importState(validBytes, h as never)],
  ['exportState(h)', ({ opt }, h) => opt.exportState(h as never)],
  ['applyState(h)', ({ opt }, h) => opt.applyState(h as never)],
  ['applyState({ groups: h })', ({ opt }, h) => opt.applyState({ groups: h, buffers: new Map() } as never)],
  [
    'applyState({ buffers: Map(w: h) })',
    ({ opt }, h) => {
      const state = decodeState(validBytes);
      return opt.applyState({ ...state, buffers: new Map([['w', h]]) } as never);
    },
  ],
  [
    'applyState({ buffers: Map(w: { data: h }) })',
    ({ opt }, h) => {
      const state = decodeState(validBytes);
      return opt.applyState({ ...state, buffers: new Map([['w', { shape: [2, 2], data: h }]]) } as never);
    },
  ],
  [
    'applyState({ hyperparams: h })',
    ({ opt }, h) => {
      const state = decodeState(validBytes);
      state.groups[0]!.hyperparams = h as never;
      return opt.applyState(state);
    },
  ],
  ['decodeState(h)', (_c, h) => decodeState(h as never)],
  ['decodeState(bytes, h)', (_c, h) => decodeState(validBytes, h as never)],
  ['decodeSafetensors(h)', (_c, h) => decodeSafetensors(h as never)],
  ['encodeState(h)', (_c, h) => encodeState(h as never)],
  ['encodeState(state, h)', (_c, h) => encodeState(decodeState(validBytes), h as never)],
  ['encodeSafetensors(h, {})', (_c, h) => encodeSafetensors(h as never, {})],
  ['encodeSafetensors([], h)', (_c, h) => encodeSafetensors([], h as never)],
  [
    'encodeSafetensors([[n, { data: h }]])',
    (_c, h) => encodeSafetensors([['n', { dtype: 'F32', shape: [4], data: h as never }]], {}),
  ],
];

describe('hostile values at every public entry point', () => {
  it('give only typed AccSGD errors, change nothing, and leave the optimizer as good as a fresh one', () => {
    const kinds = new Set<string>();
    fc.assert(
      fc.property(fc.integer({ min: 0, max: calls.length - 1 }), hostile, (c, { i, make }) => {
        const [label, call] = calls[c]!;
        const subject = makeOptimizer();
        const twin = makeOptimizer();
        const before = fingerprint(subject);
        let threw = false;
        try {
          call(subject, make());
        } catch (error) {
          threw = true;
          if (!(error instanceof AccSGDError)) {
            throw new Error(
              `${label} with hostile value #${i}: untyped ${(error as Error)?.name}: ${(error as Error)?.message}`,
            );
          }
          expect((error as Error).message.length).toBeLessThan(2_000);
          kinds.add(error.name);
          expect(fingerprint(subject), `${label} #${i} changed state`).toBe(before);
        }
        if (!threw) return; // accepted (e.g. buffer('w'), setLearningRate(1e308 is refused, 2 is not))
        const grads = [new Float32Array([1, 1, 1, 1]), new Float64Array([0.5, 0.5, 0.5])];
        subject.opt.step(grads);
        twin.opt.step(grads);
        expect(fingerprint(subject), `${label} #${i}: next step differs from a fresh twin's`).toBe(
          fingerprint(twin),
        );
      }),
      { numRuns: 4_000, seed: 2026_12_04 },
    );
    expect([...kinds].sort()).toEqual(['AccSGDConfigError', 'AccSGDGradientError', 'AccSGDStateError']);
  });

  it('every hostile value at every entry point, exhaustively', () => {
    const failures: string[] = [];
    for (const [label, call] of calls) {
      hostileMakers.forEach((make, i) => {
        const subject = makeOptimizer();
        const before = fingerprint(subject);
        try {
          call(subject, make());
        } catch (error) {
          if (!(error instanceof AccSGDError))
            failures.push(
              `${label} with hostile value #${i}: untyped ${(error as Error)?.name}: ${(error as Error)?.message}`,
            );
          else if (fingerprint(subject) !== before)
            failures.push(`${label} with hostile value #${i} changed state`);
        }
      });
    }
    expect(failures).toEqual([]);
  });
});
