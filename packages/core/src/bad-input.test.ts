import { describe, expect, it } from 'vitest';
import { AccSGDConfigError, AccSGDGradientError, AccSGDStateError } from './errors.js';
import { AccSGD } from './optimizer.js';
import { encodeSafetensors } from './safetensors.js';
import { encodeState } from './state-file.js';
import { resizableBuffer } from './test-support/hostile.js';

/**
 * The bad-input catalogue. Each row: what is done, the typed error, the message it must contain,
 * and (checked for every row) that params, buffers, hyperparameters and step counts are unchanged.
 * Add a row to cover a new kind of bad input.
 */

function fixture() {
  const w = new Float32Array([0.5, -1, 2, 0.25]);
  const b = new Float64Array([1, 2, 3]);
  const opt = new AccSGD(
    [
      { params: [w], names: ['w'], shapes: [[2, 2]] },
      { params: [b], names: ['b'], lr: 0.01 },
    ],
    { lr: 0.1 },
  );
  opt.step([new Float32Array([0.1, 0.2, -0.3, 0.4]), null]);
  return { opt, w, b };
}

function fingerprint(opt: AccSGD, w: Float32Array, b: Float64Array) {
  return JSON.stringify({
    w: [...w],
    b: [...b],
    buffers: opt.paramNames.map((n) => opt.buffer(n) && [...opt.buffer(n)!]),
    groups: opt.paramGroups,
  });
}

const good = { lr: 0.1, kappa: 1000, xi: 10, smallConst: 0.7, weightDecay: 0 };
const stateWith = (overrides: Partial<Parameters<typeof encodeState>[0]>) =>
  encodeState({
    groups: [
      { hyperparams: good, params: ['w'], step: 1 },
      { hyperparams: { ...good, lr: 0.01 }, params: ['b'], step: 0 },
    ],
    buffers: new Map([['w', { shape: [2, 2], data: new Float32Array(4) }]]),
    ...overrides,
  });

/** A state file written without the writer's checks, with these `param_groups` (and no buffers). */
const fileGood = { lr: 0.1, kappa: 1000, xi: 10, small_const: 0.7, weight_decay: 0 };
const rawState = (groups: unknown) =>
  encodeSafetensors([], {
    format: 'accsgd-state',
    format_version: '1',
    param_groups: JSON.stringify(groups),
  });

const rawStateText = (groupsJson: string) =>
  encodeSafetensors([], { format: 'accsgd-state', format_version: '1', param_groups: groupsJson });
const deep = `${'['.repeat(4_100)}${']'.repeat(4_100)}`;

type Row = [string, (ctx: ReturnType<typeof fixture>) => unknown, new (...args: never[]) => Error, string];

