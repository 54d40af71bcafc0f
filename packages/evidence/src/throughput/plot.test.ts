import { describe, expect, it } from 'vitest';
import { throughputPlot, trainStepLabel } from './plot.js';
import type { TrainStepRow } from './types.js';

const row = (runtime: string, framework: string, stepsPerSecond: number): TrainStepRow => ({
  framework,
  runtime,
  variant: 'a step',
  stepsPerSecond,
  stepsPerBlock: 3,
  baseline: 'tfjs wasm',
  baselineStepsPerSecond: 100,
  ratio: stepsPerSecond / 100,
  warmupLoss: 2.3,
});

describe('train-step chart', () => {
  it('labels a row by its short runtime name', () => {
    expect(trainStepLabel(row('onnxruntime-node 1.30.0 webgpu', '@accsgd/onnx-training', 1))).toBe(
      'train step · onnx webgpu',
    );
    expect(trainStepLabel(row('tfjs webgpu (google / swiftshader)', '@accsgd/tfjs', 1))).toBe(
      'train step · tfjs webgpu',
    );
  });

  it('draws the train step alone as one standalone SVG when no optimizer rows were measured', () => {
    const svg = throughputPlot(
      [],
      [
        row('tfjs wasm', '@accsgd/tfjs', 100),
        row('onnxruntime-node 1.30.0 cpu', '@accsgd/onnx-training', 250),
      ],
    );
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.match(/<svg/g)).toHaveLength(1);
    expect(svg).toContain('train step · onnx cpu');
  });
});
