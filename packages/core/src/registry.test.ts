import { describe, expect, it } from 'vitest';
import { fusedCoefficients } from './coefficients.js';
import { AccSGDConfigError, AccSGDGradientError, AccSGDStateError } from './errors.js';
import { resolveHyperparams } from './hyperparams.js';
import { firstCrossOverlap, firstRangeOverlap } from './lookup.js';
import { OrderedCalls } from './ordered-calls.js';
import { ParameterRegistry, type RegistryGroup } from './registry.js';
import type { OptimizerState } from './state-file.js';

const h = (lr: number, more: Record<string, number> = {}) => resolveHyperparams({ lr, ...more });

/** Two groups: "0" [2,3] and "1" [4] in group 0 (float32), "2" [1] in group 1 (float64). */
function twoGroups(): ParameterRegistry {
  return new ParameterRegistry([
    { hyperparams: h(0.1), params: [{ shape: [2, 3] }, { length: 4 }] },
    { hyperparams: h(0.2, { kappa: 100 }), precision: 'float64', params: [{ shape: [1], length: 1 }] },
  ]);
}

describe('ParameterRegistry: construction', () => {
  it('names parameters "0", "1", ... over all groups, and records shapes, groups and hyperparameters', () => {
    const r = twoGroups();
    expect(r.size).toBe(3);
    expect(r.groupCount).toBe(2);
    expect(r.paramNames).toEqual(['0', '1', '2']);
    expect([0, 1, 2].map((i) => r.shape(i))).toEqual([[2, 3], [4], [1]]);
    expect([0, 1, 2].map((i) => r.length(i))).toEqual([6, 4, 1]);
    expect([0, 1, 2].map((i) => r.groupOf(i))).toEqual([0, 0, 1]);
    expect(r.members(1)).toEqual([2]);
    expect(r.precision(0)).toBe('float32');
    expect(r.precision(1)).toBe('float64');
    expect(r.paramGroups).toEqual([
      {
        hyperparams: { lr: 0.1, kappa: 1000, xi: 10, smallConst: 0.7, weightDecay: 0 },
        params: ['0', '1'],
        step: 0,
      },
      {
        hyperparams: { lr: 0.2, kappa: 100, xi: 10, smallConst: 0.7, weightDecay: 0 },
        params: ['2'],
        step: 0,
      },
    ]);
    expect([0, 1, 2].map((i) => r.hasBuffer(i))).toEqual([false, false, false]);
    expect(r.indexOf('1')).toBe(1);
    expect(r.indexOf(2)).toBe(2);
    expect(() => r.indexOf('x')).toThrow(
      'param must be an index in [0, 2] or one of the names 0, 1, 2; got "x"',
    );
    expect(() => r.indexOf(3)).toThrow(AccSGDConfigError);
    expect(() => r.step(2)).toThrow('group must be an integer in [0, 1]; got 2');
  });

  it('rejects bad names, bad shapes and shapes of the wrong size, naming the field', () => {
    const make = (params: RegistryGroup['params']) => () =>
      new ParameterRegistry([{ hyperparams: h(0.1), params }]);
    expect(
      make([
        { name: 'a', length: 1 },
        { name: 'a', length: 1 },
      ]),
    ).toThrow('params[0].names[1] must be a unique name; got "a"');
    expect(make([{ name: '', length: 1 }])).toThrow(
      'params[0].names[0] must be a non-empty string other than "__proto__" and "__metadata__"; got ""',
    );
    expect(make([{ name: undefined, length: 1 }])).toThrow('params[0].names[0] must be a non-empty string');
    expect(make([{ name: '__metadata__', length: 1 }])).toThrow(AccSGDConfigError);
    expect(make([{ shape: [2, -1], length: 2 }])).toThrow(
      'params[0].shapes[0] must be an array of integers >= 0 whose product is 2; got [2, -1]',
    );
    expect(make([{ shape: [2, 2], length: 2 }])).toThrow(
      'params[0].shapes[0] must be a shape of 2 elements; got [2, 2]',
    );
    expect(make([{}])).toThrow('params[0].shapes[0] must be an array of integers >= 0; got undefined');
    const custom = () =>
      new ParameterRegistry([{ hyperparams: h(0.1), params: [{ name: 7, length: 1 }] }], {
        field: (g, k, part) => `groups[${g}].${part === 'names' ? 'params' : part}[${k}]`,
      });
    expect(custom).toThrow('groups[0].params[0] must be a non-empty string');
  });

  it('checks the float32 multipliers of float32 groups only (SPEC §1)', () => {
    const group = (precision: 'float32' | 'float64') => () =>
      new ParameterRegistry([{ hyperparams: h(1e38), precision, params: [{ length: 1 }] }]);
    expect(group('float32')).toThrow(AccSGDConfigError);
    expect(group('float32')).toThrow('overflows float32');
    expect(group('float64')).not.toThrow();
  });

  it('rejects overlapping storage ranges of any resource, and accepts adjacent and empty ones', () => {
    const gpu = { label: 'params' };
    const other = { label: 'other' };
    const make = (ranges: [object, number, number][]) => () =>
      new ParameterRegistry([
        {
          hyperparams: h(0.1),
          params: ranges.map(([resource, begin, end]) => ({
            length: (end - begin) / 4,
            storage: { resource, begin, end },
            value: 'a GPUBuffer range',
          })),
        },
      ]);
    expect(
      make([
        [gpu, 0, 16],
        [gpu, 16, 32],
        [other, 0, 16],
        [gpu, 8, 8],
      ]),
    ).not.toThrow();
    expect(
      make([
        [gpu, 16, 32],
        [other, 0, 16],
        [gpu, 0, 20],
      ]),
    ).toThrow(
      'params[0].params[2] overlaps the memory of params[0].params[0] (two views of the same buffer); each parameter needs memory of its own; got "a GPUBuffer range"',
    );
    // 20,000 ranges in reverse order: O(n log n).
    const many = Array.from({ length: 20_000 }, (_, i): [object, number, number] => [
      gpu,
      (19_999 - i) * 8,
      (20_000 - i) * 8,
    ]);
    expect(make(many)).not.toThrow();
  });
});