const catalogue: Row[] = [
  // hyperparameters
  [
    'lr < 0',
    ({ opt }) => opt.setLearningRate(-0.1),
    AccSGDConfigError,
    'lr must be a finite number >= 0; got -0.1',
  ],
  [
    'lr NaN',
    ({ opt }) => opt.setLearningRate(Number.NaN, 0),
    AccSGDConfigError,
    'lr must be a finite number >= 0; got NaN',
  ],
  [
    'lr for a missing group',
    ({ opt }) => opt.setLearningRate(0.1, 2),
    AccSGDConfigError,
    'group must be an integer in [0, 1]; got 2',
  ],
  [
    'lr too large to derive largeLr',
    ({ opt }) => opt.setLearningRate(1e306),
    AccSGDConfigError,
    'lr is too large: lr * kappa / smallConst = Infinity overflows',
  ],
  // gradients
  [
    'too few gradients',
    ({ opt }) => opt.step([null]),
    AccSGDGradientError,
    'expected 2 gradients (one per parameter, null for none), got 1',
  ],
  [
    'gradient of the wrong length',
    ({ opt }) => opt.step([new Float32Array(3), null]),
    AccSGDGradientError,
    'gradient for parameter "w": has 3 elements; the parameter has 4',
  ],
  [
    'gradient of the wrong type',
    ({ opt }) => opt.step([[1, 2, 3, 4] as unknown as Float32Array, null]),
    AccSGDGradientError,
    'gradient for parameter "w": expected a Float32Array or Float64Array, got Array',
  ],
  [
    'gradient for an unknown name',
    ({ opt }) => opt.step({ v: new Float32Array(4) }),
    AccSGDGradientError,
    'gradient for parameter "v": no parameter has this name (parameters: w, b)',
  ],
  [
    'NaN in the second gradient (first one valid)',
    ({ opt }) => opt.step([new Float32Array(4), new Float64Array([0, Number.NaN, 0])]),
    AccSGDGradientError,
    'gradient for parameter "b": element 1 is NaN (non-finite gradients are rejected; see the nonFinite option)',
  ],
  [
    'float64 gradient that overflows the float32 parameter',
    ({ opt }) => opt.step([new Float64Array([0, 1e39, 0, 0]), null]),
    AccSGDGradientError,
    'gradient for parameter "w": element 1 is 1e+39, which overflows float32',
  ],
  [
    'infinite gradient',
    ({ opt }) => opt.step({ w: new Float32Array([0, 0, 0, Number.POSITIVE_INFINITY]) }),
    AccSGDGradientError,
    'element 3 is Infinity',
  ],
  // state files
  [
    'empty file',
    ({ opt }) => opt.importState(new Uint8Array()),
    AccSGDStateError,
    'file is 0 bytes, shorter than the 8-byte header length',
  ],
  [
    'not a state file',
    ({ opt }) => opt.importState(encodeSafetensors([], { format: 'other' })),
    AccSGDStateError,
    'metadata "format" is "other"; expected "accsgd-state"',
  ],
  [
    'unknown version',
    ({ opt }) =>
      opt.importState(
        encodeSafetensors([], { format: 'accsgd-state', format_version: '2', param_groups: '[]' }),
      ),
    AccSGDStateError,
    'metadata "format_version" is "2"; this library reads version 1',
  ],
  [
    'wrong group count',
    ({ opt }) => opt.importState(stateWith({ groups: [{ hyperparams: good, params: ['w', 'b'], step: 1 }] })),
    AccSGDStateError,
    'state has 1 parameter group(s); the optimizer has 2',
  ],
  [
    'wrong names',
    ({ opt }) =>
      opt.importState(
        stateWith({
          groups: [
            { hyperparams: good, params: ['x'], step: 1 },
            { hyperparams: good, params: ['b'], step: 0 },
          ],
          buffers: new Map(),
        }),
      ),
    AccSGDStateError,
    "group 0 of the state has parameters [x]; the optimizer's group 0 has [w] (missing: w) (unknown: x)",
  ],
  [
    'buffer of the wrong shape',
    ({ opt }) =>
      opt.importState(stateWith({ buffers: new Map([['w', { shape: [4], data: new Float32Array(4) }]]) })),
    AccSGDStateError,
    'buffer "w.momentum_buffer" has shape [4]; parameter "w" has shape [2, 2]',
  ],
  [
    'invalid hyperparameters in the file',
    ({ opt }) =>
      opt.importState(
        rawState([
          { ...fileGood, xi: 1e6, params: ['w'], step: 1 },
          { ...fileGood, params: ['b'], step: 0 },
        ]),
      ),
    AccSGDStateError,
    'param_groups[0]: xi is out of range for kappa = 1000 and smallConst = 0.7',
  ],
  // hostile input (see hostile-input.test.ts for more of each kind)
  [
    'state file whose lr is an array nested 4,100 deep',
    ({ opt }) =>
      opt.importState(
        rawStateText(
          JSON.stringify([{ ...fileGood, params: ['w'], step: 1 }]).replace('"lr":0.1', `"lr":${deep}`),
        ),
      ),
    AccSGDStateError,
    'param_groups[0]: lr must be a finite number >= 0; got [[[[…]]]]',
  ],
  [
    'state file whose step is an array nested 4,100 deep',
    ({ opt }) =>
      opt.importState(
        rawStateText(
          JSON.stringify([{ ...fileGood, params: ['w'], step: 0 }]).replace('"step":0', `"step":${deep}`),
        ),
      ),
    AccSGDStateError,
    'param_groups[0].step is [[[[…]]]]; expected an integer >= 0',
  ],
  [
    'import limits of NaN',
    ({ opt }) => opt.importState(stateWith({}), { maxTensors: Number.NaN }),
    AccSGDConfigError,
    'limits.maxTensors must be a safe integer >= 0; got NaN',
  ],
  [
    'import limits of 1.5',
    ({ opt }) => opt.importState(stateWith({}), { maxHeaderBytes: 1.5 }),
    AccSGDConfigError,
    'limits.maxHeaderBytes must be a safe integer >= 0; got 1.5',
  ],
  [
    'NaN in an imported buffer',
    ({ opt }) =>
      opt.importState(
        stateWith({
          buffers: new Map([['w', { shape: [2, 2], data: new Float32Array([0, 0, Number.NaN, 0]) }]]),
        }),
      ),
    AccSGDStateError,
    'buffer "w.momentum_buffer": element 2 is NaN (non-finite buffers are rejected',
  ],
  [
    'float64 buffer that overflows the float32 parameter',
    ({ opt }) =>
      opt.importState(
        stateWith({ buffers: new Map([['w', { shape: [2, 2], data: new Float64Array([0, -1e39, 0, 0]) }]]) }),
      ),
    AccSGDStateError,
    'buffer "w.momentum_buffer": element 1 is -1e+39, which overflows float32',
  ],
  [
    'gradients as a Map',
    ({ opt }) => opt.step(new Map([['w', new Float32Array(4)]]) as never),
    AccSGDGradientError,
    'expected an array of gradients aligned with the parameters or a plain object keyed by parameter name, got Map',
  ],
  ['gradients as a Set', ({ opt }) => opt.step(new Set() as never), AccSGDGradientError, 'got Set'],
  [
    'a gradient that is the parameter itself',
    ({ opt, w }) => opt.step([w, null]),
    AccSGDGradientError,
    'gradient for parameter "w": its memory overlaps parameter "w"',
  ],
  [
    'a gradient that views the momentum buffer',
    ({ opt }) => opt.step([opt.buffer('w'), null]),
    AccSGDGradientError,
    'gradient for parameter "w": its memory overlaps the momentum buffer of parameter "w"',
  ],
  [
    'a detached gradient',
    ({ opt }) => {
      const g = new Float32Array(4);
      structuredClone(g.buffer, { transfer: [g.buffer] });
      return opt.step([g, null]);
    },
    AccSGDGradientError,
    'gradient for parameter "w": has 0 elements; the parameter has 4',
  ],
  [
    'a Proxy of a Float32Array as a gradient',
    ({ opt }) => opt.step([new Proxy(new Float32Array(4), {}), null]),
    AccSGDGradientError,
    'gradient for parameter "w": expected a Float32Array or Float64Array',
  ],
  [
    'applyState with buffers that are not a Map',
    ({ opt }) => opt.applyState({ groups: [], buffers: {} } as never),
    AccSGDStateError,
    'state.buffers is object; expected a Map',
  ],
  [
    'exportState over its header limit',
    ({ opt }) => opt.exportState({ maxHeaderBytes: 16 }),
    AccSGDStateError,
    'over the limit of 16 bytes',
  ],
];

