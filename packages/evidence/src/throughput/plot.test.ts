import { describe, expect, it } from 'vitest';
import { rowLabel, throughputPlot, trainStepLabel } from './plot.js';
import type { Row, TrainStepRow } from './types.js';

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

describe('optimizer-step chart', () => {
  const step = (framework: string, backend: string, variant: string, ms: number): Row => ({
    framework,
    backend,
    layout: '1 x 16,777,216',
    variant,
    ms,
    baseline: 'wasm SIMD floor (read 3, write 2 arrays)',
    baselineMs: 16,
    ratio: ms / 16,
  });

  it('says the thread count once in a row label', () => {
    expect(
      rowLabel(
        step('@accsgd/core', 'Float32Array, 2 threads', "2 threads: AccSGD, nonFinite 'error' (default)", 39),
      ),
    ).toBe('core arrays, 2 threads · default');
    expect(
      rowLabel(
        step(
          '@accsgd/core',
          'ParameterArena (wasm SIMD), 2 threads',
          "arena, 2 threads: AccSGD, nonFinite 'allow'",
          9.6,
        ),
      ),
    ).toBe("core arena, 2 threads · 'allow'");
    expect(
      rowLabel(step('@accsgd/core', 'ParameterArena (wasm SIMD)', "arena: AccSGD, nonFinite 'allow'", 17)),
    ).toBe("core arena · 'allow'");
    expect(
      rowLabel(
        step(
          '@accsgd/core',
          'Float32Array over SharedArrayBuffer, 2 threads',
          "2 threads, shared arrays: AccSGD, nonFinite 'error' (default)",
          23,
        ),
      ),
    ).toBe('core shared arrays, 2 threads · default');
  });

  it('starts the axis at the power of ten below the fastest row, so no bar runs into the labels', () => {
    const axisStart = (svg: string) => svg.match(/<text[^>]*>(\d+)<\/text>/)?.[1];
    expect(axisStart(throughputPlot([step('@accsgd/core', 'Float32Array', 'AccSGD, default', 36)]))).toBe(
      '10',
    );
    expect(axisStart(throughputPlot([step('@accsgd/core', 'Float32Array', 'AccSGD, default', 9.4)]))).toBe(
      '1',
    );
  });
});
