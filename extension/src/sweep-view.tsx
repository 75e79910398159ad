/**
 * `SweepView`: a sweep in the main area. Its name and state (a search's: searching, trials done of N,
 * how many at a time, its pruner), its best run; a table with a row per run (or per trial whose run
 * never started): a box to tick it for comparison, its trial number, name, status (a trial the pruner
 * stopped reads "pruned" and is greyed), its value of each searched setting and its metric, the best
 * marked; "Compare selected" opens the ticked runs side by side, "Stop sweep" stops it while it works.
 * Under the table, one small scatter per searched setting: the metric against the setting, pruned runs
 * drawn hollow. Plain React (no chart library); run-provided text only in text nodes and titles.
 */

import * as React from 'react';

import { ISweepEntry, ISweepSummary } from './api';
import { tickLabel } from './chart';
import { extentOf, niceTicks } from './curves';
import { formatMetric, formatValue } from './format';
import {
  entryKey,
  entryName,
  isBest,
  isSweepActive,
  ISettingPlot,
  settingPlot,
  shortKey,
  SweepModel,
  sweepStateText
} from './sweep';
import { useChanged } from './hooks';

export interface ISweepViewProps {
  summary: ISweepSummary;
  /** The ticked runs and the stop under way. */
  model: SweepModel;
  /** Open the runs side by side (the compare view). */
  onCompare: (runIds: string[]) => void;
  onStop: () => void;
}

export function SweepView({ summary, model, onCompare, onStop }: ISweepViewProps): JSX.Element {
  useChanged(model); // the runs ticked, a stop asked (the summary's loads re-render the widget)
  const { keys, best } = summary;
  const metric = summary.metric ?? 'metric';
  const selected = model.selected;
  const active = isSweepActive(summary);
  return (
    <div className="ftkit-SweepView" data-sweep={summary.sweep} data-state={summary.state}>
      <h2>
        Sweep {summary.sweep} <span className="ftkit-Muted">({summary.kind})</span>
      </h2>
      <div className="ftkit-SweepView-state">{sweepStateText(summary)}</div>
      {summary.error && (
        <div className="ftkit-Error ftkit-SweepView-error" role="alert">
          {summary.error}
        </div>
      )}
      <div className="ftkit-SweepView-best">
        {best && best.value !== null ? (
          <>
            best: <b>{entryName(best)}</b> ({metric} {formatMetric(best.value)})
          </>
        ) : (
          'no run has a validation score yet'
        )}
      </div>
      <div className="ftkit-SweepView-actions">
        <button
          className="jp-Button jp-mod-styled jp-mod-accept ftkit-SweepView-compare"
          disabled={!model.canCompare}
          title={model.canCompare ? 'Open the ticked runs side by side' : 'Tick two runs or more to compare them'}
          onClick={() => onCompare(selected)}
        >
          Compare selected ({selected.length})
        </button>
        {active &&
          (model.isStopping ? (
            <span className="ftkit-Muted ftkit-SweepView-stopping">stopping…</span>
          ) : (
            <button
              className="jp-Button jp-mod-styled jp-mod-warn ftkit-SweepView-stop"
              title={summary.kind === 'search' ? 'Ask no more trials and stop the running ones (each saves a checkpoint)' : 'Stop its queued and running runs (each saves a checkpoint)'}
              onClick={onStop}
            >
              Stop sweep
            </button>
          ))}
      </div>
      {summary.runs.length === 0 ? (
        <p className="ftkit-Muted">No trials yet.</p>
      ) : (
        <SweepTable summary={summary} model={model} metric={metric} />
      )}
      {keys.length > 0 && summary.runs.length > 0 && (
        <>
          <h3>{metric} by setting</h3>
          <div className="ftkit-Charts ftkit-SweepPlots">
            {keys.map(key => (
              <SettingPlot key={key} plot={settingPlot(summary, key)} metric={metric} />
            ))}
          </div>
        </>
      )}
    </div>
  );
}

function SweepTable({ summary, model, metric }: { summary: ISweepSummary; model: SweepModel; metric: string }): JSX.Element {
  const better = summary.higher_is_better === null ? '' : summary.higher_is_better ? 'higher is better' : 'lower is better';
  return (
    <div className="ftkit-TableScroll">
      <table className="ftkit-CompareTable ftkit-SweepTable">
        <thead>
          <tr>
            <th />
            <th title="optuna's trial number">trial</th>
            <th>run</th>
            <th>status</th>
            {summary.keys.map(key => (
              <th key={key} className="ftkit-Compare-key" data-key={key} title={key}>
                {shortKey(key)}
              </th>
            ))}
            <th className="ftkit-SweepTable-metric" title={`the best validation score of each run; ${better}`}>
              {metric}
            </th>
          </tr>
        </thead>
        <tbody>
          {summary.runs.map(entry => (
            <SweepRow key={entryKey(entry)} entry={entry} summary={summary} model={model} />
          ))}
        </tbody>
      </table>
    </div>
  );
}