describe('bad input is rejected with a typed error and changes nothing', () => {
  it.each(catalogue)('%s', (_label, action, ErrorClass, message) => {
    const ctx = fixture();
    const before = fingerprint(ctx.opt, ctx.w, ctx.b);
    let thrown: unknown;
    try {
      action(ctx);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ErrorClass);
    expect((thrown as Error).message).toContain(message);
    expect(fingerprint(ctx.opt, ctx.w, ctx.b)).toBe(before);
  });
});

describe('bad construction', () => {
  it.each([
    ['no params', () => new AccSGD([], { lr: 0.1 }), 'params must be a non-empty array'],
    ['missing lr', () => new AccSGD([new Float32Array(1)], {} as { lr: number }), 'lr is required'],
    [
      'typo in a hyperparameter',
      () => new AccSGD([new Float32Array(1)], { lr: 0.1, learningRate: 1 } as { lr: number }),
      'learningRate is not an AccSGD hyperparameter',
    ],
    [
      'the same array twice',
      () => {
        const p = new Float32Array(2);
        return new AccSGD([p, p], { lr: 0.1 });
      },
      'params[0].params[1] appears in more than one place',
    ],
    [
      'a plain array as a parameter',
      () => new AccSGD([{ params: [[1, 2] as unknown as Float32Array] }], { lr: 0.1 }),
      'params[0].params[0] must be a Float32Array or Float64Array',
    ],
    [
      'a shape that does not fit',
      () => new AccSGD([{ params: [new Float32Array(6)], shapes: [[4, 2]] }], { lr: 0.1 }),
      'params[0].shapes[0] must be a shape of 6 elements; got [4, 2]',
    ],
    [
      'duplicate names',
      () =>
        new AccSGD([{ params: [new Float32Array(1), new Float32Array(1)], names: ['a', 'a'] }], { lr: 0.1 }),
      'params[0].names[1] must be a unique name; got "a"',
    ],
    [
      'beta that rounds to 0 (1 - alpha = 0 in float64)',
      () => new AccSGD([new Float32Array(1)], { lr: 0.1, kappa: 1e17, xi: 1, smallConst: 1 }),
      'beta = smallConst^2 * xi / kappa = 1e-17 must be in (0, 1], and 1 - alpha rounds to 0 in float64',
    ],
    [
      'beta > 1 in a group',
      () => new AccSGD([{ params: [new Float32Array(1)], kappa: 1, xi: 5 }], { lr: 0.1 }),
      'xi must be <= kappa / smallConst^2',
    ],
    [
      'unknown nonFinite policy',
      () => new AccSGD([new Float32Array(1)], { lr: 0.1 }, { nonFinite: 'ignore' as 'allow' }),
      'nonFinite must be "error", "skip-step" or "allow"; got "ignore"',
    ],
    // hostile construction (see hostile-input.test.ts)
    [
      'options of null',
      () => new AccSGD([new Float32Array(1)], { lr: 0.1 }, null as never),
      'options must be an object; got null',
    ],
    [
      'options as a string',
      () => new AccSGD([new Float32Array(1)], { lr: 0.1 }, 'skip-step' as never),
      'options must be an object; got "skip-step"',
    ],
    [
      'a misspelt option',
      () => new AccSGD([new Float32Array(1)], { lr: 0.1 }, { nonfinite: 'allow' } as never),
      'options.nonfinite is not an AccSGD option (expected one of nonFinite, arena, threads)',
    ],
    [
      'a number as a name',
      () => new AccSGD([{ params: [new Float32Array(1)], names: [5 as never] }], { lr: 0.1 }),
      'params[0].names[0] must be a non-empty string other than "__proto__" and "__metadata__"; got 5',
    ],
    [
      'the name "__proto__"',
      () => new AccSGD([{ params: [new Float32Array(1)], names: ['__proto__'] }], { lr: 0.1 }),
      'params[0].names[0] must be a non-empty string',
    ],
    [
      'names of the wrong length',
      () => new AccSGD([{ params: [new Float32Array(1), new Float32Array(1)], names: ['a'] }], { lr: 0.1 }),
      'params[0].names must be an array of 2 names (one per parameter)',
    ],
    [
      'negative dimensions whose product is the length',
      () => new AccSGD([{ params: [new Float32Array(2)], shapes: [[-2, -1]] }], { lr: 0.1 }),
      'params[0].shapes[0] must be an array of integers >= 0 whose product is 2; got [-2, -1]',
    ],
    [
      'a fractional dimension',
      () => new AccSGD([{ params: [new Float32Array(2)], shapes: [[0.5, 4]] }], { lr: 0.1 }),
      'params[0].shapes[0] must be an array of integers >= 0 whose product is 2; got [0.5, 4]',
    ],
    [
      'shapes that are not arrays',
      () => new AccSGD([{ params: [new Float32Array(2)], shapes: [2] as never }], { lr: 0.1 }),
      'params[0].shapes[0] must be an array of integers >= 0 whose product is 2; got 2',
    ],
    [
      'a parameter over a resizable ArrayBuffer',
      () => new AccSGD([new Float32Array(resizableBuffer(8, 16))], { lr: 0.1 }),
      'params[0].params[0] is over a resizable ArrayBuffer',
    ],
    [
      'two views of the same memory',
      () => {
        const p = new Float32Array(2);
        return new AccSGD([p, p.subarray(0)], { lr: 0.1 });
      },
      'params[0].params[1] overlaps the memory of params[0].params[0]',
    ],
  ])('%s', (_label, construct, message) => {
    expect(construct).toThrow(AccSGDConfigError);
    expect(construct).toThrow(message);
  });
});

