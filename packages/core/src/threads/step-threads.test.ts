import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ParameterArena } from '../arena.js';
import { fusedCoefficients } from '../coefficients.js';
import { AccSGDConfigError, AccSGDGradientError, AccSGDStateError } from '../errors.js';
import { fusedUpdateFloat32 } from '../fused-update.js';
import { resolveHyperparams } from '../hyperparams.js';
import { AccSGD, type ParamGroupInput } from '../optimizer.js';
import { EXTERNAL_STAGE_ELEMENTS } from './protocol.js';
import { ADOPTED_BUFFERS, CHUNK_ELEMENTS, MIN_THREADED_ELEMENTS, StepThreads } from './step-threads.js';

function pattern(n: number, seed: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(i * 0.37 + seed) * scale;
  return a;
}

/** Lengths that cross every boundary: a tail of 1-3 elements, one element, chunks split and packed. */
const SIZES = [1, 7, 3 * CHUNK_ELEMENTS + 5, 300_001, 1_027, 200_000, 65_536];
const TOTAL = SIZES.reduce((a, b) => a + b, 0);

type Memory = 'arena' | 'plain' | 'shared';

/**
 * Two groups with different hyperparameters, over arrays in `arena`, ordinary ones without, or
 * ('shared') parameters side by side on one SharedArrayBuffer and each gradient on one of its own.
 */
function model(arena: ParameterArena | undefined, memory: Memory = arena ? 'arena' : 'plain') {
  const paramMemory = memory === 'shared' ? new SharedArrayBuffer(4 * (TOTAL + 4 * SIZES.length)) : null;
  let used = 0;
  const alloc = (n: number, forParam: boolean) => {
    if (arena) return arena.float32(n);
    if (memory !== 'shared') return new Float32Array(n);
    if (!forParam) return new Float32Array(new SharedArrayBuffer(4 * n));
    const at = used;
    used += n;
    return new Float32Array(paramMemory!, 4 * at, n);
  };
  const params = SIZES.map((n, t) => {
    const p = alloc(n, true);
    p.set(pattern(n, t));
    return p;
  });
  const grads = SIZES.map((n) => alloc(n, false));
  const groups: ParamGroupInput[] = [
    { params: params.slice(0, 4), lr: 0.05, weightDecay: 1e-3 },
    { params: params.slice(4), lr: 0.01, kappa: 100, xi: 5 },
  ];
  return { params, grads, groups };
}

const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

function expectSameBits(actual: Float32Array, expected: Float32Array): void {
  expect(actual.length).toBe(expected.length);
  const x = bits(actual);
  const y = bits(expected);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) expect([i, actual[i]]).toEqual([i, expected[i]]);
}

