/**
 * `SweepModel`: the state of a sweep's view (no DOM): the `Remote` that loads the sweep's summary,
 * loaded again every few seconds while the sweep is at work (a search's driver starting, searching or
 * stopping, or a run of it queued or running), the runs ticked for comparison, and stopping it. Also
 * the arithmetic its view draws with: what the state line says, and each searched setting as a plot
 * axis (numbers, on a log scale when they span decades, or categories) with the metric of each run.
 */

import { ISignal, Signal } from '@lumino/signaling';

import { IRunsApi, ISweepEntry, ISweepSummary, SweepRunStatus, SweepState } from './api';
import { formatValue } from './format';
import { Remote } from './remote';

/** A search's driver at work (ftkit.sweeps.ACTIVE_STATES). */
export const ACTIVE_SWEEP_STATES: readonly SweepState[] = ['starting', 'searching', 'stopping'];

/** Milliseconds between loads while the sweep is at work. */
export const SWEEP_INTERVAL = 3000;

/** A run's statuses once it has ended. */
const ENDED: readonly SweepRunStatus[] = ['completed', 'stopped', 'failed', 'pruned'];

export function isEntryActive(entry: ISweepEntry): boolean {
  return entry.status === 'queued' || entry.status === 'running';
}

/** Whether anything of the sweep is at work: its driver, or one of its runs. */
export function isSweepActive(summary: ISweepSummary): boolean {
  return ACTIVE_SWEEP_STATES.includes(summary.state) || summary.runs.some(isEntryActive);
}

/** Runs (and run-less trials) that have ended: completed, stopped, failed or pruned. */
export function endedCount(summary: ISweepSummary): number {
  return summary.runs.filter(entry => ENDED.includes(entry.status)).length;
}

/** "searching · 3 of 8 trials done · 2 at a time · median pruner"; a grid: "grid · 4 runs, 3 ended". */
export function sweepStateText(summary: ISweepSummary): string {
  const ended = endedCount(summary);
  if (summary.kind === 'grid') {
    const count = summary.runs.length;
    return `grid · ${count} run${count === 1 ? '' : 's'}, ${ended} ended`;
  }
  const parts: string[] = [summary.state];
  if (summary.trials !== undefined) {
    parts.push(`${ended} of ${summary.trials} trials done`);
  }
  if (summary.parallel !== undefined) {
    parts.push(`${summary.parallel} at a time`);
  }
  if (summary.pruner) {
    parts.push(summary.pruner === 'none' ? 'no pruner' : `${summary.pruner} pruner`);
  }
  return parts.join(' · ');
}

/** What tells a row from the others: its run's id, else its trial's number. */
export function entryKey(entry: ISweepEntry): string {
  return entry.id ?? `trial-${entry.trial}`;
}

/** A row's name: its run's, else "trial N" (a trial whose run never started). */
export function entryName(entry: ISweepEntry): string {
  return entry.name ?? `trial ${entry.trial ?? '?'}`;
}

export function isBest(summary: ISweepSummary, entry: ISweepEntry): boolean {
  return summary.best !== null && entryKey(summary.best) === entryKey(entry);
}

/** The short name of a config key in a header: its last part (the full key is the tooltip). */
export function shortKey(key: string): string {
  return key.split('.').pop() || key;
}

/**
 * How a setting's values lie along a plot's x axis: numbers (on a log scale when the search searched it on
 * one; a grid's when all are positive and span two decades or more), or categories in the
 * order first seen (anything else: a choice of strings, booleans, lists).
 */
export interface ISettingAxis {
  kind: 'linear' | 'log' | 'category';
  /** The categories' labels, for a category axis. */
  categories: string[];
}

/** One run on a setting's plot: x in axis units (log10 of the value on a log axis, the category's index). */
export interface ISweepPoint {
  entry: ISweepEntry;
  x: number;
  y: number;
  /** The sweep's best run. */
  best: boolean;
}

export interface ISettingPlot {
  key: string;
  axis: ISettingAxis;
  points: ISweepPoint[];
  /** Rows with no score yet (queued, running, failed before an evaluation): not drawn. */
  unscored: number;
}

