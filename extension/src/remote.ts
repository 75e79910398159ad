/**
 * `Remote`: what a main-area view shows (a comparison, a run's errors, its log), loaded from the
 * server and loaded again while the runs it shows still train. No DOM: `RemoteWidget` renders it.
 */

import { ISignal, Signal } from '@lumino/signaling';

import { IRunSummary } from './api';
import { RunsModel } from './model';

export class Remote<T> {
  /** `load` fetches the data; `title` names the view (its tab). */
  constructor(
    private readonly _load: () => Promise<T>,
    readonly title: string
  ) {}

  /** Emitted after a load ends, well or not. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get data(): T | null {
    return this._data;
  }

  /** The last load's failure, in words; the data before it stays shown. */
  get error(): string | null {
    return this._error;
  }

  get loading(): boolean {
    return this._data === null && this._error === null;
  }

  /** Load now; a call while a load is under way runs one more load after it, not one per call. */
  async refresh(): Promise<void> {
    if (this._inFlight) {
      this._again = true;
      return this._inFlight;
    }
    this._inFlight = (async () => {
      do {
        this._again = false;
        try {
          this._data = await this._load();
          this._error = null;
        } catch (error) {
          this._error = error instanceof Error ? error.message : String(error);
        }
        if (this._isDisposed) {
          return;
        }
        this._changed.emit();
      } while (this._again);
    })();
    try {
      await this._inFlight;
    } finally {
      this._inFlight = null;
    }
  }

  /**
   * Load again whenever the panel's live channel shows one of `runIds` change (by `key`, default
   * `runKey`: any progress), until disposed.
   */
  follow(runs: RunsModel, runIds: readonly string[], key?: (run: IRunSummary) => string): void {
    this._unfollow();
    this._unfollow = runs.watch(runIds, () => void this.refresh(), key);
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    this._isDisposed = true;
    this._unfollow();
    Signal.clearData(this);
  }

  private readonly _changed = new Signal<this, void>(this);
  private _data: T | null = null;
  private _error: string | null = null;
  private _inFlight: Promise<void> | null = null;
  private _again = false;
  private _isDisposed = false;
  private _unfollow: () => void = () => undefined;
}
