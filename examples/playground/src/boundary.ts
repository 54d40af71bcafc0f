import type { Run } from './runs.js';

const GRID = 48;
const X_RANGE = [-1.8, 1.8] as const;
const Y_RANGE = [-1.4, 1.4] as const;

/** The toy model's decision boundary: P(class 1) over a grid, test points on top. */
export async function drawBoundary(canvas: HTMLCanvasElement, run: Run): Promise<void> {
  const xs = new Float32Array(GRID * GRID * 2);
  for (let j = 0; j < GRID; j++)
    for (let i = 0; i < GRID; i++) {
      const k = (j * GRID + i) * 2;
      xs[k] = X_RANGE[0] + ((i + 0.5) / GRID) * (X_RANGE[1] - X_RANGE[0]);
      xs[k + 1] = Y_RANGE[1] - ((j + 0.5) / GRID) * (Y_RANGE[1] - Y_RANGE[0]);
    }
  const logits = await run.trainer.predict(xs, GRID * GRID);
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  const cell = canvas.width / GRID;
  for (let k = 0; k < GRID * GRID; k++) {
    const p1 = 1 / (1 + Math.exp(logits[k * 2]! - logits[k * 2 + 1]!));
    const r = Math.round(255 - 120 * p1);
    const b = Math.round(135 + 120 * p1);
    ctx.fillStyle = `rgb(${r}, 200, ${b})`;
    ctx.fillRect((k % GRID) * cell, Math.floor(k / GRID) * cell, cell + 1, cell + 1);
  }
  const { test } = run.data;
  for (let n = 0; n < test.count; n++) {
    const px = ((test.x[n * 2]! - X_RANGE[0]) / (X_RANGE[1] - X_RANGE[0])) * canvas.width;
    const py = ((Y_RANGE[1] - test.x[n * 2 + 1]!) / (Y_RANGE[1] - Y_RANGE[0])) * canvas.height;
    ctx.fillStyle = test.y[n] === 1 ? '#1f3fb4' : '#b4231f';
    ctx.beginPath();
    ctx.arc(px, py, 2.2, 0, 2 * Math.PI);
    ctx.fill();
  }
}