describe('ParameterRegistry: addParams (parameters discovered lazily)', () => {
  it('adds members after the existing ones, with default names by index, and no buffer', () => {
    const r = twoGroups();
    r.commitStep(r.planStep(['g', null, 'g']));
    const plan = r.planStep([null, 'g', null]);
    expect(r.addParams(0, [{ name: 'w', shape: [2] }, { length: 3 }])).toEqual([3, 4]);
    expect(r.paramNames).toEqual(['0', '1', '2', 'w', '4']);
    expect(r.members(0)).toEqual([0, 1, 3, 4]);
    expect([3, 4].map((i) => [r.shape(i), r.length(i), r.groupOf(i), r.hasBuffer(i)])).toEqual([
      [[2], 2, 0, false],
      [[3], 3, 0, false],
    ]);
    expect(r.indexOf('w')).toBe(3);
    // A plan made before stays valid: existing indices do not change.
    r.commitStep(plan);
    expect(r.paramGroups.map((g) => [g.params, g.step])).toEqual([
      [['0', '1', 'w', '4'], 2],
      [['2'], 1],
    ]);
    // The new members take part in steps, snapshots and imports.
    r.commitStep(r.planStep({ w: 'g' }));
    expect(r.hasBuffer(3)).toBe(true);
    const state = r.snapshot((i) => new Float32Array(r.length(i)));
    expect([...state.buffers.keys()]).toEqual(['0', '1', '2', 'w']);
    const plan2 = r.planImport(state);
    expect(plan2.buffers.map((b) => b?.length ?? null)).toEqual([6, 4, 1, 2, null]);
    expect(() =>
      r.planImport({ ...state, buffers: new Map([['w', { shape: [3], data: new Float32Array(3) }]]) }),
    ).toThrow(AccSGDStateError);
    expect(r.addParams(1, [])).toEqual([]);
  });

  it('validates as the constructor does, all or nothing', () => {
    const r = twoGroups();
    const unchanged = () => {
      expect(r.size).toBe(3);
      expect(r.members(0)).toEqual([0, 1]);
      expect(() => r.indexOf('x')).toThrow(AccSGDConfigError);
    };
    // Each batch's first parameter is valid: nothing of it may be added.
    expect(() =>
      r.addParams(0, [
        { name: 'x', shape: [1] },
        { name: '1', shape: [1] },
      ]),
    ).toThrow('params[0].names[3]');
    unchanged();
    expect(() =>
      r.addParams(0, [
        { name: 'x', shape: [1] },
        { name: 'x', shape: [1] },
      ]),
    ).toThrow(/unique name/);
    unchanged();
    expect(() =>
      r.addParams(1, [
        { name: 'x', shape: [1] },
        { name: '__proto__', shape: [1] },
      ]),
    ).toThrow('params[1].names[2]');
    unchanged();
    expect(() =>
      r.addParams(0, [
        { name: 'x', shape: [1] },
        { name: 'y', shape: [-1] },
      ]),
    ).toThrow('params[0].shapes[3]');
    unchanged();
    expect(() => r.addParams(0, [{ name: 'x', shape: [2, 2], length: 3 }])).toThrow(/a shape of 3 elements/);
    unchanged();
    expect(() => r.addParams(2, [{ name: 'x', shape: [1] }])).toThrow(AccSGDConfigError);
    expect(() => r.addParams(-1, [{ name: 'x', shape: [1] }])).toThrow(AccSGDConfigError);
    unchanged();
  });

  it('rejects storage that overlaps an existing parameter or another new one, adding nothing', () => {
    const memory = new ArrayBuffer(64);
    const range = (begin: number, end: number) => ({ resource: memory, begin, end });
    const r = new ParameterRegistry([
      { hyperparams: h(0.1), params: [{ name: 'a', length: 4, storage: range(0, 16) }] },
    ]);
    expect(() =>
      r.addParams(0, [
        { name: 'b', length: 4, storage: range(16, 32) },
        { name: 'c', length: 4, storage: range(12, 28), value: 'view c' },
      ]),
    ).toThrow('params[0].params[2]');
    expect(r.size).toBe(1);
    // The failed batch left no ranges behind: b's range is free.
    expect(r.addParams(0, [{ name: 'b', length: 4, storage: range(16, 32) }])).toEqual([1]);
    expect(() => r.addParams(0, [{ name: 'd', length: 2, storage: range(28, 36) }])).toThrow(
      /overlaps the memory of params\[0\]\.params\[1\]/,
    );
    expect(r.addParams(0, [{ name: 'd', length: 2, storage: range(32, 40) }])).toEqual([2]);
  });

  it("names fields through the adapter's option", () => {
    const r = new ParameterRegistry([{ hyperparams: h(0.1), params: [] }], {
      field: (g, k, part) => `groups[${g}].${part === 'params' ? 'variables' : part}[${k}]`,
    });
    expect(r.addParams(0, [{ name: 'a', shape: [2] }])).toEqual([0]);
    expect(() => r.addParams(0, [{ name: 'a', shape: [2] }])).toThrow('groups[0].names[1]');
  });
});