describe('AccSGD threads', () => {
  it.each([
    ['in a shared ParameterArena', 'arena'],
    ['on ordinary Float32Arrays (streamed)', 'plain'],
    ['on Float32Arrays over SharedArrayBuffers (every thread copies)', 'shared'],
  ] as const)(
    'give bit-identical parameters and buffers for 1, 2, 3 and 4 threads, %s',
    async (_label, memory) => {
      expect(TOTAL).toBeGreaterThan(MIN_THREADED_ELEMENTS);
      const inArena = memory === 'arena';
      const reference = model(undefined);
      const single = new AccSGD(reference.groups, { lr: 0.1 });
      const runs = [1, 2, 3, 4].map((threads) => {
        const arena = inArena
          ? new ParameterArena(3 * TOTAL + 16 * SIZES.length, { shared: true })
          : undefined;
        const m = model(arena, memory);
        return { threads, ...m, opt: new AccSGD(m.groups, { lr: 0.1 }, { arena, threads }) };
      });
      expect(runs.map((r) => r.opt.threads)).toEqual([1, 2, 3, 4]);
      await Promise.all(runs.map((r) => r.opt.threadsReady()));
      // Which way each run's steps went: ordinary arrays stream through this thread's copies;
      // arrays over SharedArrayBuffers never do (every thread copies its own pieces).
      const streamed = runs.map((r) => {
        const threads = (r.opt as unknown as { stepThreads: StepThreads | null }).stepThreads;
        const calls = { count: 0 };
        if (threads) {
          const stream = threads.stream.bind(threads);
          threads.stream = (...args) => {
            calls.count++;
            stream(...args);
          };
        }
        return calls;
      });
      for (let k = 0; k < 4; k++) {
        // Step 2 leaves out tensor 3 (its buffer must stay as it was); step 3 brings it back.
        const present = SIZES.map((_, t) => k !== 2 || t !== 3);
        const grads = SIZES.map((n, t) => (present[t] ? pattern(n, 100 + 10 * k + t, 0.1) : null));
        single.step(grads);
        for (const r of runs) {
          grads.forEach((g, t) => g && r.grads[t]!.set(g));
          expect(r.opt.step(grads.map((g, t) => (g ? r.grads[t]! : null)))).toEqual({ applied: true });
        }
      }
      expect(streamed.map((c) => c.count)).toEqual(
        runs.map((r) => (memory === 'plain' && r.threads > 1 ? 4 : 0)),
      );
      for (const r of runs) {
        // With threads, the buffers of ordinary arrays live in the optimizer's shared memory.
        expect((r.opt.buffer(2) as Float32Array).buffer instanceof SharedArrayBuffer).toBe(
          inArena || r.threads > 1,
        );
        r.params.forEach((p, t) => expectSameBits(p, reference.params[t]!));
        SIZES.forEach((_, t) =>
          expectSameBits(r.opt.buffer(t) as Float32Array, single.buffer(t) as Float32Array),
        );
        expect(r.opt.paramGroups.map((g) => g.step)).toEqual(single.paramGroups.map((g) => g.step));
        r.opt.dispose();
        expect(r.opt.threads).toBe(1);
      }
    },
    120_000,
  );

  it('workers alone compute what the single-threaded kernel does, chunk by chunk', async () => {
    const n = 5 * CHUNK_ELEMENTS + 3;
    const arena = new ParameterArena(6 * n + 64, { shared: true });
    const [p, g, b] = [arena.float32(n), arena.float32(n), arena.float32(n)];
    const [p2, g2, b2] = [arena.float32(n), arena.float32(n), arena.float32(n)];
    for (const [x, seed] of [
      [p, 1],
      [g, 2],
      [b, 3],
    ] as const) {
      x.set(pattern(n, seed));
    }
    p2.set(p);
    g2.set(g);
    b2.set(b);
    const c = fusedCoefficients(resolveHyperparams({ lr: 0.02, weightDecay: 1e-2 }));
    // The calling thread does not claim chunks here, so every chunk is a worker's.
    const threads = StepThreads.create([{ memory: arena.memory, kernel: arena.kernel! }], 3, 8, 2, {
      callerWorks: false,
    })!;
    await threads.ready();
    threads.begin(0);
    threads.setCoefficients(1, c, false);
    threads.add(p.byteOffset, g.byteOffset, b.byteOffset, n, 1);
    expect(threads.scan()).toBe(true);
    threads.update();
    expect(threads.workerChunks).toBe(2 * 6); // 6 chunks, scanned then updated
    arena.kernel!.update(p2.byteOffset, g2.byteOffset, b2.byteOffset, n, c, false);
    expectSameBits(p, p2);
    expectSameBits(b, b2);
    g[n - 1] = Number.POSITIVE_INFINITY; // in the tail, past the last whole vector
    expect(threads.scan()).toBe(false);
    threads.dispose();
    await threads.exited;
  }, 60_000);

  it('workers alone copy external pieces in and out of their own staging, bit for bit', async () => {
    const n = 3 * CHUNK_ELEMENTS + 5; // pieces of whole stages, a partial one and a 1-element tail
    const threadCount = 3;
    const arena = new ParameterArena(2 * n + 2 * threadCount * EXTERNAL_STAGE_ELEMENTS + 64, {
      shared: true,
    });
    const buffer = arena.float32(n);
    const staging = arena.float32(2 * threadCount * EXTERNAL_STAGE_ELEMENTS);
    const paramMemory = new SharedArrayBuffer(4 * (n + 3));
    const param = new Float32Array(paramMemory, 12, n); // not on a vector boundary
    const grads = [1, 2].map((k) => new Float32Array(new SharedArrayBuffer(4 * n)).fill(0.01 * k));
    buffer.set(pattern(n, 3));
    param.set(pattern(n, 4));
    const expectedParam = param.slice();
    const expectedBuffer = buffer.slice();
    const c = fusedCoefficients(resolveHyperparams({ lr: 0.02 }));
    const threads = StepThreads.create([{ memory: arena.memory, kernel: arena.kernel! }], threadCount, 8, 2, {
      callerWorks: false,
      externals: [paramMemory],
    })!;
    await threads.ready();
    threads.setCoefficients(0, c, false);
    for (const [step, grad] of grads.entries()) {
      // The parameters' buffer was given at start; each gradient's is handed over now.
      expect(threads.adopt(paramMemory, step)).toBe(0);
      const gradSource = threads.adopt(grad.buffer as SharedArrayBuffer, step);
      expect(gradSource).toBe(1 + step);
      threads.begin(0, staging.byteOffset);
      threads.add(param.byteOffset / 4, grad.byteOffset / 4, buffer.byteOffset, n, 0, 0, gradSource!);
      expect(threads.scan()).toBe(true);
      threads.update();
      fusedUpdateFloat32(expectedParam, grad, expectedBuffer, c, false);
      expectSameBits(param, expectedParam);
      expectSameBits(buffer, expectedBuffer);
    }
    expect(threads.workerChunks).toBe(2 * 2 * 4); // 4 chunks a step, scanned then updated, twice
    grads[1]![n - 1] = Number.NaN;
    threads.begin(0, staging.byteOffset);
    threads.add(param.byteOffset / 4, grads[1]!.byteOffset / 4, buffer.byteOffset, n, 0, 0, 2);
    expect(threads.scan()).toBe(false);
    threads.dispose();
    await threads.exited;
  }, 60_000);

  it('keeps ADOPTED_BUFFERS gradient buffers of any size, more within adoptBytes, recycling the least recently used', async () => {
    const arena = new ParameterArena(64, { shared: true });
    const pinned = new SharedArrayBuffer(16);
    const threads = StepThreads.create([{ memory: arena.memory, kernel: arena.kernel! }], 2, 4, 2, {
      externals: [pinned],
      adoptBytes: 10 * 16,
    })!;
    await threads.ready();
    expect(ADOPTED_BUFFERS).toBe(8); // the indices below assume it
    const buffers = Array.from({ length: 12 }, () => new SharedArrayBuffer(16));
    // Step 1: ten buffers of 16 bytes fit (the first ADOPTED_BUFFERS whatever their size, then the
    // budget); an eleventh would mean letting go of one that this step uses.
    expect(buffers.slice(0, 10).map((b) => threads.adopt(b, 1))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(threads.adopt(buffers[10]!, 1)).toBeNull();
    expect(threads.adopt(pinned, 1)).toBe(0);
    // Step 2 uses all but the first again, so the new one takes the first one's index.
    for (const b of buffers.slice(1, 10)) threads.adopt(b, 2);
    expect(threads.adopt(buffers[10]!, 2)).toBe(1);
    expect(threads.adopt(buffers[0]!, 3)).toBe(2); // the least recently used since step 2 goes
    // A buffer larger than the whole budget: the least recently used go (buffers 2, 3 and 4, at
    // indices 3, 4 and 5) until fewer than ADOPTED_BUFFERS are held; the last freed index is reused.
    expect(threads.adopt(new SharedArrayBuffer(1024), 4)).toBe(5);
    threads.dispose();
  });

  it('steps bit for bit when every step brings gradients on fresh SharedArrayBuffers', async () => {
    // 7 tensors: each step hands the workers 7 new buffers, so old ones are let go of (the budget
    // is twice the parameters' bytes) while the workers keep up with every hand-over.
    const reference = model(undefined);
    const single = new AccSGD(reference.groups, { lr: 0.1 });
    const m = model(undefined, 'shared');
    const opt = new AccSGD(m.groups, { lr: 0.1 }, { threads: 2 });
    await opt.threadsReady();
    for (let k = 0; k < 5; k++) {
      const grads = SIZES.map((n, t) => pattern(n, 300 + 10 * k + t, 0.1));
      single.step(grads);
      const fresh = grads.map((g) => {
        const copy = new Float32Array(new SharedArrayBuffer(4 * g.length));
        copy.set(g);
        return copy;
      });
      opt.step(fresh);
    }
    m.params.forEach((p, t) => expectSameBits(p, reference.params[t]!));
    const threads = (opt as unknown as { stepThreads: StepThreads }).stepThreads;
    const held = (threads as unknown as { adopted: Map<SharedArrayBuffer, unknown> }).adopted;
    expect(held.size).toBeLessThanOrEqual(2 * SIZES.length);
    opt.dispose();
  }, 60_000);

  it.each([
    ['in a shared ParameterArena', 'arena'],
    ['on ordinary Float32Arrays', 'plain'],
    ['on Float32Arrays over SharedArrayBuffers', 'shared'],
  ] as const)(
    'change nothing when any gradient fails the policy, %s',
    async (_label, memory) => {
      for (const threads of [2, 4]) {
        const arena =
          memory === 'arena'
            ? new ParameterArena(3 * TOTAL + 16 * SIZES.length, { shared: true })
            : undefined;
        const m = model(arena, memory);
        const opt = new AccSGD(m.groups, { lr: 0.1 }, { arena, threads });
        const skipping = new AccSGD(
          model(new ParameterArena(3 * TOTAL + 16 * SIZES.length, { shared: true })).groups,
          { lr: 0.1 },
          { nonFinite: 'skip-step' },
        );
        await opt.threadsReady();
        m.grads.forEach((g, t) => g.set(pattern(g.length, t + 50, 0.1)));
        opt.step(m.grads);
        const before = m.params.map((p) => p.slice());
        const buffers = SIZES.map((_, t) => (opt.buffer(t) as Float32Array).slice());
        // Non-finite values far apart: in the fourth tensor's middle and the sixth's last element.
        m.grads[3]![150_000] = Number.NaN;
        m.grads[5]![199_999] = Number.NEGATIVE_INFINITY;
        expect(() => opt.step(m.grads)).toThrow(AccSGDGradientError);
        expect(() => opt.step(m.grads)).toThrow('gradient for parameter "3": element 150000 is NaN');
        m.params.forEach((p, t) => expectSameBits(p, before[t]!));
        SIZES.forEach((_, t) => expectSameBits(opt.buffer(t) as Float32Array, buffers[t]!));
        expect(opt.paramGroups.map((g) => g.step)).toEqual([1, 1]);
        expect(skipping.step(m.grads)).toEqual({
          applied: false,
          reason:
            'gradient for parameter "3": element 150000 is NaN (non-finite gradients are rejected; see the nonFinite option)',
        });
        opt.dispose();
      }
    },
    120_000,
  );

  it('refuses a gradient in the staging memory that ordinary arrays stream through', () => {
    const n = MIN_THREADED_ELEMENTS;
    const opt = new AccSGD([new Float32Array(n)], { lr: 0.1 }, { threads: 2 });
    opt.step([new Float32Array(n)]);
    // The buffer's memory is the optimizer's own; the staging slots come first in it.
    const staged = new Float32Array((opt.buffer(0) as Float32Array).buffer, 0, n);
    expect(() => opt.step([staged])).toThrow(
      'gradient for parameter "0": its memory overlaps the optimizer\'s staging memory for threads',
    );
    opt.dispose();
  });

  it("refuses a gradient over the threads' own staging for shared arrays, changing nothing", async () => {
    const n = MIN_THREADED_ELEMENTS;
    const param = new Float32Array(new SharedArrayBuffer(4 * n)).fill(0.5);
    const opt = new AccSGD([param], { lr: 0.1 }, { threads: 2 });
    await opt.threadsReady();
    opt.step([new Float32Array(new SharedArrayBuffer(4 * n)).fill(0.25)]);
    const before = param.slice();
    const buffer = (opt.buffer(0) as Float32Array).slice();
    // The optimizer's shared memory holds the ring's slots, then each thread's staging for shared
    // arrays (see startThreads): a gradient there would be overwritten while it is read.
    const external = (opt as unknown as { stream: { external: Float32Array } }).stream.external;
    const staged = new Float32Array(external.buffer, external.byteOffset, n);
    expect(() => opt.step([staged])).toThrow(
      'gradient for parameter "0": its memory overlaps the optimizer\'s staging memory for threads',
    );
    expectSameBits(param, before);
    expectSameBits(opt.buffer(0) as Float32Array, buffer);
    opt.dispose();
  });

  it('runs a small step on the calling thread alone', async () => {
    const n = MIN_THREADED_ELEMENTS / 2;
    const arena = new ParameterArena(3 * n + 16, { shared: true });
    const p = arena.float32(n);
    const g = arena.float32(n);
    const opt = new AccSGD([p], { lr: 0.1 }, { arena, threads: 2 });
    await opt.threadsReady();
    opt.step([g]);
    opt.step([g]);
    expect((opt as unknown as { stepThreads: StepThreads }).stepThreads.workerChunks).toBe(0);
    opt.dispose();
  });

  it('workers alone stream pieces through the staging ring', async () => {
    const n = 10 * 1000 + 2; // ten pieces of 1000 elements and one of 2: more than the ring holds
    const arena = new ParameterArena(4 * 2000 + 2 * n + 64, { shared: true });
    const stageP = [0, 1, 2, 3].map(() => arena.float32(1000));
    const stageG = [0, 1, 2, 3].map(() => arena.float32(1000));
    const buffer = arena.float32(n);
    buffer.set(pattern(n, 7));
    const param = pattern(n, 8);
    const grad = pattern(n, 9, 0.1);
    const expectedParam = param.slice();
    const expectedBuffer = buffer.slice();
    const c = fusedCoefficients(resolveHyperparams({ lr: 0.02 }));
    const threads = StepThreads.create([{ memory: arena.memory, kernel: arena.kernel! }], 2, 8, 2, {
      callerWorks: false,
    })!;
    await threads.ready();
    threads.setCoefficients(0, c, false);
    const pieces = Math.ceil(n / 1000);
    const order: string[] = [];
    for (let round = 0; round < 2; round++) {
      threads.stream(
        0,
        pieces,
        (k, slot) => {
          order.push(`in ${k}`);
          const count = Math.min(1000, n - 1000 * k);
          stageP[slot]!.set(param.subarray(1000 * k, 1000 * k + count));
          stageG[slot]!.set(grad.subarray(1000 * k, 1000 * k + count));
          threads.describeStaged(
            slot,
            stageP[slot]!.byteOffset,
            stageG[slot]!.byteOffset,
            buffer.byteOffset + 4000 * k,
            count,
            0,
          );
        },
        (k, slot) => {
          order.push(`out ${k}`);
          param.set(stageP[slot]!.subarray(0, Math.min(1000, n - 1000 * k)), 1000 * k);
        },
      );
      fusedUpdateFloat32(expectedParam, grad, expectedBuffer, c, false);
      expectSameBits(param, expectedParam);
      expectSameBits(buffer, expectedBuffer);
    }
    expect(threads.workerChunks).toBe(2 * pieces);
    // Four pieces are staged ahead; a slot is reused only once its piece has been copied out.
    expect(order.slice(0, 7)).toEqual(['in 0', 'in 1', 'in 2', 'in 3', 'out 0', 'in 4', 'out 1']);
    threads.dispose();
  }, 60_000);

  it('gives up with AccSGDStateError, instead of waiting forever, when a worker has died', async () => {
    const n = 2 * CHUNK_ELEMENTS;
    const arena = new ParameterArena(3 * n + 16, { shared: true });
    const [p, g, b] = [arena.float32(n), arena.float32(n), arena.float32(n)];
    const threads = StepThreads.create([{ memory: arena.memory, kernel: arena.kernel! }], 2, 4, 2, {
      callerWorks: false,
      stallMs: 300,
    })!;
    await threads.ready();
    await (threads as unknown as { workers: { terminate(): Promise<number> }[] }).workers[0]!.terminate();
    threads.begin(0);
    threads.setCoefficients(0, fusedCoefficients(resolveHyperparams({ lr: 0.1 })), false);
    threads.add(p.byteOffset, g.byteOffset, b.byteOffset, n, 0);
    expect(() => threads.update()).toThrow(AccSGDStateError);
    expect(threads.isDisposed).toBe(true);
  }, 60_000);

  it('runs on one thread where nothing can use threads, and checks the option', () => {
    const arena = new ParameterArena(100);
    expect(arena.shared).toBe(false);
    expect(new AccSGD([arena.float32(10)], { lr: 0.1 }, { arena, threads: 4 }).threads).toBe(1);
    // Too few elements on ordinary arrays to be worth a thread: none is started.
    expect(new AccSGD([new Float32Array(10)], { lr: 0.1 }, { threads: 4 }).threads).toBe(1);
    for (const threads of [0, 1.5, 65, '2', Number.NaN]) {
      expect(() => new AccSGD([new Float32Array(1)], { lr: 0.1 }, { threads: threads as number })).toThrow(
        AccSGDConfigError,
      );
    }
    expect(() => new AccSGD([new Float32Array(1)], { lr: 0.1 }, { threads: 0 })).toThrow(
      "threads must be an integer in [1, 64] or 'auto'",
    );
    expect(() => new ParameterArena(10, { shared: 'yes' as unknown as boolean })).toThrow(AccSGDConfigError);
    // 'auto': one thread per core this process may use.
    const shared = new ParameterArena(100, { shared: true });
    const auto = new AccSGD([shared.float32(10)], { lr: 0.1 }, { arena: shared, threads: 'auto' });
    expect(auto.threads).toBe(Math.min(64, availableParallelism()));
    auto.dispose();
  });
});

describe('worker clean-up', () => {
  const script = fileURLToPath(new URL('../test-support/threads-exit.ts', import.meta.url));
  const run = (mode: string) =>
    spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', script, mode], {
      encoding: 'utf8',
      timeout: 60_000,
    });

  it('dispose() ends every worker, and the process then exits on its own', async () => {
    const { status, stdout, stderr } = run('dispose');
    expect(stderr).toBe('');
    expect(stdout.trim().split('\n')).toEqual(['stepped with 3 threads', 'workers exited', 'threads 1']);
    expect(status).toBe(0);
  }, 90_000);

  it('an idle process exits with an optimizer that was never disposed', () => {
    const { status, stdout } = run('keep');
    expect(stdout.trim()).toBe('stepped with 3 threads');
    expect(status).toBe(0);
  }, 90_000);

  it('the workers of an optimizer that was garbage-collected without dispose() exit', () => {
    const { status, stdout } = run('collect');
    expect(stdout.trim().split('\n')).toEqual(['stepped with 3 threads', 'workers exited']);
    expect(status).toBe(0);
  }, 90_000);
});
