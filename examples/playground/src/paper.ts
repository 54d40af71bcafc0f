// The linear-regression experiment of packages/evidence (Kidambi et al., ICLR 2018, as the evidence
// package reproduces it), in the page: the same problems, grids and exact expected-error recursion,
// imported from its sources rather than copied.
import { gridFor, PRESETS } from '@accsgd/evidence/src/experiment.ts';
import { expectedIterationsToTarget } from '@accsgd/evidence/src/moments.ts';
import { METHODS, type MethodName } from '@accsgd/evidence/src/optimizers.ts';
import { makeProblem } from '@accsgd/evidence/src/problems.ts';
import { gridSearch } from '@accsgd/evidence/src/search.ts';
import { CurveChart } from './chart.js';

export interface PaperCell {
  kappa: number;
  method: MethodName;
  /** Expected iterations to the target at the method's best grid setting (Infinity: none reached it). */
  iterations: number;
}

/** One (kappa, method) cell: grid search over the evidence package's quick grid, exact estimator. */
export function paperCell(kappa: number, method: MethodName): PaperCell {
  const preset = PRESETS.quick;
  const problem = makeProblem('gaussian', kappa);
  const budget = Math.round(preset.capPerKappa * kappa + 1000);
  const search = gridSearch(
    gridFor(method, kappa, preset),
    (hyper, limit) =>
      expectedIterationsToTarget(problem, method, hyper, {
        tolerance: preset.tolerance,
        maxIterations: limit,
      }),
    { budget },
  );
  return { kappa, method, iterations: search.cost };
}

/** Condition numbers 2^4, 2^5, ... up to the slider's 10^value. */
export function kappasUpTo(log10Max: number): number[] {
  const out: number[] = [];
  for (let e = 4; 2 ** e <= 10 ** log10Max + 1e-9; e++) out.push(2 ** e);
  return out;
}

export function setupPaperPanel(): void {
  const slider = document.getElementById('paper-kappa') as HTMLInputElement;
  const output = document.getElementById('paper-kappa-value') as HTMLOutputElement;
  const button = document.getElementById('paper-run') as HTMLButtonElement;
  const table = document.getElementById('paper-table') as HTMLTableElement;
  const chart = new CurveChart(
    document.getElementById('paper-chart')!,
    'Iterations to target (log-log)',
    'iterations',
    true,
    {
      xLabel: 'kappa',
      logX: true,
    },
  );
  const show = () => {
    output.value = String(Math.round(10 ** Number(slider.value)));
  };
  slider.addEventListener('input', show);
  show();
  let running = false;
  button.addEventListener('click', async () => {
    if (running) return;
    running = true;
    button.disabled = true;
    const kappas = kappasUpTo(Number(slider.value));
    const cells: PaperCell[] = [];
    table.tHead!.innerHTML = `<tr><th scope="col">kappa</th>${METHODS.map((m) => `<th scope="col">${m}</th>`).join('')}</tr>`;
    const body = table.tBodies[0]!;
    body.innerHTML = '';
    try {
      for (const kappa of kappas) {
        const tr = body.insertRow();
        tr.insertCell().textContent = String(kappa);
        for (const method of METHODS) {
          // Yield between cells so the table and the plot fill in as they are computed.
          await new Promise((resolve) => setTimeout(resolve, 0));
          const cell = paperCell(kappa, method);
          cells.push(cell);
          tr.insertCell().textContent = Number.isFinite(cell.iterations)
            ? String(cell.iterations)
            : 'not reached';
          chart.update(
            METHODS.map((m) => ({
              label: m,
              points: cells
                .filter((c) => c.method === m && Number.isFinite(c.iterations))
                .map((c) => ({ x: c.kappa, y: c.iterations })),
            })),
          );
        }
      }
    } finally {
      running = false;
      button.disabled = false;
    }
  });
}
