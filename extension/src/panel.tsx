/**
 * `RunsPanel`: the view of a `RunsModel` — a count of runs per status (click to filter), then one
 * row per run (name, status, task · model · adapter, progress with live loss and ETA, best metric,
 * start and duration, "↳ parent" for a run that starts from another run's model), expandable to
 * its lineage and its checkpoints with the best one marked, each with its exports (format, progress,
 * how the export agrees with the model) and an Export button, and a link to its label issues (the
 * training examples likeliest mislabelled); runs of a sweep together, under a header that opens the
 * sweep's own view. Runs ticked in the list open side by side in a comparison. Actions go through the app's commands, so the
 * buttons and the command palette share one implementation. Run-provided text is only ever put in
 * React text nodes (escaped), never in HTML.
 */

import { CommandRegistry } from '@lumino/commands';
import {
  caretDownIcon,
  caretRightIcon,
  copyIcon,
  addBelowIcon,
  bugIcon,
  deleteIcon,
  downloadIcon,
  fileIcon,
  LabIcon,
  ReactWidget,
  stopIcon,
  textEditorIcon
} from '@jupyterlab/ui-components';
import * as React from 'react';

import { ICheckpoint, IRunDetail, IRunSummary, RUN_STATUSES, SortKey } from './api';
import { checkpointName } from './exports';
import { ExportList } from './exports-view';
import { emptyText, formatBytes, formatDuration, formatMetric, formatTime, liveText, runSubtitle } from './format';
import { ParentMarker, RunLineage } from './lineage';
import { groupBySweep, RunsModel } from './model';
import { RunProgress } from './progress';
import { useChanged } from './hooks';

/** The command ids; index.ts registers them. */
export namespace CommandIDs {
  export const show = 'ftkit:show-runs';
  export const refresh = 'ftkit:refresh-runs';
  export const stop = 'ftkit:stop-run';
  export const deleteRun = 'ftkit:delete-run';
  export const openConfig = 'ftkit:open-run-config';
  export const deleteCheckpoint = 'ftkit:delete-checkpoint';
  export const copySnippet = 'ftkit:copy-load-snippet';
  export const insertSnippet = 'ftkit:insert-load-snippet';
  export const compare = 'ftkit:compare-runs';
  export const openLog = 'ftkit:open-run-log';
  export const openErrors = 'ftkit:open-run-errors';
  export const openLabelIssues = 'ftkit:open-run-label-issues';
  export const openSweep = 'ftkit:open-sweep';
  export const exportCheckpoint = 'ftkit:export-checkpoint';
  export const stopExport = 'ftkit:stop-export';
}

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
              title={on ? 'Show every status' : `Show ${status} runs only`}
              onClick={() => void model.filterStatus(on ? null : status)}
            >
              {status} <span className="ftkit-StatusChip-count">{model.counts?.[status] ?? ''}</span>
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

function IconButton(props: {
  icon: LabIcon;
  title: string;
  className: string;
  onClick: () => void;
}): JSX.Element {
  return (
    <button
      className={`jp-Button jp-mod-minimal ftkit-IconButton ${props.className}`}
      title={props.title}
      aria-label={props.title}
      onClick={event => {
        event.stopPropagation();
        props.onClick();
      }}
    >
      <props.icon.react tag="span" elementSize="normal" />
    </button>
  );
}

