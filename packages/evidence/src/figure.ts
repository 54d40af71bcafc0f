import { parseHTML } from 'linkedom';

/**
 * One standalone SVG figure: a title, a legend, then panels laid out in a grid, each under its own
 * heading. Observable Plot's facet labels and its y-axis label share the top margin and overlap,
 * and line-end labels collide where lines end close together, so panels are separate plots here
 * and the legend is drawn once.
 */
export interface LegendEntry {
  label: string;
  color: string;
  dash?: string;
  /** A band (filled rectangle) instead of a line. */
  band?: boolean;
}

export interface FigurePanel {
  heading: string;
  /** A standalone <svg> of `width` x `height` (an Observable Plot output). */
  svg: string;
}

export const METHOD_LABELS: Record<string, string> = {
  SGD: 'SGD',
  HB: 'heavy ball (HB)',
  NAG: 'Nesterov (NAG)',
  AccSGD: 'AccSGD',
};

/** Tableau 10, fixed per method so every figure uses the same colours. */
export const METHOD_COLORS: Record<string, string> = {
  SGD: '#4e79a7',
  HB: '#f28e2b',
  NAG: '#76b7b2',
  AccSGD: '#e15759',
};

export function plotDocument(): Document {
  return parseHTML('<!doctype html><html><body></body></html>').document as unknown as Document;
}

export function figure(o: {
  title: string;
  subtitle?: string;
  legend: readonly LegendEntry[];
  panels: readonly FigurePanel[];
  panelWidth: number;
  panelHeight: number;
  columns: number;
}): string {
  const width = o.columns * o.panelWidth;
  const out: string[] = [];
  let y = 20;
  out.push(`<text x="10" y="${y}" font-size="14" font-weight="bold">${escapeXml(o.title)}</text>`);
  if (o.subtitle) {
    y += 18;
    out.push(`<text x="10" y="${y}" font-size="12" fill="#444">${escapeXml(o.subtitle)}</text>`);
  }
  y += 22;
  let x = 10;
  for (const e of o.legend) {
    const w = 40 + 7 * e.label.length;
    if (x + w > width - 10) {
      x = 10;
      y += 18;
    }
    const mark = e.band
      ? `<rect x="${x}" y="${y - 5}" width="22" height="10" fill="${e.color}" fill-opacity="0.25"/><line x1="${x}" y1="${y}" x2="${x + 22}" y2="${y}" stroke="${e.color}" stroke-width="2"/>`
      : `<line x1="${x}" y1="${y}" x2="${x + 22}" y2="${y}" stroke="${e.color}" stroke-width="2"${e.dash ? ` stroke-dasharray="${e.dash}"` : ''}/><circle cx="${x + 11}" cy="${y}" r="2.5" fill="${e.color}"/>`;
    out.push(`${mark}<text x="${x + 27}" y="${y + 4}">${escapeXml(e.label)}</text>`);
    x += w;
  }
  const top = y + 14;
  const rowHeight = o.panelHeight + 24;
  o.panels.forEach((p, i) => {
    const px = (i % o.columns) * o.panelWidth;
    const py = top + Math.floor(i / o.columns) * rowHeight;
    out.push(
      `<text x="${px + 10}" y="${py + 16}" font-size="13" font-weight="bold">${escapeXml(p.heading)}</text>`,
    );
    out.push(
      p.svg
        .replace('<svg', `<svg x="${px}" y="${py + 24}"`)
        .replace(/ xmlns="http:\/\/www\.w3\.org\/2000\/svg"/, ''),
    );
  });
  const height = top + Math.ceil(o.panels.length / o.columns) * rowHeight + 4;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="12">`,
    '<rect width="100%" height="100%" fill="white"/>',
    ...out,
    '</svg>',
    '',
  ].join('\n');
}

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
