/**
 * `LabelIssues`: the state of a run's label-issues view (no DOM): the gold label it is narrowed to,
 * and the `Remote` that loads the worst examples of that label from the server. Also what must
 * change in a run's summary for the view to load again (a new epoch, a new status: the records grow
 * once per pass over the training split, not per step) and how much of a text the table shows.
 */

import { ILabelIssueReport, IRunsApi, IRunSummary } from './api';
import { Remote } from './remote';

/** Rows a view asks for: the worst examples, enough to read through. */
export const LABEL_ISSUE_ROWS = 100;

/** Characters of an example's text a table cell shows; the cell's title holds all of it. */
export const TEXT_CHARS = 120;

/** The label filter's value for "all labels". */
export const ALL_LABELS = '';

/** What must change for a label-issues view of a run to load again: its status, or the epoch it is in. */
export function epochKey(run: IRunSummary): string {
  return JSON.stringify([run.status, Math.floor(run.progress.epoch ?? 0)]);
}

/** `text` cut to `max` characters, an ellipsis marking the cut. */
export function truncate(text: string, max: number = TEXT_CHARS): string {
  return text.length <= max ? text : `${text.slice(0, max - 1).trimEnd()}…`;
}

/** "2 epochs", "1.5 epochs", "1 epoch": how far the records go. */
export function epochText(epochs: number): string {
  const value = Math.round(epochs * 100) / 100;
  return `${value} epoch${value === 1 ? '' : 's'}`;
}

export class LabelIssues {
  constructor(
    private readonly _api: Pick<IRunsApi, 'labelIssues'>,
    readonly runId: string,
    title: string,
    readonly limit: number = LABEL_ISSUE_ROWS
  ) {
    this.remote = new Remote(() => this._api.labelIssues(this.runId, this._label || null, this.limit), title);
  }

  /** The report of the label chosen; loaded again on `refresh`, on `setLabel` and as the run trains. */
  readonly remote: Remote<ILabelIssueReport>;

  /** The gold label the table is narrowed to; `ALL_LABELS` for every one. */
  get label(): string {
    return this._label;
  }

  /** Narrow the table to one gold label (`ALL_LABELS`: every one) and load it. */
  setLabel(label: string): Promise<void> {
    this._label = label;
    return this.remote.refresh();
  }

  refresh(): Promise<void> {
    return this.remote.refresh();
  }

  private _label = ALL_LABELS;
}