function RunRow({ run, model, commands }: IViewProps & { run: IRunSummary }): JSX.Element {
  const expanded = model.isExpanded(run.id);
  const selected = model.selected?.id === run.id;
  const duration =
    run.status === 'running' && run.started
      ? Date.now() / 1000 + model.clockSkew - run.started
      : run.duration;
  const active = run.status === 'running' || run.status === 'queued';
  const detail = model.detail(run.id);
  const live = liveText(run.progress);
  const execute = (id: string) => void commands.execute(id, { runId: run.id });
  const reveal = (runId: string) => void model.reveal(runId);
  const row = React.useRef<HTMLLIElement>(null);
  React.useEffect(() => {
    if (selected) {
      row.current?.scrollIntoView({ block: 'nearest' }); // a parent selected from its child's row may lie out of view
    }
  }, [selected]);
  return (
    <li
      ref={row}
      className={`ftkit-Run${selected ? ' jp-mod-selected' : ''}`}
      data-run-id={run.id}
      data-status={run.status}
      onClick={() => model.select(run.id)}
    >
      <div className="ftkit-Run-header">
        <input
          type="checkbox"
          className="ftkit-Run-check"
          checked={model.isChecked(run.id)}
          aria-label={`Compare ${run.name}`}
          title="Tick to compare"
          onClick={event => event.stopPropagation()}
          onChange={event => model.setChecked([run.id], event.target.checked)}
        />
        <IconButton
          icon={expanded ? caretDownIcon : caretRightIcon}
          title={expanded ? 'Hide checkpoints' : 'Show checkpoints'}
          className="ftkit-Run-toggle"
          onClick={() => {
            model.select(run.id);
            void model.toggle(run.id);
          }}
        />
        <span className="ftkit-Run-name" title={run.id}>
          {run.name}
        </span>
        <span className={`ftkit-Badge ftkit-Badge-${run.status}`}>{run.status}</span>
        <span className="ftkit-Run-actions">
          {active &&
            (model.isStopping(run.id) ? (
              <span className="ftkit-Run-stopping ftkit-Muted">stopping…</span>
            ) : (
              <IconButton icon={stopIcon} title="Stop (saves a checkpoint)" className="ftkit-Run-stop" onClick={() => execute(CommandIDs.stop)} />
            ))}
          <IconButton icon={fileIcon} title="Open the run's config" className="ftkit-Run-config" onClick={() => execute(CommandIDs.openConfig)} />
          <IconButton icon={textEditorIcon} title="Open train.log" className="ftkit-Run-log" onClick={() => execute(CommandIDs.openLog)} />
          {run.status === 'completed' && (
            <IconButton icon={bugIcon} title="What it got wrong on the test split" className="ftkit-Run-errors" onClick={() => execute(CommandIDs.openErrors)} />
          )}
          {!active && (
            <IconButton icon={deleteIcon} title="Delete run" className="ftkit-Run-delete" onClick={() => execute(CommandIDs.deleteRun)} />
          )}
        </span>
      </div>
      <div className="ftkit-Run-subtitle">
        <ParentMarker run={run} parent={detail?.parent} runs={model.runs} onSelect={reveal} />
        {runSubtitle(run)}
      </div>
      <RunProgress run={run} />
      {run.status === 'running' && live && <div className="ftkit-Run-live">{live}</div>}
      <div className="ftkit-Run-meta">
        <span className="ftkit-Run-metric" title={run.best_metric ? 'the best validation score so far' : 'no evaluation yet'}>
          {run.best_metric ? `${run.best_metric.name} ${formatMetric(run.best_metric.value)}` : 'no metric yet'}
          {run.best_checkpoint !== null && run.best_checkpoint !== undefined && (
            <span className="ftkit-Run-best"> · best checkpoint {run.best_checkpoint}</span>
          )}
        </span>
        <span className="ftkit-Run-started" title="started">
          {formatTime(run.started ?? run.created)}
        </span>
        <span className="ftkit-Run-duration" title="duration">
          {formatDuration(duration)}
        </span>
      </div>
      {run.error && <div className="ftkit-Run-error">{run.error}</div>}
      {expanded && detail?.parent && <RunLineage parent={detail.parent} task={run.task} onSelect={reveal} />}
      {expanded && (
        <div className="ftkit-Checkpoints">
          {!detail ? (
            <div className="ftkit-Muted">Loading…</div>
          ) : detail.checkpoints.length === 0 ? (
            <div className="ftkit-Muted">No checkpoints</div>
          ) : (
            <table>
              <thead>
                <tr>
                  <th>step</th>
                  <th>metric</th>
                  <th>size</th>
                  <th>kind</th>
                  <th />
                </tr>
              </thead>
              <tbody>
                {detail.checkpoints.map(checkpoint => (
                  <CheckpointRow
                    key={checkpoint.step}
                    run={run}
                    detail={detail}
                    checkpoint={checkpoint}
                    model={model}
                    commands={commands}
                    best={checkpoint.step === run.best_checkpoint}
                  />
                ))}
              </tbody>
            </table>
          )}
        </div>
      )}
      {expanded && (
        <div className="ftkit-Run-more">
          <button
            className="ftkit-LinkButton ftkit-Run-labelIssues"
            title="The training examples likeliest mislabelled, from the confidence recorded while training"
            onClick={event => {
              event.stopPropagation();
              execute(CommandIDs.openLabelIssues);
            }}
          >
            Label issues…
          </button>
        </div>
      )}
    </li>
  );
}

