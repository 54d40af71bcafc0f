import * as Plot from '@observablehq/plot';
import { escapeXml, figure, plotDocument } from '../figure.js';
import { accsgdStep, type MappingAnalysis, momentumStep } from './mapping.js';
import { MOMENTUM, OPTIMIZER_LABELS, OPTIMIZERS, type OptimizerName } from './optimizers.js';
import { aggregateSeeds } from './seeds.js';
import type { RunResult } from './train.js';

/** Fixed colours (Tableau 10), so the legend matches the lines. */
export const COLORS: Record<string, string> = {
  AccSGD: '#e15759',
  SGD: '#4e79a7',
  Momentum: '#f28e2b',
  Nesterov: '#76b7b2',
  Adam: '#59a14f',
};

interface Row {
  series: string;
  optimizer: string;
  epoch: number;
  mean: number;
  min: number;
  max: number;
  dashed: string;
}

const color = { domain: Object.keys(COLORS), range: Object.values(COLORS) };

/** wasm runs solid, another tfjs backend dashed, an ONNX Runtime run dotted. */
function dashOf(backend: string): string {
  return backend === 'wasm' ? 'none' : backend.startsWith('onnxruntime') ? '1,3' : '5,4';
}

function panel(
  rows: Row[],
  label: string,
  epochs: number,
  type: 'log' | 'linear',
  fromEpoch: number,
): string {
  const shown = rows.filter((r) => r.epoch >= fromEpoch);
  const svg = Plot.plot({
    document: plotDocument(),
    width: 760,
    height: 280,
    marginLeft: 56,
    marginTop: 24,
    marginRight: 16,
    style: { background: 'white', fontSize: '11px' },
    x: {
      label: 'epoch',
      domain: [fromEpoch, epochs],
      ticks: Array.from({ length: epochs + 1 - fromEpoch }, (_, i) => i + fromEpoch),
      tickFormat: 'd',
      grid: true,
    },
    y: { type, label, grid: true, ...(type === 'log' ? { tickFormat: '~g' } : {}) },
    color,
    marks: [
      // The band: the range over seeds.
      Plot.areaY(shown, {
        x: 'epoch',
        y1: 'min',
        y2: 'max',
        z: 'series',
        fill: 'optimizer',
        fillOpacity: 0.18,
      }),
      // strokeDasharray is a constant of a mark, not a channel: one line mark per dash pattern.
      ...[...new Set(shown.map((r) => r.dashed))].map((dash) =>
        Plot.line(
          shown.filter((r) => r.dashed === dash),
          {
            x: 'epoch',
            y: 'mean',
            z: 'series',
            stroke: 'optimizer',
            strokeWidth: dash === 'none' ? 1.8 : 2.4,
            strokeDasharray: dash,
          },
        ),
      ),
      Plot.dot(shown, { x: 'epoch', y: 'mean', stroke: 'optimizer', fill: 'optimizer', r: 2 }),
    ],
  }) as unknown as { outerHTML: string };
  return svg.outerHTML;
}

/**
 * Training loss and validation accuracy per epoch of the chosen settings: the mean over seeds as a
 * line, the range over seeds as a band; single runs on other backends dashed (tfjs cpu) or dotted
 * (ONNX Runtime).
 */
