/**
 * `CompareView`: runs side by side in the main area. One table, a row per run: its colour (the
 * legend of every chart), what it trains, the config keys whose values differ between the runs,
 * and its final metrics; then each curve the runs logged, whatever its name (loss, the evaluation
 * metrics, a trainer's own values such as `rewards/margins`, the learning rate), with the runs
 * overlaid. What the server names `primary` (the training loss and the main validation metric, as
 * the notebook's curves show them) comes first; the other metrics and curves (per-entity scores,
 * the optimizer's) are behind the "more curves and metrics" toggle. Plain React over an
 * `IComparison`; run-provided text only in text nodes.
 */

import * as React from 'react';

import { IComparison } from './api';
import { IChartSeries, LineChart } from './chart';
import { strokeOf } from './curves';
import { formatMetric, formatValue, runSubtitle } from './format';

/** The optimizer's curves, drawn last in this order. */
const OPTIMIZER = ['grad_norm', 'learning_rate'];

/** A curve's place: its band (loss, evaluations, anything else, optimizer) and its place in the band. */
function rank(name: string, evaluations: readonly string[]): [number, number] {
  if (name === 'loss') {
    return [0, 0];
  }
  if (evaluations.includes(name)) {
    return [1, evaluations.indexOf(name)];
  }
  if (OPTIMIZER.includes(name)) {
    return [3, OPTIMIZER.indexOf(name)];
  }
  return [2, 0]; // by name, below
}

/**
 * The charts' order: the loss first, then the evaluations in the metrics table's order (validation
 * first), then whatever else the runs logged by name (so a group such as `rewards/*` stays together),
 * the optimizer's last. Only the well-known curves are named: any other finds its place.
 */
export function curveOrder(names: readonly string[], evaluations: readonly string[] = []): string[] {
  return [...names].sort((a, b) => {
    const [bandA, placeA] = rank(a, evaluations);
    const [bandB, placeB] = rank(b, evaluations);
    return bandA - bandB || placeA - placeB || a.localeCompare(b);
  });
}

/**
 * `items` cut into those `primary` names, in its order (shown at once), and the rest in their own
 * order (behind the toggle).
 */
export function byPrimary<T>(items: readonly T[], nameOf: (item: T) => string, primary: readonly string[]): [T[], T[]] {
  const first = primary.flatMap(name => items.filter(item => nameOf(item) === name));
  return [first, items.filter(item => !primary.includes(nameOf(item)))];
}

/** The short name of a config key in a column header: its last part (the full key is the tooltip). */
function shortKey(key: string): string {
  return key.split('.').pop() || key;
}

export function CompareView({ data }: { data: IComparison }): JSX.Element {
  const { runs, differing, curves, primary } = data;
  const [more, setMore] = React.useState(false);
  const [firstMetrics, moreMetrics] = byPrimary(data.metrics, metric => metric.name, primary);
  const ordered = curveOrder(Object.keys(curves), data.metrics.map(metric => metric.name));
  const [firstCurves, moreCurves] = byPrimary(ordered, name => name, primary);
  const metrics = more ? [...firstMetrics, ...moreMetrics] : firstMetrics;
  const hidden = moreMetrics.length + moreCurves.length;
  return (
    <div className="ftkit-Compare">
      <h2 className="ftkit-Compare-title">Comparing {runs.length} runs</h2>
      <div className="ftkit-TableScroll">
        <table className="ftkit-CompareTable">
          <thead>
            <tr>
              <th>run</th>
              <th>status</th>
              <th>task · model · adapter</th>
              {differing.map(({ key }) => (
                <th key={key} className="ftkit-Compare-key" data-key={key} title={key}>
                  {shortKey(key)}
                </th>
              ))}
              {metrics.map(({ name }) => (
                <th key={name} className="ftkit-Compare-metric" data-metric={name}>
                  {name}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {runs.map((run, i) => {
              const stroke = strokeOf(i);
              return (
                <tr key={run.id} data-run-id={run.id}>
                  <td className="ftkit-Compare-run" title={run.id}>
                    <svg className="ftkit-Swatch" width="18" height="8" aria-hidden="true">
                      <line x1="0" y1="4" x2="18" y2="4" stroke={stroke.colour} strokeWidth="3" strokeDasharray={stroke.dash} />
                    </svg>
                    {run.name}
                    {run.sweep && <span className="ftkit-Muted"> ({run.sweep})</span>}
                  </td>
                  <td>
                    <span className={`ftkit-Badge ftkit-Badge-${run.status}`}>{run.status}</span>
                  </td>
                  <td>{runSubtitle(run)}</td>
                  {differing.map(({ key, values }) => (
                    <td key={key} className="ftkit-Compare-key">
                      {formatValue(values[i])}
                    </td>
                  ))}
                  {metrics.map(({ name, values }) => (
                    <td key={name} className="ftkit-Compare-metric">
                      {formatMetric(values[i])}
                    </td>
                  ))}
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      {differing.length === 0 && <p className="ftkit-Muted">These runs have the same config.</p>}
      {hidden > 0 && (
        <button
          className="ftkit-LinkButton ftkit-Compare-more"
          aria-pressed={more}
          title="Every other metric and curve the runs report: per-label scores, the optimizer's, a trainer's own"
          onClick={() => setMore(!more)}
        >
          {more ? 'fewer curves and metrics' : `more curves and metrics (${moreMetrics.length} metrics, ${moreCurves.length} curves)`}
        </button>
      )}
      <div className="ftkit-Charts">
        {(more ? [...firstCurves, ...moreCurves] : firstCurves).map(name => {
          const series: IChartSeries[] = runs.map((run, index) => ({
            runId: run.id,
            index,
            points: curves[name][run.id] ?? []
          }));
          return <LineChart key={name} name={name} series={series} />;
        })}
      </div>
    </div>
  );
}
