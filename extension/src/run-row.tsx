/**
 * `RunRow`: one run in the panel's list. Its full name (wrapped, never cut; the tooltip gives its
 * id), its status as people read it ("starting" for a queued run already at work), the actions it
 * allows (the same checks as the command palette's, `run-state.ts`), what it trains, its progress,
 * best metric, start and duration; expanded, its lineage and its checkpoints, each saying whether it
 * is the best (what loads by default) or the last, and what it holds (the weights alone, or with the
 * optimizer's state it can resume from), with its exports and an Export button. Run-provided text is
 * only ever put in React text nodes (escaped), never in HTML.
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
  stopIcon,
  textEditorIcon
} from '@jupyterlab/ui-components';
import * as React from 'react';

import { ICheckpoint, IRunDetail, IRunSummary } from './api';
import { CommandIDs } from './commands';
import { checkpointName } from './exports';
import { ExportList } from './exports-view';
import { formatBytes, formatDuration, formatMetric, formatTime, liveText, runSubtitle } from './format';
import { ParentMarker, RunLineage } from './lineage';
import { RunsModel } from './model';
import { RunProgress } from './progress';
import { canDelete, checkpointHolds, checkpointRoles, displayStatus, hasErrors, isActive, runTooltip } from './run-state';

interface IRowProps {
  model: RunsModel;
  commands: CommandRegistry;
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

export function RunRow({ run, model, commands }: IRowProps & { run: IRunSummary }): JSX.Element {
  const expanded = model.isExpanded(run.id);
  const selected = model.selected?.id === run.id;
  const duration =
    run.status === 'running' && run.started
      ? Date.now() / 1000 + model.clockSkew - run.started
      : run.duration;
  const active = isActive(run);
  const status = displayStatus(run);
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
        <span className="ftkit-Run-name" title={runTooltip(run)}>
          {run.name}
        </span>
        <span className={`ftkit-Badge ftkit-Badge-${status}`} data-status={status}>
          {status}
        </span>
      </div>
      <div className="ftkit-Run-subtitle">
        <ParentMarker run={run} parent={detail?.parent} runs={model.runs} onSelect={reveal} />
        {runSubtitle(run)}
        <span className="ftkit-Run-actions">
          {active &&
            (model.isStopping(run.id) ? (
              <span className="ftkit-Run-stopping ftkit-Muted">stopping…</span>
            ) : (
              <IconButton icon={stopIcon} title="Stop (saves a checkpoint)" className="ftkit-Run-stop" onClick={() => execute(CommandIDs.stop)} />
            ))}
          <IconButton icon={fileIcon} title="Open the run's config" className="ftkit-Run-config" onClick={() => execute(CommandIDs.openConfig)} />
          <IconButton icon={textEditorIcon} title="Open train.log" className="ftkit-Run-log" onClick={() => execute(CommandIDs.openLog)} />
          {hasErrors(run) && (
            <IconButton icon={bugIcon} title="What it got wrong on the test split" className="ftkit-Run-errors" onClick={() => execute(CommandIDs.openErrors)} />
          )}
          {canDelete(run) && (
            <IconButton icon={deleteIcon} title="Delete run" className="ftkit-Run-delete" onClick={() => execute(CommandIDs.deleteRun)} />
          )}
        </span>
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
                    roles={checkpointRoles(checkpoint.step, run.best_checkpoint, detail.checkpoints)}
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
  /** "best" (the checkpoint the run's ranked metric picks: what loads by default) and "last". */
  roles: string[];
}): JSX.Element {
  const { run, detail, checkpoint, model, commands, roles } = props;
  const best = roles.includes('best');
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
          {roles.length > 0 && <span className="ftkit-Checkpoint-roles"> {roles.join(' · ')}</span>}
        </td>
        <td>{checkpointMetric(run, checkpoint)}</td>
        <td>{formatBytes(checkpoint.size)}</td>
        <td className="ftkit-Checkpoint-actions">
          <IconButton icon={copyIcon} title="Copy code that loads this checkpoint" className="ftkit-Checkpoint-copy" onClick={() => void commands.execute(CommandIDs.copySnippet, args)} />
          <IconButton icon={addBelowIcon} title="Insert that code below the active notebook cell" className="ftkit-Checkpoint-insert" onClick={() => void commands.execute(CommandIDs.insertSnippet, args)} />
          <IconButton icon={deleteIcon} title="Delete checkpoint" className="ftkit-Checkpoint-delete" onClick={() => void commands.execute(CommandIDs.deleteCheckpoint, args)} />
        </td>
      </tr>
      <tr className="ftkit-ExportRow" data-step={checkpoint.step}>
        <td colSpan={4} style={{ paddingLeft: 12 }}>
          <div className="ftkit-Checkpoint-holds">{checkpointHolds(checkpoint)}</div>
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
    </>
  );
}
