import { describe, expect, it } from 'vitest';
import { ParameterArena } from './arena.js';
import {
  AccSGDConfigError,
  type AccSGDError,
  AccSGDGradientError,
  AccSGDStateError,
  formatValue,
} from './errors.js';
import { AccSGD } from './optimizer.js';
import { decodeSafetensors, encodeSafetensors, type SafetensorsLimits } from './safetensors.js';
import { decodeState, encodeState, type OptimizerState } from './state-file.js';
import { resizableBuffer, twoGroupOptimizer } from './test-support/hostile.js';

/**
 * Hostile input, one describe per reported problem: each input is rejected with a typed AccSGD
 * error whose message says what was wrong, nothing changes, and the next valid call gives what a
 * fresh optimizer gives.
 */

const good = { lr: 0.1, kappa: 1000, xi: 10, smallConst: 0.7, weightDecay: 0 };
const fileGroup = { lr: 0.1, kappa: 1000, xi: 10, small_const: 0.7, weight_decay: 0, params: ['w'], step: 1 };
const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

/** A state file whose header text is given verbatim (the writer would refuse these). */
function fileWithHeader(header: string, body = new Uint8Array(16)): Uint8Array {
  const json = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + json.length + body.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(body, 8 + json.length);
  return out;
}
const meta = (groups: string) =>
  JSON.stringify({ format: 'accsgd-state', format_version: '1', param_groups: groups });

/** A two-parameter optimizer after one step, and a fresh twin to compare against. */
function pair(options?: ConstructorParameters<typeof AccSGD>[2]) {
  const make = () => twoGroupOptimizer(good, options);
  return { subject: make(), twin: make() };
}

type Ctx = ReturnType<typeof pair>['subject'];
const fingerprint = ({ opt, w, b }: Ctx) =>
  JSON.stringify({ w: [...w], b: [...b], state: [...opt.exportState()], groups: opt.paramGroups });
const nextStep = [new Float32Array([1, 1, 1, 1]), new Float64Array([0.5, 0.5, 0.5])];

