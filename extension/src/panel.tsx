/**
 * `RunsPanel`: the view of a `RunsModel` — a count of runs per status (click to filter), then one
 * row per run (`run-row.tsx`: name, status, task · model · adapter, progress with live loss and ETA,
 * best metric, start and duration, "↳ parent" for a run that starts from another run's model),
 * expandable to its lineage and its checkpoints (best and last marked, what each holds), each with
 * its exports (format, progress, how the export agrees with the model) and an Export button, and a
 * link to its label issues (the training examples likeliest mislabelled); runs of a sweep together, under a header that opens the
 * sweep's own view. Runs ticked in the list open side by side in a comparison. Actions go through the app's commands, so the
 * buttons and the command palette share one implementation. Run-provided text is only ever put in
 * React text nodes (escaped), never in HTML.
 */

import { CommandRegistry } from '@lumino/commands';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { IRunSummary, RUN_STATUSES, SortKey } from './api';
import { CommandIDs } from './commands';
import { emptyText } from './format';
import { groupBySweep, RunsModel } from './model';
import { RunRow } from './run-row';
import { statusChipLabel } from './run-state';
import { useChanged } from './hooks';

const SORTS: [SortKey, string][] = [
  ['created', 'Newest'],
  ['name', 'Name'],
  ['status', 'Status'],
  ['best_metric', 'Best metric'],
  ['updated', 'Last update']
];

export class RunsPanel extends ReactWidget {
  constructor(
    readonly model: RunsModel,
    private readonly commands: CommandRegistry
  ) {
    super();
    this.addClass('ftkit-RunsPanel');
  }

  render(): JSX.Element {
    return <RunsView model={this.model} commands={this.commands} />;
  }

  /** The live channel rests while the panel is hidden: catch up at once when it shows. */
  protected onAfterShow(): void {
    void this.model.refresh();
  }
}

interface IViewProps {
  model: RunsModel;
  commands: CommandRegistry;
}

/** Re-render on every model change, and every second while a run's clock is ticking. */
function useModel(model: RunsModel): void {
  const rerender = useChanged(model);
  const ticking = model.runs.some(run => run.status === 'running');
  React.useEffect(() => {
    if (!ticking) {
      return;
    }
    const timer = window.setInterval(rerender, 1000);
    return () => window.clearInterval(timer);
  }, [ticking]);
}

function RunsView({ model, commands }: IViewProps): JSX.Element {
  useModel(model);
  const { query } = model;
  const first = model.total ? query.offset + 1 : 0;
  const last = query.offset + model.runs.length;
  const search = React.useRef<HTMLInputElement>(null);
  React.useEffect(() => {
    // the model may search by itself (`reveal`): the box shows what the list matches
    if (search.current && search.current.value !== query.q) {
      search.current.value = query.q;
    }
  }, [query.q]);
  return (
    <div className="ftkit-RunsView">
      <div className="ftkit-Filters">
        <input
          ref={search}
          className="ftkit-Search jp-mod-styled"
          type="search"
          placeholder="Search runs"
          aria-label="Search runs by name, id, model or task"
          defaultValue={query.q}
          onChange={event => void model.setQuery({ q: event.target.value })}
        />
        <select
          className="ftkit-Sort jp-mod-styled"
          aria-label="Sort runs"
          value={query.sort}
          onChange={event => void model.setQuery({ sort: event.target.value as SortKey })}
        >
          {SORTS.map(([key, label]) => (
            <option key={key} value={key}>
              {label}
            </option>
          ))}
        </select>
      </div>
      <div className="ftkit-StatusCounts" role="group" aria-label="Show runs with this status">
        {RUN_STATUSES.map(status => {
          const on = query.status.includes(status);
          return (
            <button
              key={status}
              className={`ftkit-StatusChip ftkit-Badge ftkit-Badge-${status}${on ? ' jp-mod-active' : ''}`}
              data-status={status}
              aria-pressed={on}
              title={on ? 'Show every status' : `Show ${statusChipLabel(status)} runs only`}
              onClick={() => void model.filterStatus(on ? null : status)}
            >
              {statusChipLabel(status)} <span className="ftkit-StatusChip-count">{model.counts?.[status] ?? ''}</span>
            </button>
          );
        })}
      </div>
      {model.error && (
        <div className="ftkit-Error" role="alert">
          {model.error}
        </div>
      )}
      <div className="ftkit-Summary">
        <span className="ftkit-Count">
          {model.loading ? 'Loading runs…' : model.total ? `${first}–${last} of ${model.total} runs` : emptyText(query)}
        </span>
        <span className="ftkit-Pager">
          <button
            className="jp-Button jp-mod-minimal ftkit-PrevPage"
            disabled={!model.hasPreviousPage}
            onClick={() => void model.previousPage()}
            aria-label="Previous page"
          >
            ‹
          </button>
          <button
            className="jp-Button jp-mod-minimal ftkit-NextPage"
            disabled={!model.hasNextPage}
            onClick={() => void model.nextPage()}
            aria-label="Next page"
          >
            ›
          </button>
        </span>
      </div>
      {model.checked.length > 0 && <CompareBar model={model} commands={commands} />}
      <ul className="ftkit-RunList">
        {groupBySweep(model.runs).map(group =>
          group.sweep === null ? (
            <RunRow key={group.runs[0].id} run={group.runs[0]} model={model} commands={commands} />
          ) : (
            <SweepGroup key={`sweep:${group.sweep}`} sweep={group.sweep} runs={group.runs} model={model} commands={commands} />
          )
        )}
      </ul>
    </div>
  );
}

/** The runs ticked for comparison, and the button that opens it. */
function CompareBar({ model, commands }: IViewProps): JSX.Element {
  const count = model.checked.length;
  return (
    <div className="ftkit-CompareBar">
      <span>{count} selected</span>
      <button
        className="jp-Button jp-mod-styled jp-mod-accept ftkit-CompareButton"
        disabled={count < 2}
        title={count < 2 ? 'Tick two runs or more to compare them' : 'Open the runs side by side'}
        onClick={() => void commands.execute(CommandIDs.compare)}
      >
        Compare
      </button>
      <button className="jp-Button jp-mod-styled jp-mod-reject ftkit-ClearChecked" onClick={() => model.clearChecked()}>
        Clear
      </button>
    </div>
  );
}

/** The runs of one sweep under its name; its box ticks them all for comparison. */
function SweepGroup(props: IViewProps & { sweep: string; runs: IRunSummary[] }): JSX.Element {
  const { sweep, runs, model, commands } = props;
  const ids = runs.map(run => run.id);
  const all = ids.every(id => model.isChecked(id));
  return (
    <li className="ftkit-Sweep" data-sweep={sweep}>
      <label className="ftkit-Sweep-header">
        <input
          type="checkbox"
          className="ftkit-Sweep-check"
          checked={all}
          aria-label={`Compare every run of sweep ${sweep}`}
          onChange={() => model.setChecked(ids, !all)}
        />
        <span className="ftkit-Sweep-name">sweep {sweep}</span>
        <span className="ftkit-Muted">{runs.length} runs</span>
        <button
          className="ftkit-LinkButton ftkit-Sweep-open"
          title="Its trials' settings, status and metric, and the metric against each searched setting"
          onClick={event => {
            event.preventDefault(); // inside the label: no tick
            void commands.execute(CommandIDs.openSweep, { sweep });
          }}
        >
          Sweep…
        </button>
      </label>
      <ul className="ftkit-RunList">
        {runs.map(run => (
          <RunRow key={run.id} run={run} model={model} commands={commands} />
        ))}
      </ul>
    </li>
  );
}
