import { describe, expect, it } from 'vitest';
import { floorBench, instantiateFloor, splitCalls, threadedFloorBench } from './floor.js';

/** Bytes that no arithmetic would keep: NaN payloads, -0, subnormals, infinities. */
function pattern(n: number, seed: number): Uint32Array {
  const special = [0x7fc01234, 0xffa00001, 0x80000000, 0x00000001, 0x7f800000, 0xff800000];
  return Uint32Array.from({ length: n }, (_, i) =>
    i % 7 === 0 ? special[(i + seed) % special.length]! : (Math.imul(i + 1, 0x9e3779b1) ^ seed) >>> 0,
  );
}

describe('the floor kernel (floor.wat)', () => {
  it('copies p and buf byte for byte to other places, and touches nothing else', async () => {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 1 });
    const words = new Uint32Array(memory.buffer);
    const n = 20;
    const p = pattern(n, 1);
    const g = pattern(n, 2);
    const b = pattern(n, 3);
    words.fill(0xdeadbeef);
    words.set(p, 0);
    words.set(g, 64);
    words.set(b, 128);
    const floor = await instantiateFloor(memory);
    floor(0, 64 * 4, 128 * 4, 256 * 4, 384 * 4, n, 0);
    expect(words.slice(256, 256 + n)).toEqual(p);
    expect(words.slice(384, 384 + n)).toEqual(b);
    // Inputs unchanged, nothing written past n.
    expect(words.slice(0, n)).toEqual(p);
    expect(words.slice(64, 64 + n)).toEqual(g);
    expect(words.slice(128, 128 + n)).toEqual(b);
    expect(words[256 + n]).toBe(0xdeadbeef);
    expect(words[384 + n]).toBe(0xdeadbeef);
    // With fromGradient set, p' takes g's bytes: the gradient really is read.
    floor(0, 64 * 4, 128 * 4, 256 * 4, 384 * 4, n, 1);
    expect(words.slice(256, 256 + n)).toEqual(g);
  });

  it('runs in place over tensors laid out like an arena, leaving the values as they were', async () => {
    const { run, memory } = await floorBench(3, 8);
    const all = new Float32Array(memory.buffer, 0, 3 * 3 * 8);
    const before = all.slice();
    run();
    expect(new Uint32Array(all.buffer, 0, all.length)).toEqual(new Uint32Array(before.buffer));
    await expect(floorBench(1, 6)).rejects.toThrow(/multiple of 4/);
  });
});

describe('the floor split over threads', () => {
  it('covers every element exactly once, in whole vectors', () => {
    for (const [tensors, size, threads] of [
      [1, 40, 2],
      [1, 44, 3],
      [4, 8, 2],
      [5, 8, 2],
      [3, 16, 1],
    ] as const) {
      const calls = splitCalls(tensors, size, threads);
      expect(calls).toHaveLength(threads);
      const bytes = tensors * size * 4;
      const covered = new Uint8Array(tensors * size);
      for (const [p, g, b, n] of calls.flat()) {
        expect(n % 4).toBe(0);
        expect(g - p).toBe(bytes);
        expect(b - p).toBe(2 * bytes);
        for (let i = 0; i < n; i++) covered[p / 4 + i]! += 1;
      }
      expect([...covered].every((c) => c === 1)).toBe(true);
    }
  });

  it('runs in place on a shared memory with a worker, leaving the values as they were', async () => {
    const { run, close, memory } = await threadedFloorBench(1, 64, 2);
    try {
      const all = new Uint32Array(memory.buffer, 0, 3 * 64);
      const before = all.slice();
      run();
      run();
      expect(all.slice()).toEqual(before);
    } finally {
      await close();
    }
  });
});