/** `attempt` throws ErrorClass with `message`, changes nothing, and the next step matches the twin's. */
function expectRejected(
  attempt: (ctx: Ctx) => unknown,
  ErrorClass: new (...args: never[]) => AccSGDError,
  message: string | RegExp,
  options?: ConstructorParameters<typeof AccSGD>[2],
) {
  const { subject, twin } = pair(options);
  const before = fingerprint(subject);
  let thrown: unknown;
  try {
    attempt(subject);
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(ErrorClass);
  if (typeof message === 'string') expect((thrown as Error).message).toContain(message);
  else expect((thrown as Error).message).toMatch(message);
  expect(fingerprint(subject)).toBe(before);
  subject.opt.step(nextStep);
  twin.opt.step(nextStep);
  expect(fingerprint(subject)).toBe(fingerprint(twin));
}

describe('1. deeply nested values in a state file give AccSGDStateError, not RangeError', () => {
  const deep = nested(4_100);
  const tensor = (field: string) =>
    fileWithHeader(
      JSON.stringify({
        __metadata__: JSON.parse(meta(JSON.stringify([fileGroup, { ...fileGroup, params: ['b'], step: 0 }]))),
        'w.momentum_buffer': { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] },
      }).replace(field === 'dtype' ? '"F32"' : field === 'shape' ? '[2,2]' : '[0,16]', deep),
    );
  const group = (field: 'lr' | 'step') =>
    fileWithHeader(
      JSON.stringify({
        __metadata__: JSON.parse(
          meta(
            JSON.stringify([fileGroup, { ...fileGroup, params: ['b'], step: 0 }]).replace(
              field === 'lr' ? '"lr":0.1' : '"step":1',
              `"${field}":${deep}`,
            ),
          ),
        ),
      }),
      new Uint8Array(),
    );
  it.each([
    ['shape', tensor('shape'), 'has shape [[[[…]]]]; expected an array of non-negative integers'],
    ['dtype', tensor('dtype'), 'has dtype [[[[…]]]]; expected "F32" or "F64"'],
    ['data_offsets', tensor('data_offsets'), 'has data_offsets [[[[…]]]]; expected [begin, end]'],
    ['lr', group('lr'), 'param_groups[0]: lr must be a finite number >= 0; got [[[[…]]]]'],
    ['step', group('step'), 'param_groups[0].step is [[[[…]]]]; expected an integer >= 0'],
  ])('%s nested 4,100 deep (%#)', (_field, bytes, message) => {
    expect(bytes.length).toBeLessThan(12_000);
    expect(() => decodeState(bytes)).toThrow(AccSGDStateError);
    expect(() => decodeState(bytes)).toThrow(message);
    expectRejected(({ opt }) => opt.importState(bytes), AccSGDStateError, message);
  });

  it('formatValue is bounded in depth, items and length, and never throws', () => {
    const deepArray: unknown[] = [];
    let cursor = deepArray;
    for (let i = 0; i < 100_000; i++) {
      const next: unknown[] = [];
      cursor.push(next);
      cursor = next;
    }
    expect(formatValue(deepArray)).toBe('[[[[…]]]]');
    expect(formatValue(Array.from({ length: 1_000_000 }, (_, i) => i))).toBe(
      '[0, 1, 2, 3, 4, 5, 6, 7, … 999992 more]',
    );
    expect(formatValue('x'.repeat(1_000_000))).toBe(`"${'x'.repeat(120)}"…`);
    const { proxy, revoke } = Proxy.revocable([], {});
    revoke();
    expect(formatValue(proxy)).toBe('an unreadable value');
    const throwing = new Proxy([1], {
      get() {
        throw new Error('boom');
      },
    });
    expect(formatValue(throwing)).toBe('an unreadable value');
    expect(formatValue(Symbol('s'))).toBe('symbol');
    expect(formatValue(10n)).toBe('10n');
    expect(formatValue(new DataView(new ArrayBuffer(3)))).toBe('DataView(3)');
    expect(formatValue(new BigInt64Array(2))).toBe('BigInt64Array(2)');
  });
});

describe('2. limits must be safe integers >= 0', () => {
  const bytes = new AccSGD([new Float32Array(1)], good).exportState();
  it.each([
    [{ maxTensors: Number.NaN }, 'limits.maxTensors must be a safe integer >= 0; got NaN'],
    [{ maxTensors: 1.5 }, 'limits.maxTensors must be a safe integer >= 0; got 1.5'],
    [
      { maxHeaderBytes: Number.POSITIVE_INFINITY },
      'limits.maxHeaderBytes must be a safe integer >= 0; got Infinity',
    ],
    [{ maxHeaderBytes: -1 }, 'limits.maxHeaderBytes must be a safe integer >= 0; got -1'],
    [{ maxHeaderBytes: '1024' }, 'limits.maxHeaderBytes must be a safe integer >= 0; got "1024"'],
    [{ maxHeaderBytes: 2 ** 53 }, 'limits.maxHeaderBytes must be a safe integer >= 0; got 9007199254740992'],
    [{ maxTensor: 5 }, 'limits.maxTensor is not a safetensors limit'],
    [5, 'limits must be an object { maxHeaderBytes?, maxTensors? }; got 5'],
    [null, 'limits must be an object { maxHeaderBytes?, maxTensors? }; got null'],
  ])('%o', (limits, message) => {
    const bad = limits as SafetensorsLimits;
    for (const attempt of [
      () => decodeState(bytes, bad),
      () => decodeSafetensors(bytes, bad),
      () => encodeSafetensors([], {}, bad),
      () => encodeState({ groups: [], buffers: new Map() }, bad),
    ]) {
      expect(attempt).toThrow(AccSGDConfigError);
      expect(attempt).toThrow(message);
    }
    expectRejected(({ opt }) => opt.importState(bytes, bad), AccSGDConfigError, message);
    expectRejected(({ opt }) => opt.exportState(bad), AccSGDConfigError, message);
  });

  it('valid limits still apply, 0 included', () => {
    const opt = new AccSGD([new Float32Array(1)], good);
    opt.step([new Float32Array([1])]);
    const withBuffer = opt.exportState();
    expect(() => decodeState(withBuffer, { maxTensors: 0 })).toThrow('1 tensors exceed the limit of 0');
    expect(decodeState(withBuffer, { maxTensors: 1 }).buffers.size).toBe(1);
  });
});