/** The checkpoint's own value of the run's best metric (e.g. validation f1), else its first metric. */
function checkpointMetric(run: IRunSummary, checkpoint: ICheckpoint): string {
  const wanted = run.best_metric?.name.split('_').slice(1).join('_');
  const entries = Object.entries(checkpoint.metrics);
  const match = entries.find(([name]) => name === wanted || name === `eval_${wanted}`) ?? entries[0];
  return match ? `${match[0].replace(/^eval_/, '')} ${formatMetric(match[1])}` : '—';
}

function CheckpointRow(props: {
  run: IRunSummary;
  detail: IRunDetail;
  checkpoint: ICheckpoint;
  model: RunsModel;
  commands: CommandRegistry;
  /** The checkpoint the run's ranked metric picks: what loads by default. */
  best: boolean;
}): JSX.Element {
  const { run, detail, checkpoint, model, commands, best } = props;
  const args = { runId: run.id, step: checkpoint.step };
  const exports = model.exports(run.id, checkpointName(checkpoint));
  const format = detail.export_format;
  return (
    <>
      <tr className={`ftkit-Checkpoint${best ? ' ftkit-mod-best' : ''}`} data-step={checkpoint.step}>
        <td>
          {checkpoint.step}
          {best && (
            <span
              className="ftkit-Checkpoint-best"
              role="img"
              aria-label="best"
              title={`the best by ${run.best_metric?.name ?? "the run's metric"}: what loads by default`}
            >
              {' '}★
            </span>
          )}
        </td>
        <td>{checkpointMetric(run, checkpoint)}</td>
        <td>{formatBytes(checkpoint.size)}</td>
        <td>{checkpoint.adapter_only ? 'adapter' : 'full'}</td>
        <td className="ftkit-Checkpoint-actions">
          <IconButton icon={copyIcon} title="Copy code that loads this checkpoint" className="ftkit-Checkpoint-copy" onClick={() => void commands.execute(CommandIDs.copySnippet, args)} />
          <IconButton icon={addBelowIcon} title="Insert that code below the active notebook cell" className="ftkit-Checkpoint-insert" onClick={() => void commands.execute(CommandIDs.insertSnippet, args)} />
            <IconButton icon={deleteIcon} title="Delete checkpoint" className="ftkit-Checkpoint-delete" onClick={() => void commands.execute(CommandIDs.deleteCheckpoint, args)} />
        </td>
      </tr>
      {(format || exports.length > 0) && (
        <tr className="ftkit-ExportRow" data-step={checkpoint.step}>
          <td colSpan={5} style={{ paddingLeft: 12 }}>
            {format && (
              <button
                className="jp-Button jp-mod-minimal ftkit-Checkpoint-export"
                title={`Write checkpoint ${checkpoint.step} as one ${format.toUpperCase()} file, checked against the model`}
                onClick={() => void commands.execute(CommandIDs.exportCheckpoint, args)}
              >
                <downloadIcon.react tag="span" elementSize="normal" /> Export…
              </button>
            )}
            <ExportList
              exports={exports}
              isStopping={id => model.isStoppingExport(id)}
              onStop={exportId => void commands.execute(CommandIDs.stopExport, { runId: run.id, exportId })}
            />
          </td>
        </tr>
      )}
    </>
  );
}
