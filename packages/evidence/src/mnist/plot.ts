import * as Plot from '@observablehq/plot';
import { parseHTML } from 'linkedom';
import type { RunResult } from './train.js';

/** Fixed colours (Tableau 10), so the hand-made legend matches the lines. */
export const COLORS: Record<string, string> = {
  AccSGD: '#e15759',
  SGD: '#4e79a7',
  Momentum: '#f28e2b',
  Nesterov: '#76b7b2',
  Adam: '#59a14f',
};

interface Point {
  series: string;
  optimizer: string;
  backend: string;
  epoch: number;
  loss: number;
  accuracy: number;
}

function points(runs: readonly RunResult[]): Point[] {
  return runs.flatMap((r) =>
    r.epochs.map((e) => ({
      series: `${r.spec.name} (${r.backend})`,
      optimizer: r.spec.name,
      backend: r.backend,
      epoch: e.epoch,
      loss: e.trainLoss,
      accuracy: e.testAccuracy,
    })),
  );
}

type Group = 'wasm' | 'other' | 'onnx';

/** wasm runs solid, another tfjs backend dashed, an ONNX Runtime run dotted. */
const DASH: Record<Group, string | undefined> = { wasm: undefined, other: '5,4', onnx: '1,3' };

function groupOf(backend: string): Group {
  return backend === 'wasm' ? 'wasm' : backend.startsWith('onnxruntime') ? 'onnx' : 'other';
}

function panel(
  document: Document,
  data: Point[],
  y: 'loss' | 'accuracy',
  label: string,
  epochs: number,
  type: 'log' | 'linear',
): string {
  const shown = y === 'accuracy' ? data.filter((d) => d.epoch >= 1) : data;
  const color = { domain: Object.keys(COLORS), range: Object.values(COLORS) };
  const mark = (group: Group) => {
    const d = shown.filter((p) => groupOf(p.backend) === group);
    const dash = DASH[group];
    return [
      Plot.line(d, {
        x: 'epoch',
        y,
        z: 'series',
        stroke: 'optimizer',
        strokeWidth: group === 'onnx' ? 2.4 : 1.8,
        ...(dash ? { strokeDasharray: dash } : {}),
      }),
      Plot.dot(d, { x: 'epoch', y, stroke: 'optimizer', fill: dash ? 'white' : 'optimizer', r: 2.5 }),
    ];
  };
  const svg = Plot.plot({
    document,
    width: 760,
    height: 300,
    marginLeft: 60,
    marginRight: 30,
    style: { background: 'white', fontSize: '12px' },
    x: {
      label: 'epoch',
      domain: [y === 'accuracy' ? 1 : 0, epochs],
      ticks: Array.from({ length: epochs + 1 }, (_, i) => i),
      tickFormat: 'd',
      grid: true,
    },
    y: { type, label, grid: true, ...(type === 'log' ? { tickFormat: '~g' } : {}) },
    color,
    marks: [...mark('wasm'), ...mark('other'), ...mark('onnx')],
  }) as unknown as { outerHTML: string };
  return svg.outerHTML;
}

/**
 * Training loss and test accuracy per epoch, one line per run (the best setting of each
 * optimizer on wasm, solid; a run on another tfjs backend, dashed; an ONNX Runtime run, dotted), stacked in one standalone SVG with
 * a legend on top.
 */
export function curvesPlot(runs: readonly RunResult[], epochs: number, title: string): string {
  const { document } = parseHTML('<!doctype html><html><body></body></html>');
  const doc = document as unknown as Document;
  const data = points(runs);
  const legend: string[] = [];
  let x = 60;
  let row = 40;
  for (const r of runs) {
    const label =
      r.backend === 'wasm'
        ? `${r.spec.name} lr=${r.spec.lr}`
        : `${r.spec.name} lr=${r.spec.lr} (${r.backend})`;
    const width = 40 + 7.2 * label.length;
    if (x + width > 750) {
      x = 60;
      row += 18;
    }
    const c = COLORS[r.spec.name] ?? '#000';
    const d = DASH[groupOf(r.backend)];
    const dash = d ? ` stroke-dasharray="${d}"` : '';
    legend.push(
      `<line x1="${x}" y1="${row}" x2="${x + 22}" y2="${row}" stroke="${c}" stroke-width="2"${dash}/><text x="${x + 27}" y="${row + 4}">${escapeXml(label)}</text>`,
    );
    x += width;
  }
  const top = row + 16;
  const loss = panel(
    doc,
    data,
    'loss',
    'training loss (mean over the epoch; epoch 0: initial)',
    epochs,
    'log',
  );
  const acc = panel(doc, data, 'accuracy', 'test accuracy', epochs, 'linear');
  const place = (svg: string, y: number) =>
    svg.replace('<svg', `<svg y="${y}"`).replace(/ xmlns="http:\/\/www\.w3\.org\/2000\/svg"/, '');
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="760" height="${top + 600}" viewBox="0 0 760 ${top + 600}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="60" y="18" font-size="14" font-weight="bold">${escapeXml(title)}</text>`,
    ...legend,
    place(loss, top),
    place(acc, top + 300),
    '</svg>',
    '',
  ].join('\n');
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