describe('3. importState rejects non-finite buffer values unless nonFinite is "allow"', () => {
  const file = (data: Float32Array | Float64Array) =>
    encodeState({
      groups: [
        { hyperparams: good, params: ['w'], step: 1 },
        { hyperparams: { ...good, lr: 0.01 }, params: ['b'], step: 0 },
      ],
      buffers: new Map([['w', { shape: [2, 2], data }]]),
    });
  it.each([
    ['NaN', file(new Float32Array([0, Number.NaN, 0, 0])), 'element 1 is NaN'],
    ['-Infinity', file(new Float32Array([0, 0, Number.NEGATIVE_INFINITY, 0])), 'element 2 is -Infinity'],
    [
      'float64 1e39 into float32',
      file(new Float64Array([1e39, 0, 0, 0])),
      'element 0 is 1e+39, which overflows float32',
    ],
  ])('%s', (_label, bytes, message) => {
    for (const nonFinite of ['error', 'skip-step'] as const) {
      expectRejected(
        ({ opt }) => opt.importState(bytes),
        AccSGDStateError,
        `buffer "w.momentum_buffer": ${message} (non-finite buffers are rejected unless the nonFinite option is 'allow')`,
        { nonFinite },
      );
    }
    const { subject } = pair({ nonFinite: 'allow' });
    subject.opt.importState(bytes);
    expect(
      Number.isFinite(
        subject.opt.buffer('w')![0]! + subject.opt.buffer('w')![1]! + subject.opt.buffer('w')![2]!,
      ),
    ).toBe(false);
  });
});

describe('4. gradients that are neither an array nor a plain object', () => {
  class Grads {
    w = new Float32Array(4);
  }
  it.each([
    ['Map', new Map([['w', new Float32Array(4)]]), 'got Map'],
    ['Set', new Set([new Float32Array(4)]), 'got Set'],
    ['Float32Array', new Float32Array(4), 'got Float32Array'],
    ['Date', new Date(0), 'got Date'],
    ['class instance', new Grads(), 'got Grads'],
    ['number', 5, 'got number'],
    ['string', 'w', 'got string'],
  ])('%s', (_label, grads, got) => {
    expectRejected(
      ({ opt }) => opt.step(grads as never),
      AccSGDGradientError,
      `expected an array of gradients aligned with the parameters or a plain object keyed by parameter name, ${got}`,
    );
  });

  it('a hole in an array is no gradient, as null is; a prototype-free record is a record', () => {
    const { subject, twin } = pair();
    const holey: (Float32Array | null)[] = [];
    holey[0] = new Float32Array([1, 1, 1, 1]);
    holey.length = 2; // index 1 is a hole
    expect(subject.opt.step(holey)).toEqual({ applied: true });
    twin.opt.step([new Float32Array([1, 1, 1, 1]), null]);
    expect(fingerprint(subject)).toBe(fingerprint(twin));
    const record = Object.create(null) as Record<string, Float32Array>;
    record.w = new Float32Array([1, 1, 1, 1]);
    subject.opt.step(record);
    twin.opt.step({ w: new Float32Array([1, 1, 1, 1]) });
    expect(fingerprint(subject)).toBe(fingerprint(twin));
  });
});