describe('ParameterRegistry: shapes not known yet (shape: null)', () => {
  const buffer = (shape: number[]) => ({ shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });

  it('takes the shape from setShape before a first step, and refuses a step without it', () => {
    const r = new ParameterRegistry([
      {
        hyperparams: h(0.1),
        params: [
          { name: 'w', shape: null },
          { name: 'v', shape: [2] },
        ],
      },
    ]);
    expect([r.hasShape(0), r.hasShape(1), r.shape(0), r.length(0)]).toEqual([false, true, [], Number.NaN]);
    const plan = r.planStep({ w: 'g' });
    expect(() => r.commitStep(plan)).toThrow(/parameter "w" has no shape yet/);
    expect(r.hasBuffer(0)).toBe(false);
    expect(r.step(0)).toBe(0);
    r.setShape(0, [3, 1]);
    r.commitStep(plan);
    expect([r.shape(0), r.length(0), r.hasBuffer(0)]).toEqual([[3, 1], 3, true]);
    // A buffer fixes the shape.
    r.setShape(0, [3, 1]);
    expect(() => r.setShape(0, [3])).toThrow(AccSGDStateError);
    expect(() => r.setShape(1, [-1])).toThrow(AccSGDConfigError);
    r.setShape(1, [1, 2]); // no buffer yet: a re-created parameter may change its shape
    expect(r.shape(1)).toEqual([1, 2]);
    expect(r.snapshot((i) => new Float32Array(r.length(i))).buffers.get('w')!.shape).toEqual([3, 1]);
    // A shape of null with a length is no shape.
    expect(
      () => new ParameterRegistry([{ hyperparams: h(0.1), params: [{ shape: null, length: 2 }] }]),
    ).toThrow('params[0].shapes[0]');
  });

  it("imports a buffer of any shape for it, and the buffer's shape becomes its shape", () => {
    const r = new ParameterRegistry([
      {
        hyperparams: h(0.1),
        params: [
          { name: 'w', shape: null },
          { name: 'v', shape: null },
        ],
      },
    ]);
    const state: OptimizerState = {
      groups: [{ hyperparams: h(0.3), params: ['w', 'v'], step: 4 }],
      buffers: new Map([['w', buffer([2, 2])]]),
    };
    const plan = r.planImport(state);
    expect(plan.bufferShapes).toEqual([[2, 2], null]);
    expect(r.hasShape(0)).toBe(false);
    r.commitImport(plan);
    expect([r.shape(0), r.hasBuffer(0), r.hasShape(1), r.step(0)]).toEqual([[2, 2], true, false, 4]);
    // Now known: a buffer of another shape is refused.
    expect(() => r.planImport({ ...state, buffers: new Map([['w', buffer([4])]]) })).toThrow(
      AccSGDStateError,
    );
  });

  it('checks buffers against the shapes the adapter gives for an import, null for any', () => {
    const r = new ParameterRegistry([
      {
        hyperparams: h(0.1),
        params: [
          { name: 'w', shape: [2] },
          { name: 'v', shape: [2] },
        ],
      },
    ]);
    const state: OptimizerState = {
      groups: [{ hyperparams: h(0.1), params: ['w', 'v'], step: 1 }],
      buffers: new Map([
        ['w', buffer([3])],
        ['v', buffer([5])],
      ]),
    };
    expect(() => r.planImport(state)).toThrow(/parameter "w" has shape \[2\]/);
    expect(() => r.planImport(state, { shapes: (i) => (i === 0 ? [3] : [2]) })).toThrow(
      /parameter "v" has shape \[2\]/,
    );
    const plan = r.planImport(state, { shapes: (i) => (i === 0 ? [3] : null) });
    r.commitImport(plan);
    expect([r.shape(0), r.shape(1)]).toEqual([[3], [5]]);
  });

  it('restore takes a state the adapter checked itself: steps, hyperparameters and buffer shapes, all or nothing', () => {
    const r = new ParameterRegistry([
      {
        hyperparams: h(0.1),
        params: [
          { name: 'w', shape: null },
          { name: 'v', shape: [2] },
        ],
      },
    ]);
    expect(r.find('v')).toBe(1);
    expect(r.find('x')).toBeUndefined();
    const before = JSON.stringify(r.paramGroups);
    for (const [groups, shapes, message] of [
      [[{ hyperparams: h(0.2), step: 1 }], [null], /expected 1 group\(s\) and 2 buffer shape\(s\)/],
      [[{ hyperparams: h(0.2), step: 1.5 }], [null, null], /group 0: step must be an integer >= 0/],
      [[{ hyperparams: { ...h(0.2), lr: -1 }, step: 1 }], [null, null], /^group 0: lr/],
      [[{ hyperparams: h(0.2), step: 1 }], [[-3], null], /buffer "w": shape \[-3\] is not a shape/],
    ] as const) {
      expect(() => r.restore(groups as never, shapes as never)).toThrow(AccSGDStateError);
      expect(() => r.restore(groups as never, shapes as never)).toThrow(message);
      expect(JSON.stringify(r.paramGroups)).toBe(before);
      expect([r.hasBuffer(0), r.hasBuffer(1), r.hasShape(0)]).toEqual([false, false, false]);
    }
    r.restore([{ hyperparams: h(0.2), step: 5 }], [[3], null]);
    expect(r.shape(1)).toEqual([2]);
    expect([r.hasBuffer(0), r.hasBuffer(1), r.shape(0), r.step(0), r.hyperparams(0).lr]).toEqual([
      true,
      false,
      [3],
      5,
      0.2,
    ]);
    r.restore([{ hyperparams: h(0.2), step: 5 }], [[3], [4, 1]]); // checked by the adapter: it becomes the shape
    expect([r.shape(1), r.hasBuffer(1)]).toEqual([[4, 1], true]);
  });

  it('clearBuffers forgets every buffer and keeps hyperparameters and steps', () => {
    const r = twoGroups();
    const stale = r.planStep(['g', 'g', 'g']);
    r.commitStep(stale);
    r.setLearningRate(0.5, 1);
    r.clearBuffers();
    expect([0, 1, 2].map((i) => r.hasBuffer(i))).toEqual([false, false, false]);
    expect(r.paramGroups.map((g) => [g.step, g.hyperparams.lr])).toEqual([
      [1, 0.1],
      [1, 0.5],
    ]);
    expect(r.snapshot(() => new Float32Array(0)).buffers.size).toBe(0);
  });
});

