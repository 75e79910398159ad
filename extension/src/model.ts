/**
 * `RunsModel`: the side panel's state (the current page of runs, the query, expanded runs and their
 * details) kept up to date by a long-poll on the server's live channel. No DOM: the view renders it.
 */

import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import {
  IExport,
  IExportRequest,
  IListQuery,
  IRunDetail,
  IRunsApi,
  IRunsPage,
  IRunSummary,
  RUN_STATUSES,
  RunStatus,
  StatusCounts
} from './api';
import { ExportTracker, runExports } from './exports';

export const DEFAULT_QUERY: IListQuery = {
  status: [],
  q: '',
  sort: 'created',
  order: 'desc',
  limit: 50,
  offset: 0
};

/** What must change for views of a run (its detail, a comparison, its log) to be fetched again. */
export function runKey(run: IRunSummary): string {
  return JSON.stringify([
    run.status,
    run.progress.step,
    run.checkpoint_count,
    run.best_metric,
    run.error
  ]);
}

/** A row of the list: a run on its own, or the runs of one sweep together (in the page's order). */
export type RunGroup = { sweep: null; runs: [IRunSummary] } | { sweep: string; runs: IRunSummary[] };

/** The page's runs with each sweep's runs gathered where its first run appears. */
export function groupBySweep(runs: readonly IRunSummary[]): RunGroup[] {
  const groups: RunGroup[] = [];
  const sweeps = new Map<string, IRunSummary[]>();
  for (const run of runs) {
    if (!run.sweep) {
      groups.push({ sweep: null, runs: [run] });
      continue;
    }
    const members = sweeps.get(run.sweep);
    if (members) {
      members.push(run);
    } else {
      const group = { sweep: run.sweep, runs: [run] };
      sweeps.set(run.sweep, group.runs);
      groups.push(group);
    }
  }
  return groups;
}

export namespace RunsModel {
  export interface IOptions {
    api: IRunsApi;
    /** Seconds the server may hold a live request open. */
    liveTimeout?: number;
    /** Milliseconds between live requests (and the first retry delay after a failure). */
    liveInterval?: number;
    /** Start the live channel at once; defaults to true. */
    live?: boolean;
    /** Whether anyone is looking (the panel is shown); the live channel rests otherwise. */
    isActive?: () => boolean;
    /**
     * Milliseconds between looks at an expanded run while one of its exports works: exports report
     * through the run's events, which the live channel's list does not carry, and outlive the run.
     */
    exportInterval?: number;
    /** Milliseconds an export started here may take to first report before it is shown as failed. */
    exportGrace?: number;
  }
}

export class RunsModel {
  constructor(options: RunsModel.IOptions) {
    this._api = options.api;
    this._liveTimeout = options.liveTimeout ?? 25;
    const isActive = (this._isActive = options.isActive ?? (() => true));
    this._exportInterval = options.exportInterval ?? 1000;
    this._exports = new ExportTracker(options.exportGrace ?? 120 * 1000);
    this._poll = new Poll({
      auto: options.live ?? true,
      factory: () => this._waitForChange(),
      frequency: {
        interval: options.liveInterval ?? 200,
        backoff: true,
        max: 30 * 1000
      },
      name: 'ftkit:runs',
      standby: () => (isActive() ? 'when-hidden' : true)
    });
  }

  /** Emitted after anything the view shows has changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get runs(): readonly IRunSummary[] {
    return this._runs;
  }

  /** Runs matching the query, over all pages. */
  get total(): number {
    return this._total;
  }

  /** Runs of each status matching the search, whatever the status filter (null from older servers). */
  get counts(): Readonly<StatusCounts> | null {
    return this._counts;
  }

  /** Runs ticked for comparison, in the order they were ticked (kept across pages and filters). */
  get checked(): readonly string[] {
    return [...this._checked];
  }

  isChecked(runId: string): boolean {
    return this._checked.has(runId);
  }

  /** Tick (or untick) runs for comparison. */
  setChecked(runIds: readonly string[], checked: boolean): void {
    for (const id of runIds) {
      if (checked) {
        this._checked.add(id);
      } else {
        this._checked.delete(id);
      }
    }
    this._changed.emit();
  }

  clearChecked(): void {
    this._checked.clear();
    this._changed.emit();
  }

  get query(): Readonly<IListQuery> {
    return this._query;
  }

  /** True until the first page has arrived. */
  get loading(): boolean {
    return this._loading;
  }

  /** The last failure, in words; cleared by the next success. */
  get error(): string | null {
    return this._error;
  }

  /** The run the palette commands act on (the last one clicked). */
  get selected(): IRunSummary | null {
    return this._runs.find(run => run.id === this._selectedId) ?? null;
  }

  get hasPreviousPage(): boolean {
    return this._query.offset > 0;
  }

  get hasNextPage(): boolean {
    return this._query.offset + this._runs.length < this._total;
  }

