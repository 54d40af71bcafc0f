import { describe, expect, it } from 'vitest';
import { evenLengths } from './section-many.js';

describe('evenLengths', () => {
  it('splits a total into lengths that differ by at most one, longest first', () => {
    const lengths = evenLengths(5_000, 1_048_576);
    expect(lengths.reduce((a, b) => a + b, 0)).toBe(1_048_576);
    expect(lengths[0]).toBe(210);
    expect(lengths[4_999]).toBe(209);
    expect(lengths.filter((n) => n === 210).length).toBe(1_048_576 % 5_000);
    expect(evenLengths(1, 7)).toEqual([7]);
    expect(evenLengths(3, 7)).toEqual([3, 2, 2]);
  });
});
