import { AccSGDConfigError, AccSGDStateError } from '@accsgd/core';
import * as ortNode from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { OnnxAccSGD, type OnnxAccSGDOptions } from './onnx-optimizer.js';
import { countingOrt } from './test-support/counting-ort.js';

// Defects found by probing the public entry points with hostile input (issue 18, section 6): each
// is a typed error or the right result, and changes nothing.

const ort = ortNode;
const create = (options: OnnxAccSGDOptions = {}, data: readonly number[] = [1, -2]) =>
  OnnxAccSGD.create([{ params: [{ name: 'x', data }] }], { lr: 0.1 }, { ort, ...options });

async function configError(attempt: () => Promise<unknown>): Promise<AccSGDConfigError> {
  try {
    await attempt();
  } catch (error) {
    expect(error).toBeInstanceOf(AccSGDConfigError);
    return error as AccSGDConfigError;
  }
  throw new Error('expected an AccSGDConfigError');
}

describe('OnnxAccSGD options and parameters', () => {
  it('refuses null options, unknown option keys and a maxCachedSessions that is not an integer >= 1', async () => {
    expect(
      (await configError(() => OnnxAccSGD.create([{ params: [{ data: [1] }] }], { lr: 0.1 }, null as never)))
        .field,
    ).toBe('options');
    expect((await configError(() => create({ bogus: 1 } as never))).field).toBe('options.bogus');
    for (const bad of [Number.NaN, 'abc', 0, 2.5, Number.POSITIVE_INFINITY])
      expect(
        await configError(() => create({ maxCachedSessions: bad as number })),
        String(bad),
      ).toMatchObject({ field: 'maxCachedSessions', expected: 'an integer >= 1' });
    expect((await configError(() => create({ sessionOptions: 'fast' as never }))).field).toBe(
      'sessionOptions',
    );
  });

  it('refuses parameter data that holds something other than numbers, naming the element', async () => {
    const error = await configError(() => create({}, [1, {} as number]));
    expect(error.field).toBe('groups[0].params[0].data[1]');
    expect(error.message).toBe('groups[0].params[0].data[1] must be a number; got object');
    expect((await configError(() => create({}, [1, '2' as unknown as number]))).field).toBe(
      'groups[0].params[0].data[1]',
    );
  });

  it('builds one update session whatever the pattern of present gradients, and releases every session on dispose', async () => {
    const counting = countingOrt(ort);
    const names = Array.from({ length: 9 }, (_, i) => `p${i}`);
    const opt = await OnnxAccSGD.create(
      [{ params: names.map((name) => ({ name, data: [1] })) }],
      { lr: 0.1 },
      { ort: counting.ort, updateGraph: true },
    );
    // 12 patterns of present parameters (each once built a session of its own): every one is the
    // 'masked' graph of the group's flat tensors, fed which elements have a gradient.
    for (let k = 0; k < 12; k++)
      await opt.step({
        [names[k % 9]!]: new Float32Array([k % 2 ? 1 : -1]),
        ...(k >= 9 ? { p0: new Float32Array([1]) } : {}),
      });
    expect(opt.cachedSessions).toBe(1);
    // The update session and the one that cuts the 9 parameters apart (one run on the CPU).
    expect(counting.created()).toBe(2);
    await opt.dispose();
    expect(counting.released()).toBe(2);
  });
});

describe('OnnxAccSGD gradients in a SharedArrayBuffer', () => {
  it('applies them as the same values in an ordinary buffer (ORT refuses shared views)', async () => {
    const shared = new Float32Array(new SharedArrayBuffer(8));
    shared.set([0.5, 0.25]);
    const a = await create();
    const b = await create();
    await a.step({ x: shared });
    await b.step({ x: new Float32Array([0.5, 0.25]) });
    const [ra, rb] = [await a.read(), await b.read()];
    expect(Array.from(ra.params.get('x')!)).toEqual(Array.from(rb.params.get('x')!));
    expect(Array.from(ra.buffers.get('x')!)).toEqual(Array.from(rb.buffers.get('x')!));
    expect(a.groups[0]!.step).toBe(1);
    await Promise.all([a.dispose(), b.dispose()]);
  });
});

describe('OnnxAccSGD call ordering with dispose', () => {
  it('p = opt.step(g); opt.dispose() applies the step already made, then disposes', async () => {
    const opt = await create();
    const step = opt.step({ x: new Float32Array([0.5, 0.25]) });
    const exported = opt.exportState();
    const disposed = opt.dispose();
    await expect(step).resolves.toEqual({ applied: true });
    // The export was made before dispose too: it sees the step.
    expect((await exported).length).toBeGreaterThan(0);
    await disposed;
    await expect(opt.step({ x: new Float32Array([1, 1]) })).rejects.toThrow(AccSGDStateError);
    await expect(opt.read()).rejects.toThrow('this OnnxAccSGD has been disposed');
  });
});

describe('OnnxAccSGD paramTensor kept past its step', () => {
  it('download() of the stale handle is AccSGDStateError; the current handle still reads', async () => {
    const opt = await create();
    const stale = opt.paramTensor('x');
    expect(Array.from(await opt.download(stale))).toEqual([1, -2]);
    await opt.step({ x: new Float32Array([0.5, 0.25]) });
    await expect(opt.download(stale)).rejects.toThrow(AccSGDStateError);
    await expect(opt.download(stale)).rejects.toThrow(
      /this tensor was disposed: a paramTensor\(\) handle is valid until the next step/,
    );
    const current = await opt.download(opt.paramTensor('x'));
    expect(Array.from(current)).toEqual(Array.from((await opt.read()).params.get('x')!));
    await opt.dispose();
  });
});
