import { AccSGD, type HyperparamsInput } from '@accsgd/core';
import type { WebGPUAccSGDOptions } from '../webgpu-optimizer.js';
import { WebGPUAccSGD } from '../webgpu-optimizer.js';

const STORAGE = 0x80;
const COPY_SRC = 0x4;
const COPY_DST = 0x8;

export interface TestTensor {
  name: string;
  size: number;
  /** Element offset in the group's flat buffer; default: right after the previous tensor. */
  offset?: number;
  /** Initial values; default: a pseudo-random pattern in [-1, 1). */
  init?: Float32Array;
}

export interface TestGroup {
  hyperparams: Partial<HyperparamsInput>;
  tensors: TestTensor[];
}

/** Deterministic float32-representable values in [-1, 1) (a small LCG). */
export function pattern(size: number, seed: number): Float32Array {
  const out = new Float32Array(size);
  let state = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = state / 2 ** 31 - 1;
  }
  return out;
}

/**
 * The same problem on the GPU (caller-owned flat buffers, with `GAP_FILL` in every element that
 * belongs to no tensor) and on the CPU optimizer of @accsgd/core.
 */
export const GAP_FILL = 12345.5;

/** The CPU optimizer over copies of `init`, grouped and named like the GPU one, to compare against. */
export function cpuTwin(
  groups: TestGroup[],
  init: ReadonlyMap<string, Float32Array>,
  defaults: HyperparamsInput,
) {
  const cpuParams = new Map([...init].map(([name, values]) => [name, Float32Array.from(values)]));
  const cpu = new AccSGD(
    groups.map((group) => ({
      ...group.hyperparams,
      params: group.tensors.map((t) => cpuParams.get(t.name)!),
      names: group.tensors.map((t) => t.name),
    })),
    defaults,
  );
  return { cpu, cpuParams };
}

export async function twinOptimizers(
  device: GPUDevice,
  groups: TestGroup[],
  defaults: HyperparamsInput,
  options: WebGPUAccSGDOptions = {},
) {
  const init = new Map<string, Float32Array>();
  let seed = 1;
  const layouts = groups.map((group) => {
    let end = 0;
    const segments = group.tensors.map((t) => {
      const offset = t.offset ?? end;
      end = offset + t.size;
      init.set(t.name, t.init ?? pattern(t.size, seed));
      seed++;
      return { name: t.name, offset, size: t.size };
    });
    const length = Math.max(...segments.map((s) => s.offset + s.size), 1);
    return { segments, length };
  });
  const buffers = layouts.map(({ segments, length }, g) => {
    const flat = new Float32Array(length).fill(GAP_FILL);
    for (const s of segments) flat.set(init.get(s.name)!, s.offset);
    const params = device.createBuffer({
      label: `test params ${g}`,
      size: length * 4,
      usage: STORAGE | COPY_SRC | COPY_DST,
    });
    const grads = device.createBuffer({
      label: `test grads ${g}`,
      size: length * 4,
      usage: STORAGE | COPY_SRC | COPY_DST,
    });
    device.queue.writeBuffer(params, 0, flat);
    return { params, grads, flat };
  });
  const gpu = await WebGPUAccSGD.create(
    device,
    groups.map((group, g) => ({
      ...group.hyperparams,
      params: buffers[g]!.params,
      grads: buffers[g]!.grads,
      segments: layouts[g]!.segments,
    })),
    defaults,
    options,
  );
  const { cpu, cpuParams } = cpuTwin(groups, init, defaults);

  /** One step on both: `grads` by name (null / absent: no gradient). */
  async function step(grads: Record<string, Float32Array | null>): Promise<void> {
    layouts.forEach(({ segments }, g) => {
      for (const s of segments) {
        const grad = grads[s.name];
        if (grad && s.size > 0)
          device.queue.writeBuffer(buffers[g]!.grads, s.offset * 4, grad as Float32Array<ArrayBuffer>);
      }
    });
    await gpu.step(Object.fromEntries(gpu.paramNames.map((n) => [n, grads[n] != null])));
    cpu.step(grads);
  }

  /** The whole flat params buffer of a group, gaps included. */
  async function readFlat(g: number): Promise<Float32Array> {
    const { params, flat } = buffers[g]!;
    const staging = device.createBuffer({ size: flat.byteLength, usage: 0x1 | COPY_DST });
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(params, 0, staging, 0, flat.byteLength);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(1);
    const out = new Float32Array(staging.getMappedRange().slice(0));
    staging.destroy();
    return out;
  }

  return { gpu, cpu, cpuParams, init, layouts, buffers, step, readFlat };
}
