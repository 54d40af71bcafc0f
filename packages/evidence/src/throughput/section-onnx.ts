import { AccSGD } from '@accsgd/core';
import { OnnxAccSGD } from '@accsgd/onnx-training';
import * as ort from 'onnxruntime-node';
import { type Target, verdict } from './stats.js';
import { filled, timeInterleaved } from './timing.js';
import { LAYOUTS, type Row, type SectionResult } from './types.js';

const LR = 0.01;
export const ONNX_TARGET: Target = { op: '<=', limit: 1.5 };

/**
 * @accsgd/onnx-training's OnnxAccSGD on onnxruntime-node's cpu execution provider (default session
 * options) beside @accsgd/core's AccSGD.step on the same data, same nonFinite policy, same process.
 */
export async function runOnnx(repeats: number): Promise<SectionResult> {
  const rows: Row[] = [];
  for (const layout of LAYOUTS) {
    const { tensors, size } = layout;
    const grads = Array.from({ length: tensors }, (_, t) => filled(size, t + 2, 0.5));
    const named = Object.fromEntries(grads.map((g, t) => [`w${t}`, g]));
    for (const nonFinite of ['error', 'allow'] as const) {
      const core = new AccSGD(
        Array.from({ length: tensors }, (_, t) => filled(size, t + 1, 0.5)),
        { lr: LR },
        { nonFinite },
      );
      const onnx = await OnnxAccSGD.create(
        [
          {
            params: Array.from({ length: tensors }, (_, t) => ({
              name: `w${t}`,
              data: filled(size, t + 1, 0.5),
            })),
          },
        ],
        { lr: LR },
        { ort, executionProvider: 'cpu', nonFinite },
      );
      const ms = await timeInterleaved(
        { core: () => core.step(grads), onnx: () => onnx.step(named) },
        repeats,
      );
      await onnx.dispose();
      const ratio = ms.onnx / ms.core;
      rows.push({
        framework: '@accsgd/onnx-training',
        backend: `onnxruntime-node ${ort.env.versions?.common ?? ''} cpu`.replace('  ', ' '),
        layout: layout.label,
        variant: `OnnxAccSGD.step, nonFinite '${nonFinite}'${nonFinite === 'error' ? ' (default)' : ''}`,
        ms: ms.onnx,
        baseline: `@accsgd/core AccSGD.step, nonFinite '${nonFinite}'`,
        baselineMs: ms.core,
        ratio,
        target: ONNX_TARGET,
        verdict: verdict(ratio, ONNX_TARGET),
      });
    }
  }
  return { section: 'onnx', rows };
}