export function curvesPlot(
  seedRuns: Record<OptimizerName, RunResult[]>,
  extra: readonly RunResult[],
  epochs: number,
  title: string,
): string {
  const rows: { loss: Row[]; accuracy: Row[] } = { loss: [], accuracy: [] };
  const add = (series: string, optimizer: string, runs: RunResult[], dashed: string) => {
    const a = aggregateSeeds(runs);
    for (const e of a.epochs) {
      rows.loss.push({ series, optimizer, epoch: e.epoch, dashed, ...pick(e.trainLoss) });
      rows.accuracy.push({ series, optimizer, epoch: e.epoch, dashed, ...pick(e.validationAccuracy) });
    }
  };
  for (const name of OPTIMIZERS) add(name, name, seedRuns[name], 'none');
  for (const r of extra) add(`${r.spec.name} ${r.backend}`, r.spec.name, [r], dashOf(r.backend));
  const seeds = seedRuns.AccSGD.length;
  return figure({
    title,
    subtitle: `Line: mean over ${seeds} seeds; band: range over the seeds. Chosen on the validation split.`,
    legend: [
      ...OPTIMIZERS.map((n) => ({
        label: `${OPTIMIZER_LABELS[n]} lr=${seedRuns[n][0]!.spec.lr}`,
        color: COLORS[n]!,
        band: true,
      })),
      ...extra.map((r) => ({
        label: `AccSGD on ${r.backend} (seed ${r.seed})`,
        color: COLORS[r.spec.name]!,
        dash: dashOf(r.backend),
      })),
    ],
    panels: [
      {
        heading: 'Training loss (mean over the epoch; epoch 0: initial)',
        svg: panel(rows.loss, 'loss', epochs, 'log', 0),
      },
      { heading: 'Validation accuracy', svg: panel(rows.accuracy, 'accuracy', epochs, 'linear', 1) },
    ],
    panelWidth: 760,
    panelHeight: 280,
    columns: 1,
  });
}

function pick(s: { mean: number; min: number; max: number }) {
  return { mean: s.mean, min: s.min, max: s.max };
}

/**
 * Validation accuracy against the steady-state step (lr / (1 - momentum) for heavy ball,
 * lr * smallConst * (1 + xi) / (1 + smallConst) for AccSGD), one line per AccSGD (kappa, xi) and
 * one for heavy ball: where the peaks line up, matching steps is the mapping.
 */
export function mappingPlot(runs: readonly RunResult[], analysis: MappingAnalysis, title: string): string {
  const data = runs
    .filter((r) => !r.diverged)
    .map((r) => ({
      series:
        r.spec.name === 'Momentum'
          ? `heavy ball (momentum ${MOMENTUM})`
          : `AccSGD kappa=${r.spec.kappa} xi=${r.spec.xi}`,
      step: r.spec.name === 'Momentum' ? momentumStep(r.spec.lr) : accsgdStep(r.spec.lr, r.spec.xi!),
      accuracy: r.epochs[r.epochs.length - 1]!.validationAccuracy,
    }));
  const series = [...new Set(data.map((d) => d.series))];
  const palette = [
    '#f28e2b',
    '#4e79a7',
    '#e15759',
    '#76b7b2',
    '#59a14f',
    '#edc948',
    '#b07aa1',
    '#ff9da7',
    '#9c755f',
    '#bab0ac',
  ];
  const colors = Object.fromEntries(series.map((s, i) => [s, palette[i % palette.length]!]));
  const best = Math.max(...data.map((d) => d.accuracy));
  const svg = Plot.plot({
    document: plotDocument(),
    width: 760,
    height: 360,
    marginLeft: 56,
    marginTop: 24,
    style: { background: 'white', fontSize: '11px' },
    x: { type: 'log', label: 'steady-state step per unit gradient', grid: true, tickFormat: '~g' },
    y: { label: 'final validation accuracy', grid: true, domain: [Math.max(0.8, best - 0.1), best + 0.005] },
    color: { domain: series, range: series.map((s) => colors[s]!) },
    marks: [
      Plot.line(data, {
        x: 'step',
        y: 'accuracy',
        stroke: 'series',
        sort: 'step',
        strokeWidth: (d: { series: string }) => (d.series.startsWith('heavy') ? 3 : 1.4),
        clip: true,
      }),
      Plot.dot(data, { x: 'step', y: 'accuracy', fill: 'series', r: 2.5, clip: true }),
      Plot.ruleX([momentumStep(analysis.momentum.lr)], { stroke: '#f28e2b', strokeDasharray: '4,3' }),
    ],
  }) as unknown as { outerHTML: string };
  return figure({
    title,
    subtitle: `Dashed rule: heavy ball's best step (lr ${analysis.momentum.lr} / (1 − ${MOMENTUM})); points below ${escapeXml(String(Math.max(0.8, best - 0.1).toFixed(2)))} are cut off`,
    legend: series.map((s) => ({ label: s, color: colors[s]! })),
    panels: [
      { heading: 'Validation accuracy after the short run, by steady-state step', svg: svg.outerHTML },
    ],
    panelWidth: 760,
    panelHeight: 360,
    columns: 1,
  });
}
