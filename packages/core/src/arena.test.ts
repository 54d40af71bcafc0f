import { describe, expect, it } from 'vitest';
import { ParameterArena } from './arena.js';
import { AccSGDConfigError } from './errors.js';
import { AccSGD } from './optimizer.js';

function pattern(n: number, seed: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + seed) * scale);
}

describe('ParameterArena', () => {
  it('allocates zeroed, 16-byte aligned float32 arrays in one fixed memory', () => {
    const arena = new ParameterArena(1000);
    const a = arena.float32(3);
    const b = arena.float32(5);
    expect([...a]).toEqual([0, 0, 0]);
    expect(b.byteOffset).toBe(16);
    expect(a.buffer).toBe(arena.memory.buffer);
    expect(ParameterArena.of(a, b)).toBe(arena);
    expect(ParameterArena.of(a, new Float32Array(3))).toBeUndefined();
    expect(arena.capacity).toBe(16_384); // one 64 KiB page
  });

  it('says how much is left when full, and tryFloat32 returns null', () => {
    const arena = new ParameterArena(16_384);
    arena.float32(16_000);
    expect(() => arena.float32(1_000)).toThrow(AccSGDConfigError);
    expect(() => arena.float32(1_000)).toThrow(
      'length does not fit: the arena has 384 of 16384 float32 elements free',
    );
    expect(arena.tryFloat32(1_000)).toBeNull();
    expect(() => new ParameterArena(0)).toThrow('capacity must be');
  });

  it('gives AccSGD bit-identical results in place, buffers included, and falls back when full', () => {
    const n = 4_099; // a vector part and a 3-element tail
    const steps = 4;
    // heap: ordinary arrays streamed through the kernel's own memory
    const heapParam = pattern(n, 1);
    const heap = new AccSGD([heapParam], { lr: 0.05, weightDecay: 1e-3 });
    // arena: params, grads and buffers in one arena; a second arena too small for its buffer
    const arena = new ParameterArena(3 * n + 16);
    const arenaParam = arena.float32(n);
    arenaParam.set(pattern(n, 1));
    const arenaGrad = arena.float32(n);
    const inArena = new AccSGD([arenaParam], { lr: 0.05, weightDecay: 1e-3 }, { arena });
    const tiny = new ParameterArena(2 * n);
    const tinyParam = tiny.float32(n);
    tinyParam.set(pattern(n, 1));
    const tinyGrad = tiny.float32(n);
    tiny.float32(Math.floor(tiny.available) - 8); // leave no room for the buffer
    const overflowing = new AccSGD([tinyParam], { lr: 0.05, weightDecay: 1e-3 }, { arena: tiny });
    for (let k = 0; k < steps; k++) {
      const g = pattern(n, 10 + k, 0.1);
      arenaGrad.set(g);
      tinyGrad.set(g);
      heap.step([g]);
      inArena.step([arenaGrad]);
      overflowing.step([tinyGrad]);
    }
    expect(inArena.buffer(0)!.buffer).toBe(arena.memory.buffer);
    expect(overflowing.buffer(0)!.buffer).not.toBe(tiny.memory.buffer);
    for (const other of [arenaParam, tinyParam])
      expect(Buffer.compare(Buffer.from(other.slice().buffer), Buffer.from(heapParam.buffer))).toBe(0);
    expect([...inArena.buffer(0)!]).toEqual([...heap.buffer(0)!]);
  });

  it('rejects a non-finite gradient in the arena before anything changes', () => {
    const arena = new ParameterArena(4_096);
    const p = arena.float32(1_024);
    p.fill(1);
    const g = arena.float32(1_024);
    g[1_023] = Number.POSITIVE_INFINITY;
    const opt = new AccSGD([p], { lr: 0.1 }, { arena });
    expect(() => opt.step([g])).toThrow('element 1023 is Infinity');
    expect(p.every((v) => v === 1)).toBe(true);
    expect(opt.buffer(0)).toBeNull();
  });

  it('keeps using the same arena memory across state imports', () => {
    const arena = new ParameterArena(4_096);
    const p = arena.float32(100);
    const g = arena.float32(100);
    g.fill(0.5);
    const opt = new AccSGD([p], { lr: 0.1 }, { arena });
    opt.step([g]);
    const state = opt.exportState();
    const first = opt.buffer(0);
    const free = arena.available;
    opt.importState(state);
    opt.importState(state);
    expect(opt.buffer(0)).toBe(first);
    expect(arena.available).toBe(free);
    expect(() => new AccSGD([p], { lr: 0.1 }, { arena: {} as ParameterArena })).toThrow(
      'arena must be a ParameterArena',
    );
  });
});
