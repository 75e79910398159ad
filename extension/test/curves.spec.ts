/** The comparison charts' arithmetic: extents, round ticks, paths and downsampling to the pixel width. */

import { describe, expect, it } from 'vitest';

import { CurvePoint } from '../src/api';
import { downsample, extentOf, niceTicks, pathOf, strokeOf } from '../src/curves';

describe('extentOf', () => {
  it('spans every finite point of every series', () => {
    expect(extentOf([[[0, 2], [10, 1]], [[5, 3], [NaN, 100]]])).toEqual({ x: [0, 10], y: [1, 3] });
  });

  it('gives a single point a box around it, and no points no box', () => {
    expect(extentOf([[[4, 0.5]]])).toEqual({ x: [2, 6], y: [0.25, 0.75] });
    expect(extentOf([[], []])).toBeNull();
  });
});

describe('niceTicks', () => {
  it('steps by 1, 2 or 5 times a power of ten', () => {
    expect(niceTicks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(3, 497, 5)).toEqual([100, 200, 300, 400]);
    expect(niceTicks(0.31, 0.42, 4)).toEqual([0.32, 0.34, 0.36, 0.38, 0.4, 0.42]);
  });
});

describe('downsample', () => {
  it('keeps each pixel column to its lowest and highest point, in step order, spikes included', () => {
    const points: CurvePoint[] = Array.from({ length: 10_000 }, (_, i) => [i, i === 5_003 ? 50 : Math.sin(i)]);
    const out = downsample(points, 0, 9_999, 400);
    expect(out.length).toBeLessThanOrEqual(800);
    expect(out.some(([x, y]) => x === 5_003 && y === 50)).toBe(true);
    expect(out.map(([x]) => x)).toEqual([...out.map(([x]) => x)].sort((a, b) => a - b));
    expect(Math.min(...out.map(([, y]) => y))).toBe(Math.min(...points.map(([, y]) => y)));
  });

  it('leaves a curve with fewer points than pixels as it is', () => {
    const points: CurvePoint[] = [[0, 1], [1, 0.5], [2, 0.25]];
    expect(downsample(points, 0, 2, 400)).toEqual(points);
  });
});

describe('pathOf', () => {
  it('maps steps left to right and higher values upwards', () => {
    expect(pathOf([[0, 0], [10, 1]], { x: [0, 10], y: [0, 1] }, 100, 50)).toBe('M0.0,50.0L100.0,0.0');
  });
});

describe('strokeOf', () => {
  it('gives ten runs ten colours, and the next ten the same colours dashed', () => {
    const strokes = Array.from({ length: 20 }, (_, i) => strokeOf(i));
    expect(new Set(strokes.slice(0, 10).map(s => s.colour)).size).toBe(10);
    expect(strokes[10]).toEqual({ colour: strokes[0].colour, dash: '5 3' });
    expect(strokes[3].dash).toBeUndefined();
  });
});
