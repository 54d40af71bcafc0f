import { describe, expect, it } from 'vitest';
import {
  formatMs,
  formatRatio,
  formatRatioWithTarget,
  formatStepsPerSecond,
  formatTarget,
  median,
  ratio,
  stepsPerBlock,
  verdict,
} from './stats.js';

describe('median', () => {
  it('takes the middle value of an odd count, whatever the order', () => {
    expect(median([5, 1, 4, 2, 3])).toBe(3);
    expect(median([7])).toBe(7);
  });
  it('averages the two middle values of an even count', () => {
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });
  it('does not reorder its input and rejects an empty list', () => {
    const xs = [3, 1, 2];
    median(xs);
    expect(xs).toEqual([3, 1, 2]);
    expect(() => median([])).toThrow(/no values/);
  });
});

describe('ratio and formatting', () => {
  it('divides, and gives NaN for a missing, non-finite or non-positive baseline', () => {
    expect(ratio(3, 2)).toBe(1.5);
    expect(ratio(3, 0)).toBeNaN();
    expect(ratio(undefined, 2)).toBeNaN();
    expect(ratio(3, null)).toBeNaN();
    expect(ratio(Number.POSITIVE_INFINITY, 2)).toBeNaN();
  });
  it('formats ratios and milliseconds', () => {
    expect(formatRatio(0.4567)).toBe('0.46x');
    expect(formatRatio(0.04567)).toBe('0.046x');
    expect(formatRatio(12)).toBe('12.00x');
    expect(formatRatio(Number.NaN)).toBe('n/a');
    expect(formatMs(Math.E)).toBe('2.72');
    expect(formatMs(123.456)).toBe('123.5');
    expect(formatMs(4567.8)).toBe('4568');
    expect(formatMs(undefined)).toBe('n/a');
  });
  it('formats steps per second with fewer decimals as the rate grows', () => {
    expect(formatStepsPerSecond(1.8157)).toBe('1.82');
    expect(formatStepsPerSecond(90.016)).toBe('90.0');
    expect(formatStepsPerSecond(270.16)).toBe('270');
    expect(formatStepsPerSecond(Number.POSITIVE_INFINITY)).toBe('n/a');
  });
});

describe('targets', () => {
  it('says met or missed at and around the limit, n/a without a value', () => {
    expect(verdict(0.5, { op: '<=', limit: 0.5 })).toBe('met');
    expect(verdict(0.51, { op: '<=', limit: 0.5 })).toBe('missed');
    expect(verdict(1, { op: '<', limit: 1 })).toBe('missed');
    expect(verdict(3, { op: '>=', limit: 3 })).toBe('met');
    expect(verdict(2.99, { op: '>=', limit: 3 })).toBe('missed');
    expect(verdict(1, { op: '>', limit: 1 })).toBe('missed');
    expect(verdict(1.01, { op: '>', limit: 1 })).toBe('met');
    expect(verdict(Number.NaN, { op: '<=', limit: 1 })).toBe('n/a');
  });
  it('formats a target and a ratio beside it', () => {
    expect(formatTarget({ op: '<=', limit: 1.5 })).toBe('≤ 1.5x');
    expect(formatTarget({ op: '>=', limit: 3 })).toBe('≥ 3x');
    expect(formatRatioWithTarget(0.42, { op: '<=', limit: 0.5 })).toBe('0.42x (≤ 0.5x: met)');
    expect(formatRatioWithTarget(7.1, { op: '<=', limit: 1.5 })).toBe('7.10x (≤ 1.5x: missed)');
    expect(formatRatioWithTarget(0.42)).toBe('0.42x');
  });
});

describe('stepsPerBlock', () => {
  it('fills the block time, within the bounds', () => {
    // 0.25 s / 12 ms = 20.8 -> 21 steps; 0.25 s / 0.8 s = 0.31 -> the minimum, 3.
    expect(stepsPerBlock(0.012, 0.25, 3, 100)).toBe(21);
    expect(stepsPerBlock(0.8, 0.25, 3, 100)).toBe(3);
    // 0.25 s / 1 ms = 250 -> the maximum, 100.
    expect(stepsPerBlock(0.001, 0.25, 3, 100)).toBe(100);
  });
  it('falls back to the minimum for a step time that is not a positive finite number', () => {
    expect(stepsPerBlock(0, 0.25, 3, 100)).toBe(3);
    expect(stepsPerBlock(Number.NaN, 0.25, 3, 100)).toBe(3);
  });
});