describe('5. options and defaults', () => {
  const p = () => new Float32Array(2);
  it.each([
    ['options null', () => new AccSGD([p()], good, null as never), 'options must be an object; got null'],
    [
      'options a string',
      () => new AccSGD([p()], good, 'allow' as never),
      'options must be an object; got "allow"',
    ],
    ['options a number', () => new AccSGD([p()], good, 5 as never), 'options must be an object; got 5'],
    [
      'misspelt option',
      () => new AccSGD([p()], good, { nonfinite: 'allow' } as never),
      'options.nonfinite is not an AccSGD option (expected one of nonFinite, arena, threads); got "allow"',
    ],
    ['defaults null', () => new AccSGD([p()], null as never), 'defaults must be an object; got null'],
    [
      'a getter that throws',
      () =>
        new AccSGD([p()], good, {
          get nonFinite(): 'allow' {
            throw new TypeError('hostile');
          },
        }),
      'options could not be read (hostile)',
    ],
  ])('%s', (_label, construct, message) => {
    expect(construct).toThrow(AccSGDConfigError);
    expect(construct).toThrow(message);
  });
});

describe('6. parameter names and shapes are validated at construction', () => {
  const two = () => [new Float32Array(2), new Float32Array(2)];
  const expected = 'must be a non-empty string other than "__proto__" and "__metadata__"';
  it.each([
    ['a number as a name', { names: [5, 'b'] }, `params[0].names[0] ${expected}; got 5`],
    ['an empty name', { names: ['a', ''] }, `params[0].names[1] ${expected}; got ""`],
    ['"__proto__"', { names: ['__proto__', 'b'] }, `params[0].names[0] ${expected}; got "__proto__"`],
    [
      '"__metadata__"',
      { names: ['a', '__metadata__'] },
      `params[0].names[1] ${expected}; got "__metadata__"`,
    ],
    [
      'too few names',
      { names: ['a'] },
      'params[0].names must be an array of 2 names (one per parameter); got ["a"]',
    ],
    [
      'names not an array',
      { names: 'ab' },
      'params[0].names must be an array with one entry per parameter; got "ab"',
    ],
    [
      'negative dimensions whose product fits',
      { shapes: [[-2, -1], [2]] },
      'params[0].shapes[0] must be an array of integers >= 0 whose product is 2; got [-2, -1]',
    ],
    [
      'a fractional dimension',
      { shapes: [[2], [0.5, 4]] },
      'params[0].shapes[1] must be an array of integers >= 0 whose product is 2; got [0.5, 4]',
    ],
    [
      'a number for a shape',
      { shapes: [2, 2] },
      'params[0].shapes[0] must be an array of integers >= 0 whose product is 2; got 2',
    ],
    ['too many shapes', { shapes: [[2], [2], [2]] }, 'params[0].shapes must be an array of 2 shapes'],
  ])('%s', (_label, extra, message) => {
    const construct = () => new AccSGD([{ params: two(), ...(extra as object) }], good);
    expect(construct).toThrow(AccSGDConfigError);
    expect(construct).toThrow(message);
  });

  it('names with JSON-special and non-ASCII characters survive export and import', () => {
    const names = ['a"b\\c', 'tab\there\u0000', 'ünï/çødé 🚀', '\ud800lone', 'x.momentum_buffer', ' '];
    const make = () => new AccSGD([{ params: names.map(() => new Float32Array(2)), names }], good);
    const opt = make();
    opt.step(names.map(() => new Float32Array([1, -1])));
    const copy = make();
    copy.importState(opt.exportState());
    expect(copy.exportState()).toEqual(opt.exportState());
    expect(copy.paramNames).toEqual(names);
  });
});

