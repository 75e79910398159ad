/**
 * The arithmetic behind the comparison's line charts (no DOM): the data's extent, round tick
 * values, one SVG path per run, and a downsampling to the chart's pixel width, so twenty runs of
 * thousands of points each draw as fast as a few hundred.
 */

import { CurvePoint } from './api';

export interface IExtent {
  x: [number, number];
  y: [number, number];
}

/** Distinct hues; runs past the tenth reuse them dashed (see `strokeOf`). */
const PALETTE = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf'
];

/** The colour and dash of the `index`-th run, the same in every chart and in the legend. */
export function strokeOf(index: number): { colour: string; dash: string | undefined } {
  return {
    colour: PALETTE[index % PALETTE.length],
    dash: Math.floor(index / PALETTE.length) % 2 ? '5 3' : undefined
  };
}

/** The smallest box holding every finite point, or null when there is none. */
export function extentOf(series: readonly (readonly CurvePoint[])[]): IExtent | null {
  let x0 = Infinity;
  let x1 = -Infinity;
  let y0 = Infinity;
  let y1 = -Infinity;
  for (const points of series) {
    for (const [x, y] of points) {
      if (!isFinite(x) || !isFinite(y)) {
        continue;
      }
      x0 = Math.min(x0, x);
      x1 = Math.max(x1, x);
      y0 = Math.min(y0, y);
      y1 = Math.max(y1, y);
    }
  }
  if (x0 > x1) {
    return null;
  }
  // a single point or a flat line still needs a box with some height and width
  const pad = (lo: number, hi: number): [number, number] =>
    lo === hi ? [lo - (Math.abs(lo) || 1) / 2, hi + (Math.abs(hi) || 1) / 2] : [lo, hi];
  return { x: pad(x0, x1), y: pad(y0, y1) };
}

/** About `count` round values (1, 2 or 5 times a power of ten apart) within [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  const span = hi - lo;
  if (!(span > 0) || !isFinite(span)) {
    return [lo];
  }
  const raw = span / Math.max(1, count);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const error = raw / power; // in [1, 10): round to the nearest of 1, 2, 5, 10 (on a log scale, as d3 does)
  const step = power * (error >= Math.sqrt(50) ? 10 : error >= Math.sqrt(10) ? 5 : error >= Math.sqrt(2) ? 2 : 1);
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Number(v.toPrecision(12))); // no 0.30000000000000004
  }
  return ticks;
}

/**
 * At most two points per pixel column: each column's lowest and highest, in step order, so spikes
 * survive and the line looks the same as with every point. Points outside [x0, x1] are dropped.
 */
export function downsample(points: readonly CurvePoint[], x0: number, x1: number, columns: number): CurvePoint[] {
  if (points.length <= 2 * columns || !(x1 > x0)) {
    return points.filter(([x, y]) => isFinite(x) && isFinite(y));
  }
  const out: CurvePoint[] = [];
  let column = -1;
  let low: CurvePoint | null = null;
  let high: CurvePoint | null = null;
  const flush = () => {
    if (low && high) {
      out.push(...(low === high ? [low] : low[0] <= high[0] ? [low, high] : [high, low]));
    }
  };
  for (const point of points) {
    const [x, y] = point;
    if (!isFinite(x) || !isFinite(y) || x < x0 || x > x1) {
      continue;
    }
    const c = Math.min(columns - 1, Math.floor(((x - x0) / (x1 - x0)) * columns));
    if (c !== column) {
      flush();
      column = c;
      low = high = point;
    } else if (y < (low as CurvePoint)[1]) {
      low = point;
    } else if (y > (high as CurvePoint)[1]) {
      high = point;
    }
  }
  flush();
  return out;
}

/** Where `point` lies in a `width` × `height` box mapped by `extent` (y grows upwards). */
export function project(point: CurvePoint, extent: IExtent, width: number, height: number): [number, number] {
  const [x0, x1] = extent.x;
  const [y0, y1] = extent.y;
  return [((point[0] - x0) / (x1 - x0)) * width, height - ((point[1] - y0) / (y1 - y0)) * height];
}

/** The SVG path through `points` in that box. */
export function pathOf(points: readonly CurvePoint[], extent: IExtent, width: number, height: number): string {
  return points
    .map((point, i) => {
      const [x, y] = project(point, extent, width, height);
      return `${i ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join('');
}
