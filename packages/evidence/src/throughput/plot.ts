import * as Plot from '@observablehq/plot';
import { parseHTML } from 'linkedom';
import type { Row, TrainStepRow } from './types.js';

/** A row's short label on the chart's y axis, e.g. "torch 2 threads · reference AccSGD". */
export function rowLabel(r: Row): string {
  const framework = r.framework
    .replace('@accsgd/', '')
    .replace('PyTorch', 'torch')
    .replace('-training', '')
    .replace('physical floor', 'floor');
  const backend = r.backend
    .replace(/^torch [^,]*, /, '')
    .replace(/^onnxruntime-node \S* /, '')
    .replace(/ \([^)]*\)/, '')
    .replace('wasm SIMD, ', '')
    .replace('ParameterArena', 'arena')
    .replace('Float32Array over SharedArrayBuffer', 'shared arrays')
    .replace('Float32Array', 'arrays');
  const variant = r.variant
    .replace(/^arena: /, '')
    // The backend already says "arena" and "2 threads".
    .replace(/^(arena, )?\d+ threads(, shared arrays)?: /, '')
    .replace(/^(OnnxAccSGD|WebGPUAccSGD)\.step, /, '')
    .replace(/^AccSGD( fused)?, /, '')
    .replace(/, \d+ dispatch\(es\)$/, '')
    .replace(' (7 in-place ops per parameter)', '')
    .replace(/^the floor pass split over .*$/, 'split pass')
    .replace(/nonFinite /, '')
    .replace(/default nonFinite|'error' \(default\)/, 'default');
  return `${framework} ${backend} · ${variant}`;
}

/** A train-step row's short label, e.g. "train step · onnx webgpu". */
export function trainStepLabel(r: TrainStepRow): string {
  const runtime = r.runtime.replace(/^onnxruntime-node \S* /, 'onnx ').replace(/ \(.*\)$/, '');
  return `train step · ${runtime}`;
}

const WIDTH = 980;
const MARGIN_LEFT = 250;
const SVG_NAMESPACE = 'xmlns="http://www.w3.org/2000/svg"';

type PlotDocument = ReturnType<typeof parseHTML>['document'];
interface Panel {
  svg: string;
  height: number;
}

/**
 * Milliseconds per step as bars on a log axis (from 10 ms, or the power of ten below a faster row), one panel per layout, each row's
 * baseline as a black tick on its bar, as a standalone SVG; below it, when the train-step section
 * ran, its steps per second (trainStepPanel).
 */
export function throughputPlot(rows: readonly Row[], trainSteps: readonly TrainStepRow[] = []): string {
  const { document } = parseHTML('<!doctype html><html><body></body></html>');
  // One colour per framework across both panels.
  const frameworks = [...new Set([...rows, ...trainSteps].map((r) => r.framework))].sort();
  const panels: Panel[] = [];
  if (rows.length > 0 || trainSteps.length === 0) panels.push(optimizerStepPanel(document, rows, frameworks));
  if (trainSteps.length > 0) panels.push(trainStepPanel(document, trainSteps, frameworks));
  if (panels.length === 1) {
    const only = panels[0]!.svg;
    return `${only.includes(SVG_NAMESPACE) ? only : only.replace('<svg', `<svg ${SVG_NAMESPACE}`)}\n`;
  }
  // Stacked as nested <svg> elements: each keeps its own scoped style and coordinates.
  let top = 0;
  const nested = panels.map((p) => {
    const placed = p.svg.replace(SVG_NAMESPACE, '').replace('<svg', `<svg y="${top}"`);
    top += p.height;
    return placed;
  });
  return `<svg ${SVG_NAMESPACE} width="${WIDTH}" height="${top}" viewBox="0 0 ${WIDTH} ${top}" style="background:white">${nested.join('')}</svg>\n`;
}

function optimizerStepPanel(document: PlotDocument, rows: readonly Row[], frameworks: string[]): Panel {
  const data = rows.map((r) => ({ ...r, label: rowLabel(r) }));
  const labels = [...new Set(data.map((d) => d.label))];
  const times = data.flatMap((d) => [d.ms, d.baselineMs]).filter(Number.isFinite);
  const top = Math.max(...times);
  // Bars start at the power of ten at or below the fastest time (at most 10 ms), so that no bar
  // runs left of the axis into the labels.
  const FROM = Math.min(10, 10 ** Math.floor(Math.log10(Math.min(...times))));
  const height = 60 + 2 * 18 * labels.length;
  const svg = Plot.plot({
    document: document as unknown as Document,
    width: WIDTH,
    height,
    marginLeft: MARGIN_LEFT,
    marginRight: 110,
    style: { background: 'white', fontSize: '11px' },
    x: {
      type: 'log',
      domain: [FROM, top * 1.6],
      label: "milliseconds per step (log; tick: the row's baseline)",
      grid: true,
    },
    y: { domain: labels, label: null },
    fy: { label: null },
    color: { domain: frameworks, legend: false },
    marks: [
      Plot.barX(data, { x1: FROM, x2: 'ms', y: 'label', fy: 'layout', fill: 'framework', fillOpacity: 0.8 }),
      Plot.tickX(data, { x: 'baselineMs', y: 'label', fy: 'layout', stroke: 'black', strokeWidth: 2 }),
      Plot.text(data, {
        x: 'ms',
        y: 'label',
        fy: 'layout',
        text: (d: Row) => d.ms.toFixed(d.ms < 10 ? 1 : 0),
        dx: 4,
        textAnchor: 'start',
      }),
    ],
  }) as unknown as { outerHTML: string };
  return { svg: svg.outerHTML, height };
}

/**
 * The train step's steps per second (more is faster) as bars on a log axis from 0.1, the baseline
 * (tfjs wasm, same process) as a black tick on every bar.
 */
function trainStepPanel(document: PlotDocument, rows: readonly TrainStepRow[], frameworks: string[]): Panel {
  const FROM = 0.1;
  const data = rows.map((r) => ({ ...r, label: trainStepLabel(r) }));
  const top = Math.max(...data.flatMap((d) => [d.stepsPerSecond, d.baselineStepsPerSecond]));
  const height = 70 + 24 * data.length;
  const svg = Plot.plot({
    document: document as unknown as Document,
    width: WIDTH,
    height,
    marginLeft: MARGIN_LEFT,
    marginRight: 110,
    style: { background: 'white', fontSize: '11px' },
    x: {
      type: 'log',
      domain: [FROM, Math.max(top, 1) * 1.6],
      label: 'MNIST MLP train steps per second, batch 128 (log, more is faster; tick: tfjs wasm)',
      grid: true,
      tickFormat: (x: number) => String(x),
    },
    y: { domain: data.map((d) => d.label), label: null },
    color: { domain: frameworks, legend: false },
    marks: [
      Plot.barX(data, { x1: FROM, x2: 'stepsPerSecond', y: 'label', fill: 'framework', fillOpacity: 0.8 }),
      Plot.tickX(data, { x: 'baselineStepsPerSecond', y: 'label', stroke: 'black', strokeWidth: 2 }),
      Plot.text(data, {
        x: 'stepsPerSecond',
        y: 'label',
        text: (d: TrainStepRow) => d.stepsPerSecond.toFixed(d.stepsPerSecond < 10 ? 2 : 0),
        dx: 4,
        textAnchor: 'start',
      }),
    ],
  }) as unknown as { outerHTML: string };
  return { svg: svg.outerHTML, height };
}