describe('7. resizable, growable and detached memory', () => {
  it('rejects parameters over a resizable ArrayBuffer or a growable SharedArrayBuffer', () => {
    const resizable = new Float32Array(resizableBuffer(16, 64));
    const construct = () => new AccSGD([resizable], good);
    expect(construct).toThrow(AccSGDConfigError);
    expect(construct).toThrow(
      'params[0].params[0] is over a resizable ArrayBuffer or growable SharedArrayBuffer',
    );
    const growable = new Float64Array(
      new (SharedArrayBuffer as unknown as new (n: number, o: object) => SharedArrayBuffer)(16, {
        maxByteLength: 64,
      }),
    );
    expect(() => new AccSGD([growable], good)).toThrow(AccSGDConfigError);
    // A fixed-length SharedArrayBuffer is fine.
    expect(() => new AccSGD([new Float32Array(new SharedArrayBuffer(16))], good)).not.toThrow();
  });

  it('a parameter detached after construction fails the step before anything changes', () => {
    const a = new Float32Array([1, 2]);
    const b = new Float32Array([3, 4]);
    const opt = new AccSGD([a, b], good);
    structuredClone(b.buffer, { transfer: [b.buffer] });
    const attempt = () => opt.step([new Float32Array([1, 1]), new Float32Array([1, 1])]);
    expect(attempt).toThrow(AccSGDConfigError);
    expect(attempt).toThrow('parameter "1" now has 0 elements where it had 2');
    expect([...a]).toEqual([1, 2]); // no partial update of the first parameter
    expect(opt.buffer(0)).toBeNull();
    expect(opt.paramGroups[0]!.step).toBe(0);
    // A step without the detached parameter still works, as on a fresh optimizer.
    expect(opt.step([new Float32Array([1, 1]), null])).toEqual({ applied: true });
  });

  it('gradients over resizable buffers are checked as they are at the step', () => {
    const memory = resizableBuffer(16, 64);
    const grad = new Float32Array(memory); // length-tracking
    grad.fill(1);
    memory.resize(8);
    expectRejected(
      ({ opt }) => opt.step([grad, null]),
      AccSGDGradientError,
      'gradient for parameter "w": has 2 elements; the parameter has 4',
    );
    memory.resize(16);
    grad.fill(1);
    const { subject, twin } = pair();
    subject.opt.step([grad, null]);
    twin.opt.step([new Float32Array([1, 1, 1, 1]), null]);
    expect(fingerprint(subject)).toBe(fingerprint(twin));
    const detached = new Float32Array(4);
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    expectRejected(({ opt }) => opt.step([detached, null]), AccSGDGradientError, 'has 0 elements');
  });
});

describe('8. overlapping memory', () => {
  it.each([
    [
      'a subarray of another parameter',
      () => {
        const p = new Float32Array(4);
        return [p, p.subarray(0)];
      },
    ],
    [
      'partly overlapping views',
      () => {
        const memory = new ArrayBuffer(32);
        return [new Float32Array(memory, 0, 4), new Float32Array(memory, 8, 4)];
      },
    ],
    [
      'a float64 view over a float32 one',
      () => {
        const memory = new ArrayBuffer(32);
        return [new Float32Array(memory, 0, 4), new Float64Array(memory, 8, 1)];
      },
    ],
  ])('rejects %s at construction', (_label, params) => {
    const construct = () => new AccSGD(params(), good);
    expect(construct).toThrow(AccSGDConfigError);
    expect(construct).toThrow('params[0].params[1] overlaps the memory of params[0].params[0]');
  });

  it('accepts adjacent views and empty views of one buffer; 20,000 of them quickly', () => {
    const memory = new ArrayBuffer(20_000 * 8);
    const params = Array.from({ length: 20_000 }, (_, i) => new Float32Array(memory, (19_999 - i) * 8, 2));
    const started = performance.now();
    expect(() => new AccSGD(params, good)).not.toThrow();
    expect(performance.now() - started).toBeLessThan(2_000);
    const empty = new Float32Array(memory, 0, 0);
    expect(() => new AccSGD([empty, new Float32Array(memory, 0, 2)], good)).not.toThrow();
  });

  it('rejects a gradient whose memory overlaps a parameter or a momentum buffer', () => {
    expectRejected(
      ({ opt, w }) => opt.step([w, null]),
      AccSGDGradientError,
      'gradient for parameter "w": its memory overlaps parameter "w"; a gradient needs memory of its own',
    );
    expectRejected(
      ({ opt, b }) => opt.step({ w: new Float32Array(b.buffer, 4, 4) }),
      AccSGDGradientError,
      'gradient for parameter "w": its memory overlaps parameter "b"',
    );
    expectRejected(
      ({ opt }) => opt.step([opt.buffer('w'), null]),
      AccSGDGradientError,
      'gradient for parameter "w": its memory overlaps the momentum buffer of parameter "w"',
    );
  });

  it('in an arena, parameters and gradients side by side are fine; a gradient over a buffer is not', () => {
    const arena = new ParameterArena(1024);
    const w = arena.float32(8);
    const g = arena.float32(8).fill(1);
    const opt = new AccSGD([w], good, { arena });
    expect(opt.step([g])).toEqual({ applied: true });
    const buffer = opt.buffer(0)!;
    const overBuffer = new Float32Array(buffer.buffer, buffer.byteOffset + 4, 8);
    expect(() => opt.step([overBuffer])).toThrow(AccSGDGradientError);
  });
});