describe('applyState with a hand-built state', () => {
  const good = { lr: 0.1, kappa: 1000, xi: 10, smallConst: 0.7, weightDecay: 0 };
  it.each([
    [
      'buffer data shorter than its shape',
      {
        groups: [
          { hyperparams: good, params: ['w'], step: 1 },
          { hyperparams: good, params: ['b'], step: 0 },
        ],
        buffers: new Map([['w', { shape: [2, 2], data: new Float32Array(3) }]]),
      },
      'buffer "w.momentum_buffer" has 3 values for shape [2, 2]',
    ],
    [
      'invalid hyperparameters',
      {
        groups: [
          { hyperparams: { ...good, lr: -1 }, params: ['w'], step: 1 },
          { hyperparams: good, params: ['b'], step: 0 },
        ],
        buffers: new Map(),
      },
      'group 0: lr must be a finite number >= 0; got -1',
    ],
    [
      'a negative step count',
      {
        groups: [
          { hyperparams: good, params: ['w'], step: -3 },
          { hyperparams: good, params: ['b'], step: 0 },
        ],
        buffers: new Map(),
      },
      'group 0 has step -3; expected an integer >= 0',
    ],
    [
      'a NaN step count',
      {
        groups: [
          { hyperparams: good, params: ['w'], step: Number.NaN },
          { hyperparams: good, params: ['b'], step: 0 },
        ],
        buffers: new Map(),
      },
      'group 0 has step NaN; expected an integer >= 0',
    ],
    ['no groups', { buffers: new Map() }, 'state.groups is undefined; expected an array of groups'],
    [
      'buffers as a plain object',
      { groups: [], buffers: { w: { shape: [2, 2], data: new Float32Array(4) } } },
      'state.buffers is object; expected a Map',
    ],
    [
      'buffer data that is a plain array',
      {
        groups: [
          { hyperparams: good, params: ['w'], step: 1 },
          { hyperparams: good, params: ['b'], step: 0 },
        ],
        buffers: new Map([['w', { shape: [2, 2], data: [0, 0, 0, 0] }]]),
      },
      'buffer "w.momentum_buffer" is not a Float32Array or Float64Array; got [0, 0, 0, 0]',
    ],
    [
      'missing hyperparameters',
      {
        groups: [
          { params: ['w'], step: 1 },
          { hyperparams: good, params: ['b'], step: 0 },
        ],
        buffers: new Map(),
      },
      'group 0.hyperparams is undefined; expected an object',
    ],
  ])('%s is rejected with nothing changed', (_label, state, message) => {
    const ctx = fixture();
    const before = fingerprint(ctx.opt, ctx.w, ctx.b);
    expect(() => ctx.opt.applyState(state as Parameters<AccSGD['applyState']>[0])).toThrow(AccSGDStateError);
    expect(() => ctx.opt.applyState(state as Parameters<AccSGD['applyState']>[0])).toThrow(message);
    expect(fingerprint(ctx.opt, ctx.w, ctx.b)).toBe(before);
  });
});
