/**
 * A run's lineage in the panel: the run its model came from (`model: run:<id>/checkpoint-<step>`).
 * The expanded run says "from sft run sst2-sft · checkpoint-60 → this dpo run", the list marks the
 * row "↳ sst2-sft"; either parent name selects the parent run. No JupyterLab imports, so the tests
 * render it without a browser.
 */

import * as React from 'react';

import { IRunParent, IRunSummary } from './api';

const RUN_REFERENCE = /^run:([^/]+)/;

/** The parent's id from a run's `model` (the launch pins it as `run:<id>/checkpoint-<step>`); null for a model. */
export function parentRunId(model: string | null): string | null {
  return model?.match(RUN_REFERENCE)?.[1] ?? null;
}

/** A parent's name that selects it; a button, so it is reached by keyboard too. */
function ParentButton(props: { runId: string; name: string; className: string; onSelect: (runId: string) => void }): JSX.Element {
  return (
    <button
      className={`ftkit-ParentLink ${props.className}`}
      data-parent-id={props.runId}
      title={`Select ${props.name} (${props.runId})`}
      onClick={event => {
        event.stopPropagation(); // the row's own click selects the row
        props.onSelect(props.runId);
      }}
    >
      {props.name}
    </button>
  );
}

/** "from sft run sst2-sft · checkpoint-60 → this dpo run", in the expanded run. */
export function RunLineage(props: { parent: IRunParent; task: string | null; onSelect: (runId: string) => void }): JSX.Element {
  const { parent, task, onSelect } = props;
  return (
    <div className="ftkit-Lineage">
      from {parent.task ? `${parent.task} ` : ''}run{' '}
      <ParentButton runId={parent.run} name={parent.name ?? parent.run} className="ftkit-Lineage-parent" onSelect={onSelect} />
      {` · ${parent.checkpoint} → this ${task ? `${task} ` : ''}run`}
    </div>
  );
}

/**
 * "↳ sst2-sft" beside the name of a run that starts from another: the parent's name from the run's
 * detail once loaded, else from the page, else its id (the list's summaries carry only `model`).
 */
export function ParentMarker(props: {
  run: IRunSummary;
  parent: IRunParent | null | undefined;
  runs: readonly IRunSummary[];
  onSelect: (runId: string) => void;
}): JSX.Element | null {
  const runId = props.parent?.run ?? parentRunId(props.run.model);
  if (!runId) {
    return null;
  }
  const name = props.parent?.name ?? props.runs.find(run => run.id === runId)?.name ?? runId;
  return (
    <span className="ftkit-Run-parent ftkit-Muted">
      ↳ <ParentButton runId={runId} name={name} className="ftkit-Run-parentLink" onSelect={props.onSelect} />
    </span>
  );
}