function SweepRow({ entry, summary, model }: { entry: ISweepEntry; summary: ISweepSummary; model: SweepModel }): JSX.Element {
  const best = isBest(summary, entry);
  const pruned = entry.status === 'pruned';
  const classes = ['ftkit-SweepRow', pruned ? 'ftkit-Sweep-pruned' : '', best ? 'ftkit-mod-best' : ''].filter(c => c);
  const id = entry.id;
  return (
    <tr
      className={classes.join(' ')}
      data-run-id={id ?? undefined}
      data-trial={entry.trial ?? undefined}
      data-status={entry.status}
    >
      <td>
        <input
          type="checkbox"
          className="ftkit-SweepRow-check"
          disabled={id === null}
          checked={id !== null && model.isSelected(id)}
          aria-label={`Compare ${entryName(entry)}`}
          title={id === null ? 'This trial has no run' : 'Tick to compare'}
          onChange={event => id !== null && model.setSelected([id], event.target.checked)}
        />
      </td>
      <td className="ftkit-SweepRow-trial">{entry.trial ?? '—'}</td>
      <td className="ftkit-SweepRow-name" title={id ?? 'its run never started'}>
        {entryName(entry)}
        {best && (
          <span className="ftkit-Checkpoint-best" role="img" aria-label="best" title={`the best by ${summary.metric}`}>
            {' '}★
          </span>
        )}
      </td>
      <td>
        <span className={`ftkit-Badge ftkit-Badge-${entry.status} ftkit-SweepRow-status`} title={entry.error ?? undefined}>
          {entry.status}
        </span>
      </td>
      {summary.keys.map(key => (
        <td key={key} className="ftkit-Compare-key">
          {formatValue(entry.settings[key])}
        </td>
      ))}
      <td className="ftkit-SweepTable-metric">{formatMetric(entry.value)}</td>
    </tr>
  );
}

const WIDTH = 360;
const HEIGHT = 220;
const MARGIN = { left: 52, right: 10, top: 10, bottom: 28 };
const PLOT_W = WIDTH - MARGIN.left - MARGIN.right;
const PLOT_H = HEIGHT - MARGIN.top - MARGIN.bottom;

/** [lo, hi] with a margin of `share` of its width on either side, so no point sits on the frame. */
function widen([lo, hi]: [number, number], share = 0.06): [number, number] {
  const pad = (hi - lo) * share;
  return [lo - pad, hi + pad];
}

/** The x axis's ticks: round numbers, whole decades on a log axis, every category. */
function xTicks(plot: ISettingPlot, x: [number, number]): { at: number; label: string }[] {
  const { axis } = plot;
  if (axis.kind === 'category') {
    return axis.categories.map((label, at) => ({ at, label: label.length > 12 ? `${label.slice(0, 11)}…` : label }));
  }
  if (axis.kind === 'log') {
    const ticks = [];
    for (let k = Math.ceil(x[0]); k <= Math.floor(x[1]); k++) {
      ticks.push({ at: k, label: tickLabel(Math.pow(10, k)) });
    }
    return ticks;
  }
  return niceTicks(x[0], x[1], 4)
    .filter(v => v >= x[0] && v <= x[1])
    .map(v => ({ at: v, label: tickLabel(v) }));
}

/** The metric against one setting: a point per scored run, pruned runs hollow, the best ringed. */
export function SettingPlot({ plot, metric }: { plot: ISettingPlot; metric: string }): JSX.Element {
  const { key, axis, points } = plot;
  const extent = extentOf([points.map(p => [p.x, p.y] as [number, number])]);
  const scale = axis.kind === 'log' ? ' (log scale)' : '';
  return (
    <figure className="ftkit-Chart ftkit-SweepPlot" data-key={key}>
      <figcaption className="ftkit-Chart-title" title={key}>
        {metric} by {shortKey(key)}
        <span className="ftkit-Muted">
          {scale}
          {plot.unscored ? ` · ${plot.unscored} without a score` : ''}
        </span>
      </figcaption>
      {!extent ? (
        <div className="ftkit-Muted">no scores yet</div>
      ) : (
        <ScatterSvg plot={plot} metric={metric} extent={extent} />
      )}
    </figure>
  );
}

function ScatterSvg(props: { plot: ISettingPlot; metric: string; extent: { x: [number, number]; y: [number, number] } }): JSX.Element {
  const { plot, metric } = props;
  const { key, axis, points } = plot;
  const x = axis.kind === 'category' ? ([-0.5, axis.categories.length - 0.5] as [number, number]) : widen(props.extent.x);
  const y = widen(props.extent.y);
  const px = (v: number) => ((v - x[0]) / (x[1] - x[0])) * PLOT_W;
  const py = (v: number) => PLOT_H - ((v - y[0]) / (y[1] - y[0])) * PLOT_H;
  return (
    <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={`${metric} by ${key}`}>
      <g transform={`translate(${MARGIN.left},${MARGIN.top})`}>
        {niceTicks(y[0], y[1], 4)
          .filter(v => v >= y[0] && v <= y[1])
          .map(v => (
            <g key={`y${v}`} className="ftkit-Chart-tick">
              <line x1={0} x2={PLOT_W} y1={py(v)} y2={py(v)} />
              <text x={-4} y={py(v)} dy="0.32em" textAnchor="end">
                {tickLabel(v)}
              </text>
            </g>
          ))}
        {xTicks(plot, x).map(({ at, label }) => (
          <text key={`x${at}`} className="ftkit-Chart-tick" x={px(at)} y={PLOT_H + 16} textAnchor="middle">
            {label}
          </text>
        ))}
        <rect className="ftkit-Chart-frame" width={PLOT_W} height={PLOT_H} />
        {points.map(({ entry, x: vx, y: vy, best }) => {
          const pruned = entry.status === 'pruned';
          const classes = ['ftkit-SweepPlot-point', pruned ? 'ftkit-mod-pruned' : '', best ? 'ftkit-mod-best' : '']
            .filter(c => c)
            .join(' ');
          return (
            <circle
              key={entryKey(entry)}
              className={classes}
              data-run-id={entry.id ?? undefined}
              data-status={entry.status}
              cx={px(vx)}
              cy={py(vy)}
              r={best ? 5 : 4}
            >
              <title>{`${entryName(entry)}: ${shortKey(key)} ${formatValue(entry.settings[key])} · ${metric} ${formatMetric(entry.value)}${pruned ? ' (pruned)' : ''}${best ? ' (best)' : ''}`}</title>
            </circle>
          );
        })}
      </g>
    </svg>
  );
}