describe('overlap helpers', () => {
  it('firstRangeOverlap and firstCrossOverlap report index pairs', () => {
    const a = {};
    const b = {};
    expect(
      firstRangeOverlap([
        { resource: a, begin: 0, end: 8 },
        { resource: b, begin: 0, end: 8 },
        { resource: a, begin: 4, end: 12 },
      ]),
    ).toEqual([0, 2]);
    const probes = [
      { resource: b, begin: 0, end: 4 },
      { resource: a, begin: 0, end: 4 },
      { resource: a, begin: 2, end: 6 },
    ];
    expect(firstCrossOverlap(probes, [{ resource: a, begin: 4, end: 8 }])).toEqual([2, 0]);
    expect(firstCrossOverlap(probes, [{ resource: a, begin: 6, end: 8 }])).toBeUndefined();
    expect(firstCrossOverlap([], [{ resource: a, begin: 0, end: 8 }])).toBeUndefined();
  });
});

describe('ParameterRegistry: hyperparameters', () => {
  it('setLearningRate changes one group or all, all or nothing', () => {
    const r = twoGroups();
    r.setLearningRate(0.5, 1);
    expect(r.hyperparams(1).lr).toBe(0.5);
    expect(r.hyperparams(0).lr).toBe(0.1);
    r.setLearningRate(0.3);
    expect([r.hyperparams(0).lr, r.hyperparams(1).lr]).toEqual([0.3, 0.3]);
    // 1e38 is valid in float64 (group 1) but overflows group 0's float32 multipliers: nothing changes.
    expect(() => r.setLearningRate(1e38)).toThrow(AccSGDConfigError);
    expect([r.hyperparams(0).lr, r.hyperparams(1).lr]).toEqual([0.3, 0.3]);
    expect(() => r.setLearningRate(0.1, 2)).toThrow('group must be an integer in [0, 1]; got 2');
    expect(() => r.setLearningRate(-1, 0)).toThrow('lr must be a finite number >= 0; got -1');
  });

  it('setHyperparams rejects unknown keys and keeps the rest', () => {
    const r = twoGroups();
    r.setHyperparams({ kappa: 500, weightDecay: 0.01 }, 0);
    expect(r.hyperparams(0)).toEqual({ lr: 0.1, kappa: 500, xi: 10, smallConst: 0.7, weightDecay: 0.01 });
    expect(() => r.setHyperparams({ learningRate: 1 } as never)).toThrow(
      'learningRate is not an AccSGD hyperparameter',
    );
    expect(r.hyperparams(1).kappa).toBe(100);
  });
});

