import type { OrtModule, OrtSession } from '../runtime.js';

/** An ORT module that counts the sessions it creates and releases (and their runs). */
export function countingOrt(ort: OrtModule): {
  ort: OrtModule;
  created: () => number;
  released: () => number;
  runs: () => number;
} {
  let created = 0;
  let released = 0;
  let runs = 0;
  const wrapped: OrtModule = {
    Tensor: ort.Tensor,
    InferenceSession: {
      async create(model: Uint8Array, options?: Record<string, unknown>): Promise<OrtSession> {
        const session = await ort.InferenceSession.create(model, options);
        created++;
        return {
          inputNames: session.inputNames,
          outputNames: session.outputNames,
          run: (feeds) => {
            runs++;
            return session.run(feeds);
          },
          release: async () => {
            released++;
            await session.release();
          },
        };
      },
    },
  };
  return { ort: wrapped, created: () => created, released: () => released, runs: () => runs };
}

/** Deterministic float32 values in [-1, 1) (a small LCG), so failures reproduce. */
export function seeded(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** Whether two float32 arrays hold the same bits (so -0 differs from 0 and NaNs compare by payload). */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