/** The metric of each scored run against its value of `key`. */
export function settingPlot(summary: ISweepSummary, key: string): ISettingPlot {
  const values = summary.runs.map(entry => entry.settings[key]).filter(v => v !== null && v !== undefined);
  const numeric = values.length > 0 && values.every(v => typeof v === 'number' && isFinite(v));
  let axis: ISettingAxis = { kind: 'category', categories: [] };
  if (numeric) {
    const numbers = values as number[];
    const low = Math.min(...numbers);
    const high = Math.max(...numbers);
    const space = summary.spaces?.find(s => s.key === key);
    const log = space ? space.log : low > 0 && high / low >= 100; // a grid says nothing: values spanning decades
    axis = { kind: log ? 'log' : 'linear', categories: [] };
  } else {
    axis.categories = [...new Set(values.map(formatValue))];
  }
  const points: ISweepPoint[] = [];
  let unscored = 0;
  for (const entry of summary.runs) {
    const value = entry.settings[key];
    if (entry.value === null || !isFinite(entry.value) || value === null || value === undefined) {
      unscored++;
      continue;
    }
    const x =
      axis.kind === 'category'
        ? axis.categories.indexOf(formatValue(value))
        : axis.kind === 'log'
          ? Math.log10(value as number)
          : (value as number);
    points.push({ entry, x, y: entry.value, best: isBest(summary, entry) });
  }
  return { key, axis, points, unscored };
}

export namespace SweepModel {
  export interface IOptions {
    /** Milliseconds between loads while the sweep is at work (default `SWEEP_INTERVAL`). */
    interval?: number;
    /** Whether anyone is looking (the view is shown); the loads rest otherwise. */
    isActive?: () => boolean;
  }
}

export class SweepModel {
  constructor(
    private readonly _api: Pick<IRunsApi, 'sweep' | 'stopSweep'>,
    readonly name: string,
    options: SweepModel.IOptions = {}
  ) {
    this._interval = options.interval ?? SWEEP_INTERVAL;
    this._isActive = options.isActive ?? (() => true);
    this.remote = new Remote(() => this._api.sweep(name), `sweep ${name}`);
    this.remote.changed.connect(this._onLoad, this);
  }

  /** The sweep's summary; loaded on `refresh`, and again every few seconds while the sweep is at work. */
  readonly remote: Remote<ISweepSummary>;

  /** Emitted when the runs ticked change, or a stop is asked. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Whether the sweep was at work at the last load. */
  get isActive(): boolean {
    const data = this.remote.data;
    return data !== null && isSweepActive(data);
  }

  /** True from an accepted stop until the sweep is no longer at work. */
  get isStopping(): boolean {
    return this._stopping;
  }

  /** The runs ticked that the sweep still lists, in its table's order. */
  get selected(): string[] {
    const ids = (this.remote.data?.runs ?? []).map(entry => entry.id).filter((id): id is string => id !== null);
    return ids.filter(id => this._selected.has(id));
  }

  /** Two runs or more ticked: what Compare needs. */
  get canCompare(): boolean {
    return this.selected.length >= 2;
  }

  isSelected(runId: string): boolean {
    return this._selected.has(runId);
  }

  setSelected(runIds: readonly string[], selected: boolean): void {
    for (const id of runIds) {
      if (selected) {
        this._selected.add(id);
      } else {
        this._selected.delete(id);
      }
    }
    this._changed.emit();
  }

  refresh(): Promise<void> {
    return this.remote.refresh();
  }

  /** Stop the sweep (a search asks no more trials and stops its running ones), then load it again. */
  async stop(): Promise<void> {
    await this._api.stopSweep(this.name);
    this._stopping = true;
    this._changed.emit();
    await this.remote.refresh();
  }

  get isDisposed(): boolean {
    return this._isDisposed || this.remote.isDisposed;
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    clearTimeout(this._timer ?? undefined);
    this._timer = null;
    this.remote.dispose();
    Signal.clearData(this);
  }

  /** After each load: while the sweep is at work, load it again in a while; once it rests, its stop is done. */
  private _onLoad(): void {
    if (this._stopping && !this.isActive && this.remote.data !== null) {
      this._stopping = false;
      this._changed.emit();
    }
    if (this.isActive || (this.remote.data === null && this.remote.error !== null)) {
      this._schedule();
    }
  }

  private _schedule(): void {
    if (this._timer !== null || this.isDisposed) {
      return;
    }
    this._timer = setTimeout(() => {
      this._timer = null;
      if (this.isDisposed) {
        return;
      }
      if (this._isActive()) {
        void this.remote.refresh();
      } else {
        this._schedule(); // hidden: look again later
      }
    }, this._interval);
  }

  private readonly _changed = new Signal<this, void>(this);
  private readonly _selected = new Set<string>();
  private readonly _interval: number;
  private readonly _isActive: () => boolean;
  private _stopping = false;
  private _isDisposed = false;
  private _timer: ReturnType<typeof setTimeout> | null = null;
}
