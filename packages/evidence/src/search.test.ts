import { describe, expect, it } from 'vitest';
import { geometric, gridSearch, product } from './search.js';

describe('grid search', () => {
  it('finds the known optimum of a bowl, (a, b) = (3, 0.25)', () => {
    const grid = product({ a: [1, 2, 3, 4, 5], b: [0, 0.25, 0.5, 0.75] });
    const cost = (h: Record<string, number>) => 10 + 5 * (h.a! - 3) ** 2 + 40 * (h.b! - 0.25) ** 2;
    const r = gridSearch(grid, (h) => cost(h), { budget: 1000 });
    expect(r.best).toEqual({ a: 3, b: 0.25 });
    expect(r.cost).toBe(10);
    expect(r.evaluated).toBe(20);
  });

  it('passes the best-so-far minus one as the budget, and ignores results over it', () => {
    const budgets: number[] = [];
    const r = gridSearch(
      [50, 30, 40, 20],
      (c, budget) => {
        budgets.push(budget);
        return c <= budget ? c : Number.POSITIVE_INFINITY;
      },
      { budget: 100 },
    );
    expect(budgets).toEqual([100, 49, 29, 29]);
    expect(r).toMatchObject({ best: 20, cost: 20 });
  });

  it('keeps the first of equal candidates, and reports none when nothing reaches the budget', () => {
    expect(gridSearch(['x', 'y'], () => 5, { budget: 10 }).best).toBe('x');
    expect(gridSearch(['x'], () => Number.POSITIVE_INFINITY, { budget: 10 })).toMatchObject({
      best: undefined,
      cost: Number.POSITIVE_INFINITY,
    });
  });

  it('builds grids: geometric(2, 1, -2, 1) = 2, 1, 1/2, 1/4; product varies the last key fastest', () => {
    expect(geometric(2, 1, -2, 1)).toEqual([2, 1, 0.5, 0.25]);
    expect(product({ a: [1, 2], b: [3, 4] })).toEqual([
      { a: 1, b: 3 },
      { a: 1, b: 4 },
      { a: 2, b: 3 },
      { a: 2, b: 4 },
    ]);
  });
});