describe('9. applyState with a malformed hand-built state', () => {
  const valid = (): OptimizerState => ({
    groups: [
      { hyperparams: { ...good }, params: ['w'], step: 1 },
      { hyperparams: { ...good, lr: 0.01 }, params: ['b'], step: 0 },
    ],
    buffers: new Map([['w', { shape: [2, 2], data: new Float32Array(4) }]]),
  });
  const hostileMap = new Proxy(new Map(), {});
  it.each([
    ['null', null, 'the state is null; expected { groups, buffers }'],
    ['no groups', { buffers: new Map() }, 'state.groups is undefined; expected an array of groups'],
    ['groups a string', { ...valid(), groups: 'w' }, 'state.groups is "w"; expected an array of groups'],
    ['buffers a plain object', { ...valid(), buffers: {} }, 'state.buffers is object; expected a Map'],
    ['buffers a Proxy of a Map', { ...valid(), buffers: hostileMap }, 'the state could not be read'],
    [
      'data a number[]',
      { ...valid(), buffers: new Map([['w', { shape: [2, 2], data: [0, 0, 0, 0] }]]) },
      'buffer "w.momentum_buffer" is not a Float32Array or Float64Array; got [0, 0, 0, 0]',
    ],
    [
      'data an Int8Array',
      { ...valid(), buffers: new Map([['w', { shape: [2, 2], data: new Int8Array(4) }]]) },
      'got Int8Array(4)',
    ],
    [
      'a NaN step',
      { ...valid(), groups: [{ ...valid().groups[0], step: Number.NaN }, valid().groups[1]] },
      'group 0 has step NaN; expected an integer >= 0',
    ],
    [
      'missing hyperparameters',
      { ...valid(), groups: [{ params: ['w'], step: 1 }, valid().groups[1]] },
      'group 0.hyperparams is undefined; expected an object',
    ],
    [
      'params not an array',
      { ...valid(), groups: [{ ...valid().groups[0], params: 'w' }, valid().groups[1]] },
      'group 0.params is "w"; expected an array of names',
    ],
    [
      'a buffer of no group',
      { ...valid(), buffers: new Map([['v', { shape: [1], data: new Float32Array(1) }]]) },
      'buffer "v.momentum_buffer" belongs to no parameter group',
    ],
    [
      'a throwing getter',
      {
        get groups(): never {
          throw new Error('hostile getter');
        },
        buffers: new Map(),
      },
      'the state could not be read (hostile getter)',
    ],
  ])('%s', (_label, state, message) => {
    expectRejected(({ opt }) => opt.applyState(state as never), AccSGDStateError, message);
  });
});

