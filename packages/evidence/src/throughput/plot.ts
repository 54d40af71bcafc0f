import * as Plot from '@observablehq/plot';
import { parseHTML } from 'linkedom';
import type { Row } from './types.js';

/** A row's label on the chart's y axis. */
export function rowLabel(r: Row): string {
  return `${r.framework.replace('@accsgd/', '')} · ${r.backend.replace(/ \(.*\)$/, '')} · ${r.variant.replace(/, \d+ dispatch\(es\)$/, '')}`;
}

/**
 * Milliseconds per step as bars on a log axis (from 1 ms), one panel per layout, each row's
 * baseline as a black tick on its bar, as a standalone SVG.
 */
export function throughputPlot(rows: readonly Row[]): string {
  const { document } = parseHTML('<!doctype html><html><body></body></html>');
  const data = rows.map((r) => ({ ...r, label: rowLabel(r) }));
  const labels = [...new Set(data.map((d) => d.label))];
  const svg = Plot.plot({
    document: document as unknown as Document,
    width: 980,
    height: 60 + 2 * 18 * labels.length,
    marginLeft: 400,
    marginRight: 40,
    style: { background: 'white', fontSize: '11px' },
    x: { type: 'log', label: "milliseconds per step (log; tick: the row's baseline)", grid: true },
    y: { domain: labels, label: null },
    fy: { label: null },
    color: { legend: false },
    marks: [
      Plot.barX(data, { x1: 1, x2: 'ms', y: 'label', fy: 'layout', fill: 'framework', fillOpacity: 0.8 }),
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
