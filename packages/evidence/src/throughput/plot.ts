import * as Plot from '@observablehq/plot';
import { parseHTML } from 'linkedom';
import type { Row } from './types.js';

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
    .replace(/ \(.*\)$/, '')
    .replace('wasm SIMD, ', '')
    .replace('ParameterArena', 'arena')
    .replace('Float32Array', 'arrays');
  const variant = r.variant
    .replace(/^arena: /, '')
    .replace(/^(OnnxAccSGD|WebGPUAccSGD)\.step, /, '')
    .replace(/^AccSGD( fused)?, /, '')
    .replace(/, \d+ dispatch\(es\)$/, '')
    .replace(' (7 in-place ops per parameter)', '')
    .replace(/^the floor pass split over .*$/, 'split pass')
    .replace(/nonFinite /, '')
    .replace(/default nonFinite|'error' \(default\)/, 'default');
  return `${framework} ${backend} · ${variant}`;
}

/**
 * Milliseconds per step as bars on a log axis (from 10 ms), one panel per layout, each row's
 * baseline as a black tick on its bar, as a standalone SVG.
 */
export function throughputPlot(rows: readonly Row[]): string {
  const { document } = parseHTML('<!doctype html><html><body></body></html>');
  const data = rows.map((r) => ({ ...r, label: rowLabel(r) }));
  const labels = [...new Set(data.map((d) => d.label))];
  const FROM = 10;
  const top = Math.max(...data.flatMap((d) => [d.ms, d.baselineMs]).filter(Number.isFinite));
  const svg = Plot.plot({
    document: document as unknown as Document,
    width: 980,
    height: 60 + 2 * 18 * labels.length,
    marginLeft: 250,
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
    color: { legend: false },
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
  let out = svg.outerHTML;
  if (!out.includes('xmlns="http://www.w3.org/2000/svg"'))
    out = out.replace('<svg', '<svg xmlns="http://www.w3.org/2000/svg"');
  return `${out}\n`;
}
