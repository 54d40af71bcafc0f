import * as Plot from '@observablehq/plot';
import type { Cell } from './experiment.js';
import { figure, METHOD_COLORS, METHOD_LABELS, plotDocument } from './figure.js';
import { METHODS } from './optimizers.js';
import type { PaperCell } from './paper.js';
import { DISTRIBUTIONS } from './problems.js';

interface Point {
  kappa: number;
  y: number;
  series: string;
  method: string;
}

const color = { domain: Object.keys(METHOD_COLORS), range: Object.values(METHOD_COLORS) };

/** One log-log panel of y against kappa, one line per series (dashed when `dashed(series)`). */
function panel(data: Point[], yLabel: string, dashed: (series: string) => boolean): string {
  const solid = data.filter((d) => !dashed(d.series));
  const dash = data.filter((d) => dashed(d.series));
  const svg = Plot.plot({
    document: plotDocument(),
    width: 380,
    height: 330,
    marginLeft: 56,
    marginTop: 24,
    marginRight: 16,
    style: { background: 'white', fontSize: '11px' },
    x: {
      type: 'log',
      base: 2,
      label: 'condition number κ',
      grid: true,
      tickFormat: (k: number) => `2^${Math.log2(k)}`,
    },
    y: { type: 'log', label: yLabel, grid: true, tickFormat: '~s' },
    color,
    marks: [
      Plot.line(solid, { x: 'kappa', y: 'y', z: 'series', stroke: 'method', strokeWidth: 1.8 }),
      Plot.line(dash, {
        x: 'kappa',
        y: 'y',
        z: 'series',
        stroke: 'method',
        strokeWidth: 1.8,
        strokeDasharray: '5,4',
      }),
      Plot.dot(data, { x: 'kappa', y: 'y', stroke: 'method', fill: 'method', r: 2.5 }),
    ],
  }) as unknown as { outerHTML: string };
  return svg.outerHTML;
}

/** Iterations against kappa (log-log), one panel per distribution, as a standalone SVG. */
export function iterationsPlot(cells: readonly Cell[]): string {
  const panels = DISTRIBUTIONS.map((d) => ({
    heading: `${d} inputs`,
    svg: panel(
      cells
        .filter((c) => c.distribution === d && Number.isFinite(c.iterations))
        .map((c) => ({ kappa: c.kappa, y: c.iterations, series: c.method, method: c.method })),
      'iterations to reach 1e-4 × the initial error',
      () => false,
    ),
  }));
  return figure({
    title: 'Stochastic linear regression: iterations to 1e-4 of the initial error vs condition number',
    subtitle:
      'Each method at its best grid setting (exact expected error); slope ≈ 1: no acceleration, ≈ 0.5: accelerated',
    legend: METHODS.map((m) => ({ label: METHOD_LABELS[m]!, color: METHOD_COLORS[m]! })),
    panels,
    panelWidth: 380,
    panelHeight: 330,
    columns: 2,
  });
}

/**
 * The paper protocol's 1/rate against kappa (log-log): each method on the paper's grid or fixed
 * setting (solid) and HB and NAG on our extended grid (dashed).
 */
export function inverseRatePlot(cells: readonly PaperCell[]): string {
  const panels = DISTRIBUTIONS.map((d) => ({
    heading: `${d} inputs`,
    svg: panel(
      cells
        .filter((c) => c.distribution === d && c.eligibility === 'all' && c.summary.rate > 0)
        .map((c) => ({
          kappa: c.kappa,
          y: 1 / c.summary.rate,
          series: `${c.method}/${c.grid}`,
          method: c.method,
        })),
      '1 / rate, rate = (log f(w0) − log f(wt)) / t',
      (s) => s.endsWith('/extended'),
    ),
  }));
  return figure({
    title: "Stochastic linear regression, the paper's protocol: 1/rate vs condition number",
    subtitle:
      '100 runs of t = 5κ iterations, converged runs only; solid: paper grid / fixed settings, dashed: our extended grid',
    legend: [
      ...METHODS.map((m) => ({ label: METHOD_LABELS[m]!, color: METHOD_COLORS[m]! })),
      { label: 'heavy ball, extended grid', color: METHOD_COLORS.HB!, dash: '5,4' },
      { label: 'Nesterov, extended grid', color: METHOD_COLORS.NAG!, dash: '5,4' },
    ],
    panels,
    panelWidth: 380,
    panelHeight: 330,
    columns: 2,
  });
}
