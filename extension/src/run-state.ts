/**
 * What the panel says about a run and its checkpoints, and which actions it offers, from what the
 * server reports (no DOM): the status as people read it ("starting" for a queued run already at
 * work), whether it may be deleted or its errors shown, what each checkpoint is and holds. The row's
 * buttons and the command palette ask the same functions, so they never disagree.
 */

import { ICheckpoint, IRunSummary, RunStatus } from './api';

/** The phase of a queued run whose devices are busy (ftkit.runstore.events.PHASES): it is still waiting. */
export const WAITING_PHASE = 'waiting for device';

/** A run whose worker may still write: it can be stopped, not deleted. */
export function isActive(run: Pick<IRunSummary, 'status'>): boolean {
  return run.status === 'running' || run.status === 'queued';
}

/**
 * The status the panel shows: "starting" for a run still queued in the store whose worker already
 * imports libraries or reads data (a phase other than waiting for a device), else its stored status.
 */
export function displayStatus(run: Pick<IRunSummary, 'status' | 'phase'>): RunStatus | 'starting' {
  return run.status === 'queued' && run.phase?.name && run.phase.name !== WAITING_PHASE ? 'starting' : run.status;
}

/** A status chip's words: queued ones include those starting. */
export function statusChipLabel(status: RunStatus): string {
  return status === 'queued' ? 'queued/starting' : status;
}

/** A finished run may be deleted; an unknown or active one may not (the server would refuse). */
export function canDelete(run: Pick<IRunSummary, 'status'> | undefined): boolean {
  return !!run && !isActive(run);
}

/** The split the errors view reads. */
export const ERRORS_SPLIT = 'test';

/** Its errors can be shown once the run has ended with saved predictions for the test split. */
export function hasErrors(run: Pick<IRunSummary, 'status' | 'predictions'> | undefined): boolean {
  return !!run && !isActive(run) && (run.predictions ?? []).includes(ERRORS_SPLIT);
}

/** The run's name, then its id: the row's tooltip. */
export function runTooltip(run: Pick<IRunSummary, 'id' | 'name'>): string {
  return `${run.name} (${run.id})`;
}

/** What a checkpoint holds, from what is on disk: with the optimizer's state it can resume training. */
export function checkpointHolds(checkpoint: Pick<ICheckpoint, 'adapter_only' | 'resumable'>): string {
  const weights = checkpoint.adapter_only ? 'adapter weights' : 'weights';
  return checkpoint.resumable ? `${weights} + optimizer state: can resume` : `${weights} only`;
}

/** "best", "last", both or neither: the checkpoint that loads by default, and the latest one. */
export function checkpointRoles(step: number, best: number | null | undefined, checkpoints: readonly ICheckpoint[]): string[] {
  const last = checkpoints.length ? Math.max(...checkpoints.map(c => c.step)) : null;
  return [...(step === best ? ['best'] : []), ...(step === last ? ['last'] : [])];
}
