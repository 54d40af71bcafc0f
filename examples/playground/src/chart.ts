import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

const COLORS = ['#d62728', '#1f77b4', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];

export interface Curve {
  label: string;
  /** y at x = 1, 2, ... (x is the step). */
  points: { x: number; y: number }[];
}

/** A line chart of curves over steps (uPlot), rebuilt when the set of curves changes. */
export class CurveChart {
  private plot: uPlot | undefined;
  private labels = '';
  constructor(
    private readonly host: HTMLElement,
    private readonly title: string,
    private readonly yLabel: string,
    private readonly log = false,
    private readonly options: { xLabel?: string; logX?: boolean } = {},
  ) {}

  update(curves: Curve[]): void {
    const xs = [...new Set(curves.flatMap((c) => c.points.map((p) => p.x)))].sort((a, b) => a - b);
    const data: uPlot.AlignedData = [
      xs,
      ...curves.map((c) => {
        const byX = new Map(c.points.map((p) => [p.x, p.y]));
        return xs.map((x) => byX.get(x) ?? null);
      }),
    ];
    const labels = curves.map((c) => c.label).join('\u0000');
    const width = Math.max(280, Math.min(this.host.clientWidth || 560, 720));
    if (!this.plot || labels !== this.labels) {
      this.plot?.destroy();
      this.labels = labels;
      this.plot = new uPlot(
        {
          title: this.title,
          width,
          height: 260,
          scales: {
            x: this.options.logX ? { time: false, distr: 3 } : { time: false },
            y: this.log ? { distr: 3 } : {},
          },
          axes: [{ label: this.options.xLabel ?? 'step' }, { label: this.yLabel }],
          series: [
            { label: this.options.xLabel ?? 'step' },
            ...curves.map((c, i) => ({
              label: c.label,
              stroke: COLORS[i % COLORS.length]!,
              width: 2,
              spanGaps: true,
              points: { show: c.points.length < 3 },
            })),
          ],
        },
        data,
        this.host,
      );
    } else {
      this.plot.setData(data);
    }
  }

  resize(): void {
    if (this.plot)
      this.plot.setSize({ width: Math.max(280, Math.min(this.host.clientWidth, 720)), height: 260 });
  }

  clear(): void {
    this.plot?.destroy();
    this.plot = undefined;
    this.labels = '';
  }
}

/** Number of curve points drawn: the chart layer's own canvas is what the tests look for. */
export function renderedCanvas(host: HTMLElement): HTMLCanvasElement | null {
  return host.querySelector('canvas');
}
