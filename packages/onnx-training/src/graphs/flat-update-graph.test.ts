import { describe, expect, it } from 'vitest';
import { buildFlatUpdateGraph, flatSegments } from './flat-update-graph.js';

describe('flatSegments', () => {
  it('keeps each group whole while it fits, never mixes groups, and gives an oversized parameter its own segment', () => {
    // Group 0: lengths 3, 4, 2 (9 > 8: a second segment from the third); group 1: 20 (over the
    // limit: alone), then 1 and 1.
    expect(flatSegments([3, 4, 2, 20, 1, 1], [3, 3], 8)).toEqual([
      { group: 0, members: [0, 1] },
      { group: 0, members: [2] },
      { group: 1, members: [3] },
      { group: 1, members: [4, 5] },
    ]);
    expect(flatSegments([5, 5], [1, 1], 100)).toEqual([
      { group: 0, members: [0] },
      { group: 1, members: [1] },
    ]);
  });
});

describe('buildFlatUpdateGraph', () => {
  it('declares a buffer only when some element continues, and masks only in the mixed mode', async () => {
    const ort = await import('onnxruntime-node');
    const inputs = async (mode: 'first' | 'later' | 'masked') => {
      const session = await ort.InferenceSession.create(buildFlatUpdateGraph(mode));
      const names = [...session.inputNames].sort();
      await session.release();
      return names;
    };
    expect(await inputs('first')).toEqual(['c1_first', 'c2', 'c3', 'c4', 'c5', 'g', 'p']);
    expect(await inputs('later')).toEqual(['buf', 'c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'g', 'p']);
    expect(await inputs('masked')).toEqual([
      'buf',
      'c0',
      'c1',
      'c1_first',
      'c2',
      'c3',
      'c4',
      'c5',
      'first',
      'g',
      'p',
      'present',
    ]);
  });
});