describe('ParameterRegistry: steps', () => {
  it('plans work from an array or an object, skipping null and undefined, and changes nothing', () => {
    const r = twoGroups();
    const plan = r.planStep(['g0', null, 'g2']);
    expect(plan.work).toEqual([
      { index: 0, name: '0', group: 0, grad: 'g0', first: true },
      { index: 2, name: '2', group: 1, grad: 'g2', first: true },
    ]);
    expect(plan.coefficients).toEqual([fusedCoefficients(h(0.1)), fusedCoefficients(h(0.2, { kappa: 100 }))]);
    expect(r.planStep({ 1: 'g1', 2: undefined }).work).toEqual([
      { index: 1, name: '1', group: 0, grad: 'g1', first: true },
    ]);
    expect([r.step(0), r.step(1), r.hasBuffer(0)]).toEqual([0, 0, false]);
  });

  it('plans an object in key order whatever order its keys take, and names an unknown key after known ones', () => {
    // Five parameters, named out of alphabetical order, so that key order, parameter order and
    // the guess of "the parameter after the last one found" each differ somewhere.
    const names = ['e', 'b', 'd', 'a', 'c'];
    const r = new ParameterRegistry([
      { hyperparams: h(0.1), params: names.slice(0, 3).map((name) => ({ name, length: 1 })) },
      { hyperparams: h(0.2), params: names.slice(3).map((name) => ({ name, length: 1 })) },
    ]);
    const indices = (grads: Record<string, string | null>) => r.planStep(grads).work.map((w) => w.index);
    expect(indices({ e: 'g', b: 'g', d: 'g', a: 'g', c: 'g' })).toEqual([0, 1, 2, 3, 4]); // parameter order
    expect(indices({ c: 'g', a: 'g', d: 'g', b: 'g', e: 'g' })).toEqual([4, 3, 2, 1, 0]); // reversed
    expect(indices({ b: 'g', a: 'g', c: 'g', e: 'g' })).toEqual([1, 3, 4, 0]); // gaps, and back to the start
    expect(indices({ e: 'g', b: null, d: 'g', c: 'g' })).toEqual([0, 2, 4]); // null: no gradient
    expect(r.planStep({ d: 'gd', a: 'ga' }).work).toEqual([
      { index: 2, name: 'd', group: 0, grad: 'gd', first: true },
      { index: 3, name: 'a', group: 1, grad: 'ga', first: true },
    ]);
    expect(() => r.planStep({ e: 'g', b: 'g', x: 'g', d: 'g' })).toThrow(
      'gradient for parameter "x": no parameter has this name (parameters: e, b, d, a, c)',
    );
    // The last parameter found is the last one: the next guess is past the end.
    expect(() => r.planStep({ c: 'g', y: 'g' })).toThrow(
      'gradient for parameter "y": no parameter has this name',
    );
  });

  it('commit marks buffers present and counts a step for each touched group only', () => {
    const r = twoGroups();
    r.commitStep(r.planStep(['g', null, null]));
    expect([r.step(0), r.step(1)]).toEqual([1, 0]);
    expect([0, 1, 2].map((i) => r.hasBuffer(i))).toEqual([true, false, false]);
    const second = r.planStep(['g', 'g', 'g']);
    expect(second.work.map((w) => w.first)).toEqual([false, true, true]);
    r.commitStep(second);
    expect([r.step(0), r.step(1)]).toEqual([2, 1]);
    r.commitStep(r.planStep([null, null, null])); // no gradient at all: no group counts a step
    expect([r.step(0), r.step(1)]).toEqual([2, 1]);
  });

  it('refuses a stale plan: one made before another step or import took effect', () => {
    const r = twoGroups();
    const early = r.planStep(['g', null, null]);
    r.commitStep(r.planStep([null, 'g', null]));
    expect(() => r.commitStep(early)).toThrow(AccSGDStateError);
    expect([r.step(0), r.hasBuffer(0)]).toEqual([1, false]);
  });

  it('rejects a bad container with AccSGDGradientError', () => {
    const r = twoGroups();
    expect(() => r.planStep(['g'])).toThrow('expected 3 gradients (one per parameter, null for none), got 1');
    expect(() => r.planStep({ w: 'g' })).toThrow(
      'gradient for parameter "w": no parameter has this name (parameters: 0, 1, 2)',
    );
    expect(() => r.planStep(new Map() as never)).toThrow(
      'expected an array of gradients aligned with the parameters or a plain object keyed by parameter name, got Map',
    );
    const hostile = {
      get 0() {
        throw new Error('boom');
      },
    };
    expect(() => r.planStep(hostile)).toThrow(AccSGDGradientError);
    expect(() => r.planStep(hostile)).toThrow('the gradients could not be read (boom)');
  });
});

