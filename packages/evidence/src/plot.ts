import * as Plot from '@observablehq/plot';
import { parseHTML } from 'linkedom';
import type { Cell } from './experiment.js';

/** The log-log plot of iterations against kappa, one panel per distribution, as a standalone SVG. */
export function iterationsPlot(cells: readonly Cell[]): string {
  const { document } = parseHTML('<!doctype html><html><body></body></html>');
  const data = cells
    .filter((c) => Number.isFinite(c.iterations))
    .map((c) => ({
      distribution: c.distribution,
      kappa: c.kappa,
      iterations: c.iterations,
      method: c.method,
    }));
  const svg = Plot.plot({
    document: document as unknown as Document,
    width: 760,
    height: 380,
    marginRight: 60,
    style: { background: 'white', fontSize: '12px' },
    x: { type: 'log', base: 2, label: 'condition number kappa', grid: true },
    y: { type: 'log', label: 'iterations to E||w - w*||²_H ≤ 1e-4 × initial', grid: true },
    fx: { label: null },
    color: { domain: ['SGD', 'HB', 'NAG', 'AccSGD'] },
    marks: [
      Plot.line(data, { x: 'kappa', y: 'iterations', stroke: 'method', fx: 'distribution' }),
      Plot.dot(data, {
        x: 'kappa',
        y: 'iterations',
        stroke: 'method',
        fill: 'method',
        r: 3,
        fx: 'distribution',
      }),
      // Direct labels at each line's end instead of an (HTML) legend, so the output is one SVG.
      Plot.text(
        data,
        Plot.selectLast({
          x: 'kappa',
          y: 'iterations',
          z: 'method',
          fx: 'distribution',
          text: 'method',
          fill: 'method',
          dx: 6,
          textAnchor: 'start',
        }),
      ),
    ],
  }) as unknown as { outerHTML: string };
  let out = svg.outerHTML;
  // Plot creates the element with the SVG namespace; a standalone file also needs the attribute.
  if (!out.includes('xmlns="http://www.w3.org/2000/svg"'))
    out = out.replace('<svg', '<svg xmlns="http://www.w3.org/2000/svg"');
  return `${out}\n`;
}
