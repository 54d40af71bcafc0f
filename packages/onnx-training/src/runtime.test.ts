import { AccSGDConfigError } from '@accsgd/core';
import * as ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { describe, expect, it } from 'vitest';
import { type OrtModule, resolveOrt, SHARED_ORT_SYMBOL, sessionOptions, strictPlacement } from './runtime.js';

describe('runtime', () => {
  it('accepts both ORT packages as OrtModule without casts (checked by tsc)', () => {
    const modules: OrtModule[] = [ortNode, ortWeb];
    for (const m of modules) expect(resolveOrt(m)).toBe(m);
    expect(SHARED_ORT_SYMBOL).toBe(Symbol.for('onnxruntime'));
  });

  it('omits extra unless strict placement is asked for, and maps every GPU output to gpu-buffer', () => {
    expect(sessionOptions({ executionProvider: 'cpu', strictPlacement: false, gpuOutputs: ['y'] })).toEqual({
      executionProviders: ['cpu'],
    });
    const gpu = sessionOptions({
      executionProvider: 'webgpu',
      strictPlacement: true,
      gpuOutputs: ['a', 'b'],
    });
    expect(gpu).toEqual({
      executionProviders: ['webgpu'],
      preferredOutputLocation: { a: 'gpu-buffer', b: 'gpu-buffer' },
      extra: { session: { disable_cpu_ep_fallback: '1' } },
    });
    expect('extra' in sessionOptions({ executionProvider: 'webgpu', strictPlacement: false })).toBe(false);
  });

  it("applies caller's base options first; the execution provider is the optimizer's", () => {
    expect(
      sessionOptions({
        executionProvider: 'cpu',
        strictPlacement: false,
        base: { intraOpNumThreads: 1, executionProviders: ['webgpu'] },
      }),
    ).toEqual({ intraOpNumThreads: 1, executionProviders: ['cpu'] });
  });

  it("takes strictPlacement only with 'webgpu' (on 'cpu' and 'wasm' ORT would refuse every session)", () => {
    expect(strictPlacement(true, 'webgpu')).toBe(true);
    expect(strictPlacement(undefined, 'cpu')).toBe(false);
    expect(strictPlacement(false, 'wasm')).toBe(false);
    expect(() => strictPlacement(true, 'cpu')).toThrow(AccSGDConfigError);
    expect(() => strictPlacement(true, 'wasm')).toThrow(
      /strictPlacement is true with executionProvider 'wasm', where every node runs on the CPU/,
    );
    expect(() => strictPlacement('yes', 'webgpu')).toThrow(/strictPlacement must be true or false/);
  });
});