describe('ParameterRegistry: state', () => {
  const data = (n: number, v = 1) => new Float32Array(n).fill(v);

  it('snapshot lists groups, steps and the buffers that exist', () => {
    const r = twoGroups();
    r.commitStep(r.planStep([null, 'g', null]));
    const read: number[] = [];
    const state = r.snapshot((i) => {
      read.push(i);
      return data(r.length(i), i);
    });
    expect(read).toEqual([1]);
    expect(state.groups).toEqual([
      { hyperparams: h(0.1), params: ['0', '1'], step: 1 },
      { hyperparams: h(0.2, { kappa: 100 }), params: ['2'], step: 0 },
    ]);
    expect([...state.buffers]).toEqual([['1', { shape: [4], data: data(4, 1) }]]);
  });

  it('planImport checks the state and changes nothing; commitImport applies it', () => {
    const r = twoGroups();
    r.commitStep(r.planStep(['g', 'g', 'g']));
    const state: OptimizerState = {
      groups: [
        { hyperparams: h(0.05), params: ['1', '0'], step: 7 },
        { hyperparams: h(0.2), params: ['2'], step: 3 },
      ],
      buffers: new Map([['1', { shape: [4], data: data(4) }]]),
    };
    const plan = r.planImport(state);
    expect(plan.buffers).toEqual([null, data(4), null]);
    expect(plan.groups).toEqual([
      { hyperparams: h(0.05), step: 7 },
      { hyperparams: h(0.2), step: 3 },
    ]);
    expect(plan.savedNames).toEqual(['0', '1', '2']);
    expect(r.paramGroups.map((g) => g.step)).toEqual([1, 1]);
    r.commitImport(plan);
    expect(r.paramGroups.map((g) => [g.hyperparams.lr, g.step])).toEqual([
      [0.05, 7],
      [0.2, 3],
    ]);
    expect([0, 1, 2].map((i) => r.hasBuffer(i))).toEqual([false, true, false]);
  });

  it('rejects a state that does not describe the parameters, with AccSGDStateError', () => {
    const r = twoGroups();
    const groups = r.paramGroups;
    const state = (over: Partial<OptimizerState>): OptimizerState => ({
      groups,
      buffers: new Map(),
      ...over,
    });
    expect(() => r.planImport(state({ groups: groups.slice(0, 1) }))).toThrow(
      'state has 1 parameter group(s); the optimizer has 2',
    );
    expect(() =>
      r.planImport(state({ groups: [{ ...groups[0]!, params: ['0', 'x'] }, groups[1]!] })),
    ).toThrow(
      "group 0 of the state has parameters [0, x]; the optimizer's group 0 has [0, 1] (missing: 1) (unknown: x)",
    );
    expect(() => r.planImport(state({ buffers: new Map([['0', { shape: [6], data: data(6) }]]) }))).toThrow(
      'buffer "0.momentum_buffer" has shape [6]; parameter "0" has shape [2, 3]',
    );
    // lr = 1e38 is a valid file, but group 0 is float32 (SPEC §1).
    expect(() =>
      r.planImport(state({ groups: [{ ...groups[0]!, hyperparams: h(1e38) }, groups[1]!] })),
    ).toThrow(/^group 0: lr .*overflows float32/);
    expect(() => r.planImport(null as never)).toThrow(AccSGDStateError);
  });

  describe('the renamed fallback (tfjs-layers appends _<n>)', () => {
    const named = (names: string[], shapes: number[][]) =>
      new ParameterRegistry([
        { hyperparams: h(0.1), params: names.map((name, i) => ({ name, shape: shapes[i] })) },
      ]);
    const saved = (names: string[], buffers: [string, number[]][]): OptimizerState => ({
      groups: [{ hyperparams: h(0.1), params: names, step: 2 }],
      buffers: new Map(
        buffers.map(([n, shape]) => [
          n,
          {
            shape,
            data: data(
              shape.reduce((a, b) => a * b, 1),
              n.length,
            ),
          },
        ]),
      ),
    });

    it('matches exact names first, then the base name with the same shape, lowest suffix first, in saved order', () => {
      const r = named(['dense/kernel_2', 'dense/kernel_1', 'dense/bias_1', 'out'], [[2], [2], [3], [1]]);
      const state = saved(
        ['out', 'dense/kernel', 'dense/bias', 'dense/kernel_5'],
        [
          ['dense/kernel', [2]],
          ['dense/bias', [3]],
          ['dense/kernel_5', [2]],
        ],
      );
      expect(() => r.planImport(state)).toThrow(AccSGDStateError);
      const plan = r.planImport(state, { renamed: true });
      expect(plan.savedNames).toEqual(['dense/kernel_5', 'dense/kernel', 'dense/bias', 'out']);
      expect(plan.buffers.map((b) => b?.[0] ?? null)).toEqual([14, 12, 10, null]);
    });

    it('needs the same shape when the saved name has a buffer, and takes a bufferless name on its name alone', () => {
      const r = named(['k_1', 'b_1'], [[2], [5]]);
      expect(() => r.planImport(saved(['k', 'b'], [['k', [3]]]), { renamed: true })).toThrow(
        /missing: k_1.*unknown: k/,
      );
      const plan = r.planImport(saved(['k', 'b'], [['k', [2]]]), { renamed: true });
      expect(plan.savedNames).toEqual(['k', 'b']);
      expect(plan.buffers.map((b) => b !== null)).toEqual([true, false]);
    });

    it('matches 20,000 renamed parameters, and rejects 80,000 saved names against 20,000, without quadratic work', () => {
      const n = 20_000;
      const names = Array.from({ length: n }, (_, i) => `layer/kernel_${i + 1}`);
      const r = named(
        names,
        names.map(() => [2]),
      );
      // All saved under the same base name, half with a shape that matches nothing.
      const good = Array.from({ length: n }, (_, i) => `layer/kernel_${n + i + 1}`);
      const plan = r.planImport(
        saved(
          good,
          good.map((g) => [g, [2]]),
        ),
        { renamed: true },
      );
      expect(plan.savedNames[0]).toBe(`layer/kernel_${n + 1}`);
      expect(plan.savedNames[n - 1]).toBe(`layer/kernel_${2 * n}`);
      const many = Array.from({ length: 4 * n }, (_, i) => `layer/kernel_${n + i + 1}`);
      expect(() =>
        r.planImport(
          saved(
            many,
            many.map((g, i) => [g, i < 3 * n ? [3] : [2]]),
          ),
          { renamed: true },
        ),
      ).toThrow(/unknown: layer\/kernel_20001/);
    });
  });
});

