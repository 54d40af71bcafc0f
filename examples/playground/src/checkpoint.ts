import { AccSGDStateError, decodeSafetensors, encodeSafetensors, type SafetensorsTensor } from '@accsgd/core';
import type { BackendName } from './backends.js';
import { TASKS, type TaskName } from './data.js';
import type { Checkpoint } from './trainers/types.js';

export const CHECKPOINT_FORMAT = 'accsgd-playground-checkpoint';

/** A saved run: the model's parameters and the optimizer's state file, and where it was. */
export interface SavedRun extends Checkpoint {
  task: TaskName;
  backend: BackendName;
  seed: number;
  /** Steps taken: the next step continues with batch `step`. */
  step: number;
}

function toBase64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(text: string): Uint8Array {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/**
 * A safetensors file: the parameters as F32 tensors `param/<name>`, and in the metadata the run's
 * task, seed and step and the AccSGD state file exactly as the optimizer exported it (base64), so
 * importing it goes through the optimizer's own strict parser.
 */
export function encodeCheckpoint(run: SavedRun): Uint8Array {
  const tensors: [string, SafetensorsTensor][] = [...run.params].map(([name, data]) => [
    `param/${name}`,
    { dtype: 'F32', shape: [data.length], data },
  ]);
  return encodeSafetensors(tensors, {
    format: CHECKPOINT_FORMAT,
    task: run.task,
    backend: run.backend,
    seed: String(run.seed),
    step: String(run.step),
    state: toBase64(run.state),
  });
}

/** Throws AccSGDStateError (the safetensors parser's, or one naming the missing field). */
export function decodeCheckpoint(bytes: Uint8Array): SavedRun {
  const file = decodeSafetensors(bytes);
  const meta = file.metadata;
  if (meta.format !== CHECKPOINT_FORMAT)
    throw new AccSGDStateError(
      `not a playground checkpoint: metadata format is ${JSON.stringify(meta.format ?? null)}, expected "${CHECKPOINT_FORMAT}" (save one with "Save state")`,
    );
  const task = meta.task as TaskName;
  if (!TASKS.includes(task))
    throw new AccSGDStateError(
      `checkpoint task ${JSON.stringify(meta.task)} is not one of ${TASKS.join(', ')}`,
    );
  const seed = Number(meta.seed);
  const step = Number(meta.step);
  if (!Number.isSafeInteger(seed) || !Number.isSafeInteger(step) || step < 0)
    throw new AccSGDStateError(
      `checkpoint seed ${meta.seed} / step ${meta.step}: expected integers, step >= 0`,
    );
  if (typeof meta.state !== 'string') throw new AccSGDStateError('checkpoint has no optimizer state');
  const params = new Map<string, Float32Array>();
  for (const [key, tensor] of file.tensors) {
    if (!key.startsWith('param/') || tensor.dtype !== 'F32')
      throw new AccSGDStateError(
        `checkpoint tensor "${key}" (${tensor.dtype}): expected F32 tensors named param/<name>`,
      );
    params.set(key.slice(6), Float32Array.from(tensor.data));
  }
  return { task, backend: meta.backend as BackendName, seed, step, params, state: fromBase64(meta.state) };
}