describe('10. the writers refuse what the reader would reject', () => {
  const f32 = (n: number) => new Float32Array(n);
  it.each([
    [
      'a tensor named "__metadata__"',
      () => encodeSafetensors([['__metadata__', { dtype: 'F32', shape: [1], data: f32(1) }]], {}),
      'cannot write safetensors file: "__metadata__" is reserved and cannot name a tensor',
    ],
    [
      'a name twice',
      () =>
        encodeSafetensors(
          [
            ['a', { dtype: 'F32', shape: [1], data: f32(1) }],
            ['a', { dtype: 'F32', shape: [1], data: f32(1) }],
          ],
          {},
        ),
      'tensor "a" appears twice',
    ],
    [
      'a negative shape whose product fits',
      () => encodeSafetensors([['a', { dtype: 'F32', shape: [-2, -1], data: f32(2) }]], {}),
      'tensor "a": shape [-2, -1] has dimension 0 = -2; expected an integer >= 0',
    ],
    [
      'a NaN lr',
      () =>
        encodeState({
          groups: [{ hyperparams: { ...good, lr: Number.NaN }, params: ['a'], step: 0 }],
          buffers: new Map(),
        }),
      'cannot write AccSGD state: group 0: lr must be a finite number >= 0; got NaN',
    ],
    [
      'a step of 2^53',
      () =>
        encodeState({ groups: [{ hyperparams: good, params: ['a'], step: 2 ** 53 }], buffers: new Map() }),
      'cannot write AccSGD state: group 0 has step 9007199254740992; expected an integer >= 0',
    ],
    [
      'a name in two groups',
      () =>
        encodeState({
          groups: [
            { hyperparams: good, params: ['a'], step: 0 },
            { hyperparams: good, params: ['a'], step: 0 },
          ],
          buffers: new Map(),
        }),
      'parameter "a" is listed in more than one place',
    ],
    [
      'a buffer of no group',
      () =>
        encodeState({
          groups: [{ hyperparams: good, params: ['a'], step: 0 }],
          buffers: new Map([['z', { shape: [1], data: f32(1) }]]),
        }),
      'buffer "z.momentum_buffer" belongs to no parameter group',
    ],
    [
      'an unknown hyperparameter',
      () =>
        encodeState({
          groups: [{ hyperparams: { ...good, momentum: 0.9 } as never, params: ['a'], step: 0 }],
          buffers: new Map(),
        }),
      'group 0.hyperparams has unknown key "momentum"',
    ],
  ])('%s', (_label, write, message) => {
    expect(write).toThrow(AccSGDStateError);
    expect(write).toThrow(message);
  });

  it('a tensor named "__proto__" is written as a key and read back', () => {
    const bytes = encodeSafetensors(
      [['__proto__', { dtype: 'F32', shape: [1], data: new Float32Array([7]) }]],
      {},
    );
    expect([...decodeSafetensors(bytes).tensors.keys()]).toEqual(['__proto__']);
  });

  it.each([
    [
      '4,000 parameters with 120-character names',
      4_000,
      (i: number) => `${'n'.repeat(112)}${String(i).padStart(8, '0')}`,
    ],
    ['12,000 parameters with short names', 12_000, (i: number) => `p${i}`],
  ])('reads its own export of %s with the default limits', (_label, count, name) => {
    const names = Array.from({ length: count }, (_, i) => name(i));
    const make = () => new AccSGD([{ params: names.map(() => new Float32Array(1)), names }], good);
    const opt = make();
    opt.step(names.map(() => new Float32Array([1])));
    const bytes = opt.exportState();
    const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
    expect(headerLength).toBeGreaterThan(1 << 20); // over the old 1 MiB header limit
    const copy = make();
    copy.importState(bytes);
    // Byte-for-byte (Buffer.equals: toEqual on a megabyte array takes seconds).
    expect(Buffer.from(copy.exportState()).equals(Buffer.from(bytes))).toBe(true);
  });

  it('refuses to write a header over its limit, and importState takes limits', () => {
    const opt = new AccSGD([new Float32Array(2)], good);
    opt.step([new Float32Array([1, 1])]);
    expect(() => opt.exportState({ maxHeaderBytes: 64 })).toThrow(AccSGDStateError);
    expect(() => opt.exportState({ maxHeaderBytes: 64 })).toThrow(
      /cannot write AccSGD state: cannot write safetensors file: the header would be \d+ bytes, over the limit of 64 bytes/,
    );
    expect(() => opt.exportState({ maxTensors: 0 })).toThrow('1 tensors exceed the limit of 0');
    const bytes = opt.exportState();
    expect(() => opt.importState(bytes, { maxHeaderBytes: 64 })).toThrow('exceeds the limit of 64 bytes');
    expect(() => opt.importState(bytes, { maxHeaderBytes: 4096, maxTensors: 1 })).not.toThrow();
  });
});
