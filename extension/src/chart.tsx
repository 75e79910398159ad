/**
 * `LineChart`: one curve of several runs overlaid in a small SVG chart, with round ticks on both
 * axes. Plain React (no JupyterLab imports, no chart library); the legend lives outside the plot,
 * in the view that holds the charts, so no label ever hides data.
 */

import * as React from 'react';

import { CurvePoint } from './api';
import { downsample, extentOf, niceTicks, pathOf, project, strokeOf } from './curves';
import { formatMetric } from './format';

export interface IChartSeries {
  runId: string;
  /** The run's place in the comparison: its colour and dash. */
  index: number;
  points: readonly CurvePoint[];
}

const WIDTH = 480;
const HEIGHT = 200;
const MARGIN = { left: 52, right: 8, top: 8, bottom: 24 };
const PLOT_W = WIDTH - MARGIN.left - MARGIN.right;
const PLOT_H = HEIGHT - MARGIN.top - MARGIN.bottom;

/** A tick label short enough for the axis: 1.2k, 0.0005, 3e-5. */
export function tickLabel(value: number): string {
  const magnitude = Math.abs(value);
  if (magnitude >= 1000) {
    return `${Number((value / 1000).toPrecision(3))}k`;
  }
  if (magnitude !== 0 && magnitude < 1e-3) {
    return value.toExponential(0);
  }
  return String(Number(value.toPrecision(3)));
}

export function LineChart(props: { name: string; series: readonly IChartSeries[] }): JSX.Element {
  const { name, series } = props;
  const extent = extentOf(series.map(s => s.points));
  return (
    <figure className="ftkit-Chart" data-curve={name}>
      <figcaption className="ftkit-Chart-title">{name}</figcaption>
      {!extent ? (
        <div className="ftkit-Muted">no points yet</div>
      ) : (
        <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={`${name} by step`}>
          <g transform={`translate(${MARGIN.left},${MARGIN.top})`}>
            {niceTicks(...extent.y, 4)
              .filter(v => v >= extent.y[0] && v <= extent.y[1])
              .map(v => {
                const y = PLOT_H - ((v - extent.y[0]) / (extent.y[1] - extent.y[0])) * PLOT_H;
                return (
                  <g key={`y${v}`} className="ftkit-Chart-tick">
                    <line x1={0} x2={PLOT_W} y1={y} y2={y} />
                    <text x={-4} y={y} dy="0.32em" textAnchor="end">
                      {tickLabel(v)}
                    </text>
                  </g>
                );
              })}
            {niceTicks(...extent.x, 5)
              .filter(v => v >= extent.x[0] && v <= extent.x[1])
              .map(v => {
                const x = ((v - extent.x[0]) / (extent.x[1] - extent.x[0])) * PLOT_W;
                return (
                  <text key={`x${v}`} className="ftkit-Chart-tick" x={x} y={PLOT_H + 16} textAnchor="middle">
                    {tickLabel(v)}
                  </text>
                );
              })}
            <rect className="ftkit-Chart-frame" width={PLOT_W} height={PLOT_H} />
            {series.map(s => {
              const stroke = strokeOf(s.index);
              const points = downsample(s.points, extent.x[0], extent.x[1], PLOT_W);
              const last = s.points[s.points.length - 1];
              // a line through one point draws nothing: a dot shows it (a test score, a single evaluation)
              const dot = points.length === 1 ? project(points[0], extent, PLOT_W, PLOT_H) : null;
              return (
                <g key={s.runId}>
                  <path data-run-id={s.runId} className="ftkit-Chart-line" d={pathOf(points, extent, PLOT_W, PLOT_H)} stroke={stroke.colour} strokeDasharray={stroke.dash}>
                    {last && <title>{`step ${last[0]}: ${formatMetric(last[1])}`}</title>}
                  </path>
                  {dot && <circle className="ftkit-Chart-dot" cx={dot[0]} cy={dot[1]} r={3} fill={stroke.colour} />}
                </g>
              );
            })}
          </g>
        </svg>
      )}
    </figure>
  );
}
