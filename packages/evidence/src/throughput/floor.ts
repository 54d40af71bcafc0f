import { readFileSync } from 'node:fs';
import wabtInit from 'wabt';

/** The floor kernel's source, compiled at run time with wabt (as @accsgd/core's build-wasm.mjs does). */
export const FLOOR_WAT = new URL('./floor.wat', import.meta.url);

/** The floor kernel as WebAssembly bytes. */
export async function compileFloor(): Promise<Uint8Array<ArrayBuffer>> {
  const wabt = await wabtInit();
  const module = wabt.parseWat('floor.wat', readFileSync(FLOOR_WAT, 'utf8'), { simd: true });
  try {
    module.validate();
    return new Uint8Array(module.toBinary({}).buffer);
  } finally {
    module.destroy();
  }
}

/**
 * `floor(p, g, b, pOut, bOut, n, fromGradient)`: byte offsets into `memory`, n float32 elements (a
 * multiple of 4). Writes bOut ← b and pOut ← p (or ← g when fromGradient is not 0).
 */
export type FloorPass = (
  p: number,
  g: number,
  b: number,
  pOut: number,
  bOut: number,
  n: number,
  fromGradient: number,
) => void;

export async function instantiateFloor(
  memory: WebAssembly.Memory,
  bytes?: Uint8Array<ArrayBuffer>,
): Promise<FloorPass> {
  const module = await WebAssembly.compile(bytes ?? (await compileFloor()));
  const instance = await WebAssembly.instantiate(module, { env: { memory } });
  return instance.exports.floor as FloorPass;
}

/**
 * The floor over `tensors` tensors of `size` elements each (size a multiple of 4), laid out like a
 * ParameterArena holding parameters, then gradients, then buffers, updated in place: one call per
 * tensor, as the optimizer's step makes one kernel call per tensor.
 */
export async function floorBench(
  tensors: number,
  size: number,
): Promise<{ run: () => void; memory: WebAssembly.Memory }> {
  if (size % 4 !== 0) throw new Error(`floor: size must be a multiple of 4, got ${size}`);
  const bytes = tensors * size * 4;
  const pages = Math.ceil((3 * bytes) / 65_536);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
  const all = new Float32Array(memory.buffer, 0, 3 * tensors * size);
  for (let i = 0; i < all.length; i++) all[i] = Math.sin(i * 0.001);
  const floor = await instantiateFloor(memory);
  const run = () => {
    for (let t = 0; t < tensors; t++) {
      const at = t * size * 4;
      floor(at, bytes + at, 2 * bytes + at, at, 2 * bytes + at, size, 0);
    }
  };
  return { run, memory };
}
