import { AccSGDStateError, encodeSafetensors } from '@accsgd/core';
import { describe, expect, it } from 'vitest';
import { decodeCheckpoint, encodeCheckpoint } from './checkpoint.js';

describe('checkpoint file', () => {
  const run = {
    task: 'toy' as const,
    backend: 'tfjs-cpu' as const,
    seed: 3,
    step: 12,
    params: new Map([
      ['W1', new Float32Array([1, -2, 0.5])],
      ['b1', new Float32Array([0.25])],
    ]),
    state: new Uint8Array([1, 2, 3, 250, 0]),
  };

  it('round-trips the parameters, the state file bytes and where the run was', () => {
    expect(decodeCheckpoint(encodeCheckpoint(run))).toEqual(run);
  });

  it('refuses other files with a typed error that says what it expected', () => {
    expect(() => decodeCheckpoint(new TextEncoder().encode('not a state file'))).toThrow(AccSGDStateError);
    const other = encodeSafetensors([], { format: 'accsgd-state' });
    expect(() => decodeCheckpoint(other)).toThrow(
      /metadata format is "accsgd-state", expected "accsgd-playground-checkpoint"/,
    );
    const bytes = encodeCheckpoint(run);
    const badTask = encodeSafetensors([], {
      format: 'accsgd-playground-checkpoint',
      task: 'cifar',
      seed: '1',
      step: '0',
      state: '',
    });
    expect(() => decodeCheckpoint(badTask)).toThrow(/task "cifar" is not one of toy, mnist, mnist-cnn/);
    expect(bytes.length).toBeGreaterThan(0);
  });
});