  /** Server clock minus ours, in seconds, so running durations tick without a request. */
  get clockSkew(): number {
    return this._clockSkew;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** True from an accepted stop request until the run leaves "running". */
  isStopping(runId: string): boolean {
    return this._stopping.has(runId);
  }

  isExpanded(runId: string): boolean {
    return this._expanded.has(runId);
  }

  detail(runId: string): IRunDetail | undefined {
    return this._details.get(runId);
  }

  /**
   * A checkpoint's exports, oldest first: those the server lists, then those started here that it
   * does not list yet (the job has not reported). One that never reports shows as failed after a while.
   */
  exports(runId: string, checkpoint: string): IExport[] {
    return this._exports.exports(runId, this._details.get(runId), checkpoint);
  }

  /** True from an accepted stop request until the export ends. */
  isStoppingExport(exportId: string): boolean {
    return this._exports.isStopping(exportId);
  }

  /** Start an export of a checkpoint; the run is expanded, and followed until its exports end. */
  async startExport(runId: string, request: IExportRequest): Promise<IExport> {
    let started: IExport | undefined;
    await this._act(async () => {
      started = await this._api.startExport(runId, request);
      this._exports.started(runId, started);
      this._expanded.add(runId);
    });
    return started as IExport;
  }

  /** Stop an export's job: it removes its partial files and records "stopped". */
  async stopExport(runId: string, exportId: string): Promise<void> {
    await this._act(async () => {
      await this._api.stopExport(runId, exportId);
      this._exports.stopping(exportId);
    });
  }

  select(runId: string | null): void {
    if (runId !== this._selectedId) {
      this._selectedId = runId;
      this._changed.emit();
    }
  }

  /**
   * Select a run the page may not show (a run's parent): when it is not listed, the list searches
   * for its id, which finds it (and the runs that start from it) whatever the filters and page.
   */
  async reveal(runId: string): Promise<void> {
    this.select(runId);
    if (!this._runs.some(run => run.id === runId)) {
      await this.setQuery({ q: runId, status: [] });
    }
  }

  /** Change the filters, sort or page; any change but the offset goes back to the first page. */
  async setQuery(patch: Partial<IListQuery>): Promise<void> {
    const offset = patch.offset ?? 0;
    if (patch.status) {
      patch = { ...patch, status: patch.status.filter(s => RUN_STATUSES.includes(s)) };
    }
    this._query = { ...this._query, ...patch, offset: Math.max(0, offset) };
    await this.refresh();
  }

  nextPage(): Promise<void> {
    return this.setQuery({ offset: this._query.offset + this._query.limit });
  }

  previousPage(): Promise<void> {
    return this.setQuery({ offset: Math.max(0, this._query.offset - this._query.limit) });
  }

  filterStatus(status: RunStatus | null): Promise<void> {
    return this.setQuery({ status: status ? [status] : [] });
  }

  /** Fetch the page and every expanded run's detail now, and restart the live request. */
  async refresh(): Promise<void> {
    this._abortLive();
    const query = this._query;
    try {
      const page = await this._api.list(query);
      if (query !== this._query) {
        return; // a newer query's refresh will apply its own page
      }
      this._applyPage(page, true);
      await this._refreshDetails([...this._expanded]);
    } catch (error) {
      this._fail(error);
    }
    if (!this._isDisposed && this._poll.state.phase !== 'constructed') {
      void this._poll.refresh();
    }
  }

  async toggle(runId: string): Promise<void> {
    if (this._expanded.delete(runId)) {
      this._changed.emit();
      return;
    }
    this._expanded.add(runId);
    this._changed.emit();
    await this._refreshDetails([runId]);
  }

  async stop(runId: string): Promise<void> {
    await this._act(async () => {
      await this._api.stop(runId);
      this._stopping.add(runId);
    });
  }

  async deleteRun(runId: string): Promise<void> {
    await this._act(() => this._api.deleteRun(runId));
    this._expanded.delete(runId);
    this._details.delete(runId);
    this._checked.delete(runId);
  }

  async deleteCheckpoint(runId: string, step: number): Promise<void> {
    await this._act(() => this._api.deleteCheckpoint(runId, step));
  }

  /**
   * Call `onChange` whenever the listed summary of one of `runIds` changes (progress, status,
   * checkpoints, best metric; or whatever `key` says matters): how views of a training run follow
   * the live channel. Returns the disconnect.
   */
  watch(runIds: readonly string[], onChange: () => void, key: (run: IRunSummary) => string = runKey): () => void {
    const ids = new Set(runIds);
    const keys = () => JSON.stringify(this._runs.filter(run => ids.has(run.id)).map(key));
    let last = keys();
    const listener = () => {
      const now = keys();
      if (now !== last) {
        last = now;
        onChange();
      }
    };
    this._changed.connect(listener);
    return () => {
      this._changed.disconnect(listener);
    };
  }

  /** Start following the live channel (the poll also starts on construction unless `live: false`). */
  startLive(): Promise<void> {
    return this._poll.start();
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._abortLive();
    clearTimeout(this._exportTimer ?? undefined);
    this._poll.dispose();
    Signal.clearData(this);
  }

  /** An action, then a refresh; a failure is both shown (error) and rethrown to the caller. */
  private async _act(action: () => Promise<void>): Promise<void> {
    try {
      await action();
    } catch (error) {
      this._fail(error);
      throw error;
    }
    await this.refresh();
  }

  /** One poll tick: hold a live request until the page changes, then apply it. */
  private async _waitForChange(): Promise<void> {
    this._abortLive(); // at most one request held open: browsers allow few per server
    const controller = new AbortController();
    this._liveController = controller;
    const query = this._query;
    try {
      const page = await this._api.live(query, this._etag, this._liveTimeout, controller.signal);
      if (controller.signal.aborted || query !== this._query) {
        return; // a refresh or a new query took over
      }
      const before = new Map(this._runs.map(run => [run.id, runKey(run)]));
      this._applyPage(page, false);
      const stale = page.runs
        .filter(run => this._expanded.has(run.id) && before.get(run.id) !== runKey(run))
        .map(run => run.id);
      await this._refreshDetails(stale);
    } catch (error) {
      if (controller.signal.aborted) {
        return;
      }
      this._fail(error);
      throw error; // the poll backs off
    } finally {
      if (this._liveController === controller) {
        this._liveController = null;
      }
    }
  }

  private _applyPage(page: IRunsPage, always: boolean): void {
    const { runs, total, etag } = page;
    this._clockSkew = page.server_time - Date.now() / 1000;
    this._counts = page.counts ?? null;
    const changed = always || etag !== this._etag || this._loading || this._error !== null;
    for (const run of runs) {
      if (run.status !== 'running' && run.status !== 'queued') {
        this._stopping.delete(run.id);
      }
    }
    this._runs = runs;
    this._total = total;
    this._etag = etag;
    this._loading = false;
    this._error = null;
    if (this._total > 0 && runs.length === 0 && this._query.offset > 0) {
      // the last page emptied (runs deleted): step back instead of showing nothing
      void this.previousPage();
    }
    if (changed) {
      this._changed.emit();
    }
  }

  private async _refreshDetails(runIds: string[]): Promise<void> {
    if (!runIds.length) {
      return;
    }
    const results = await Promise.allSettled(runIds.map(id => this._api.detail(id)));
    results.forEach((result, i) => {
      if (result.status === 'fulfilled') {
        this._details.set(runIds[i], result.value);
        this._exports.settle(runExports(result.value));
      } else {
        this._expanded.delete(runIds[i]); // deleted elsewhere
        this._details.delete(runIds[i]);
      }
    });
    this._changed.emit();
    this._followExports();
  }

  /** Expanded runs with an export at work (or started here and not reported yet): fetched again soon. */
  private _runsWithActiveExports(): string[] {
    return [...this._expanded].filter(runId => this._exports.hasActive(runId, this._details.get(runId)));
  }

  /**
   * While an expanded run has an export at work, fetch its detail every `exportInterval` ms. Rests
   * while the panel is hidden: showing it refreshes, which follows again.
   */
  private _followExports(): void {
    if (this._exportTimer !== null || this._isDisposed || !this._runsWithActiveExports().length) {
      return;
    }
    this._exportTimer = setTimeout(() => {
      this._exportTimer = null;
      const runIds = this._runsWithActiveExports();
      if (runIds.length && this._isActive() && !this._isDisposed) {
        void this._refreshDetails(runIds).catch(error => this._fail(error));
      }
    }, this._exportInterval);
  }

  private _abortLive(): void {
    this._liveController?.abort();
    this._liveController = null;
  }

  private _fail(error: unknown): void {
    this._error = error instanceof Error ? error.message : String(error);
    this._loading = false;
    this._changed.emit();
  }

  private readonly _api: IRunsApi;
  private readonly _liveTimeout: number;
  private readonly _poll: Poll;
  private readonly _changed = new Signal<this, void>(this);
  private _runs: IRunSummary[] = [];
  private _total = 0;
  private _counts: StatusCounts | null = null;
  private readonly _checked = new Set<string>();
  private _etag = '';
  private _query: IListQuery = { ...DEFAULT_QUERY };
  private _loading = true;
  private _error: string | null = null;
  private _clockSkew = 0;
  private _selectedId: string | null = null;
  private readonly _expanded = new Set<string>();
  private readonly _stopping = new Set<string>();
  private readonly _details = new Map<string, IRunDetail>();
  private _liveController: AbortController | null = null;
  private _isDisposed = false;
  private readonly _isActive: () => boolean;
  private readonly _exportInterval: number;
  private readonly _exports: ExportTracker;
  private _exportTimer: ReturnType<typeof setTimeout> | null = null;
}