describe('OrderedCalls', () => {
  const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 1));

  it('runs calls issued without awaiting one at a time, in call order', async () => {
    const calls = new OrderedCalls();
    const log: string[] = [];
    const slow = (label: string, ticks: number) => async () => {
      log.push(`${label} start`);
      for (let i = 0; i < ticks; i++) await tick();
      log.push(`${label} end`);
      return label;
    };
    const results = [
      calls.run(slow('step 1', 3)),
      calls.run(() => {
        log.push('setLearningRate');
        return 'lr';
      }),
      calls.run(slow('step 2', 1)),
      calls.run(() => `export after ${log.length} entries`),
    ];
    expect(calls.pending).toBe(4);
    expect(await Promise.all(results)).toEqual(['step 1', 'lr', 'step 2', 'export after 5 entries']);
    expect(log).toEqual(['step 1 start', 'step 1 end', 'setLearningRate', 'step 2 start', 'step 2 end']);
    expect(calls.pending).toBe(0);
  });

  it('a failing call rejects only itself', async () => {
    const calls = new OrderedCalls();
    const first = calls.run(async () => {
      await tick();
      throw new AccSGDGradientError('w', 'bad');
    });
    const second = calls.run(() => 2);
    await expect(first).rejects.toThrow('gradient for parameter "w": bad');
    await expect(second).resolves.toBe(2);
  });

  it('now() runs a synchronous call only when nothing is pending', async () => {
    const calls = new OrderedCalls();
    expect(calls.now('setLearningRate', () => 1)).toBe(1);
    const pending = calls.run(tick);
    let ran = false;
    expect(() =>
      calls.now('setLearningRate', () => {
        ran = true;
      }),
    ).toThrow(
      'setLearningRate() was called while 1 earlier asynchronous call(s) are pending; expected them to be awaited first',
    );
    expect(ran).toBe(false);
    await pending;
    expect(calls.now('setLearningRate', () => 2)).toBe(2); // right after the await, nothing is pending
    calls.run(tick);
    await calls.idle();
    expect(calls.pending).toBe(0);
  });

  it('drain() completes prepared calls synchronously in call order, even one mid read-back', async () => {
    const calls = new OrderedCalls();
    const log: string[] = [];
    let released = 0;
    const call = (label: string, sync = true) => ({
      prepare: async () => {
        log.push(`${label} prepare`);
        await tick();
        return `${label} async`;
      },
      prepareSync: sync ? () => `${label} sync` : undefined,
      commit: (prepared: string) => {
        log.push(`${label} commit ${prepared}`);
        if (label === 'bad') throw new AccSGDStateError('bad commit');
        return label;
      },
      release: () => {
        released++;
      },
    });
    const a = calls.runPrepared(call('a'));
    const bad = calls.runPrepared(call('bad'));
    const b = calls.runPrepared(call('b'));
    await Promise.resolve();
    await Promise.resolve(); // a's read-back is under way
    expect(log).toEqual(['a prepare']);
    expect(calls.drain()).toBe(true);
    expect(calls.pending).toBe(0);
    expect(log).toEqual(['a prepare', 'a commit a sync', 'bad commit bad sync', 'b commit b sync']);
    expect(released).toBe(3);
    await expect(a).resolves.toBe('a');
    await expect(bad).rejects.toThrow('bad commit');
    await expect(b).resolves.toBe('b');
    await calls.idle();
    expect(log).toHaveLength(4); // a's read-back finished, and was ignored
    expect(calls.drain()).toBe(true); // nothing pending
  });

  it('drain() refuses, running nothing, where a pending call cannot complete synchronously', async () => {
    const calls = new OrderedCalls();
    let canSync = false;
    const committed: string[] = [];
    const prepared = calls.runPrepared({
      prepare: async () => 1,
      prepareSync: () => 1,
      canPrepareSync: () => canSync,
      commit: () => committed.push('prepared'),
    });
    expect(calls.drain()).toBe(false);
    canSync = true;
    const plain = calls.run(() => committed.push('plain'));
    expect(calls.drain()).toBe(false); // a run() call has no synchronous form
    expect(committed).toEqual([]);
    expect(calls.pending).toBe(2);
    await Promise.all([prepared, plain]);
    expect(committed).toEqual(['prepared', 'plain']);
    const noSync = calls.runPrepared({ prepare: async () => 1, commit: () => 'x' });
    expect(calls.drain()).toBe(false);
    await expect(noSync).resolves.toBe('x');
  });

  it('cancel() rejects pending prepared calls without committing them, and releases them', async () => {
    const calls = new OrderedCalls();
    let released = 0;
    const commits: number[] = [];
    const make = (n: number) =>
      calls.runPrepared({
        prepare: async () => {
          await tick();
          return n;
        },
        commit: (v) => commits.push(v),
        release: () => {
          released++;
        },
      });
    const first = make(1);
    const second = make(2);
    calls.cancel(new AccSGDStateError('disposed'));
    expect(calls.pending).toBe(0);
    await expect(first).rejects.toThrow('disposed');
    await expect(second).rejects.toThrow('disposed');
    await calls.idle();
    expect(commits).toEqual([]);
    expect(released).toBe(2);
    await expect(make(3)).resolves.toBe(1); // later calls run as usual
  });

  it('a prepared call whose read-back fails rejects only itself, and is released', async () => {
    const calls = new OrderedCalls();
    let released = 0;
    const failing = calls.runPrepared({
      prepare: async () => {
        throw new Error('lost device');
      },
      commit: () => 'never',
      release: () => {
        released++;
      },
    });
    const next = calls.run(() => 'next');
    await expect(failing).rejects.toThrow('lost device');
    await expect(next).resolves.toBe('next');
    expect(released).toBe(1);
  });

  it('keeps a registry consistent: a queued export is a snapshot between steps', async () => {
    const r = twoGroups();
    const calls = new OrderedCalls();
    const step = (grads: (string | null)[]) =>
      calls.run(async () => {
        const plan = r.planStep(grads);
        await tick(); // the kernels
        r.commitStep(plan);
      });
    const exports = [
      step(['g', null, null]),
      calls.run(() => r.snapshot(() => new Float32Array(0)).groups.map((g) => g.step)),
      calls.run(() => r.setLearningRate(0.5)),
      step(['g', 'g', 'g']),
      calls.run(() => r.snapshot(() => new Float32Array(0)).groups.map((g) => [g.step, g.hyperparams.lr])),
    ];
    const done = await Promise.all(exports);
    expect(done[1]).toEqual([1, 0]);
    expect(done[4]).toEqual([
      [2, 0.5],
      [1, 0.5],
    ]);
  });
});

describe('a step count at 2^53 - 1', () => {
  it('refuses the step that would take it past what a state file records, changing nothing', async () => {
    const { AccSGD } = await import('./optimizer.js');
    const { decodeState, encodeState } = await import('./state-file.js');
    const p = new Float32Array([1, 2]);
    const opt = new AccSGD([p], { lr: 0.1 });
    opt.step([new Float32Array([1, 1])]);
    const state = decodeState(opt.exportState());
    state.groups[0]!.step = Number.MAX_SAFE_INTEGER;
    opt.importState(encodeState(state));
    const before = { params: Array.from(p), state: opt.exportState() };
    expect(() => opt.step([new Float32Array([1, 1])])).toThrow(AccSGDStateError);
    expect(() => opt.step([new Float32Array([1, 1])])).toThrow(
      /group 0 has taken 9007199254740991 steps, the most a step count can hold exactly/,
    );
    expect(Array.from(p)).toEqual(before.params);
    // Nothing changed: the count is still one a state file can write, and the same file comes back.
    expect(opt.exportState()).toEqual(before.state);
    expect(decodeState(opt.exportState()).groups[0]!.step).toBe(Number.MAX_SAFE_INTEGER);
  });
});
