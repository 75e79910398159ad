/** RunsModel: state, paging, live updates and actions, against a fake server (no DOM, no network). */

import { afterEach, describe, expect, it } from 'vitest';

import {
  IListQuery,
  IRunDetail,
  IRunsApi,
  IRunsPage,
  IRunSummary,
  RUN_STATUSES,
  RunStatus,
  RunsApiError,
  StatusCounts
} from '../src/api';
import { groupBySweep, RunsModel } from '../src/model';

function summary(id: string, status: RunStatus = 'completed', step = 10): IRunSummary {
  return {
    id,
    name: `run ${id}`,
    status,
    task: 'ner',
    model: 'default',
    adapter: 'lora',
    pid: null,
    error: null,
    created: 1000,
    started: 1000,
    ended: status === 'running' ? null : 1100,
    duration: 100,
    progress: { step, total_steps: 100, epoch: 1, samples_per_second: 5, eta_seconds: null, loss: 0.1 },
    best_metric: { name: 'validation_f1', value: 0.9 },
    checkpoint_count: 1
  };
}

/** An in-memory server: `runs` is the store; `live` answers once the page's etag differs. */
class FakeApi implements IRunsApi {
  runs: IRunSummary[] = [];
  calls: string[] = [];
  liveQueries: IListQuery[] = [];
  failNext: Error | null = null;
  private waiters: (() => void)[] = [];

  page(query: IListQuery): IRunsPage {
    const matching = this.runs.filter(
      run =>
        (!query.status.length || query.status.includes(run.status)) &&
        run.name.includes(query.q)
    );
    const runs = matching.slice(query.offset, query.offset + query.limit);
    const counts = Object.fromEntries(RUN_STATUSES.map(s => [s, 0])) as StatusCounts;
    this.runs.filter(run => run.name.includes(query.q)).forEach(run => counts[run.status]++);
    return {
      runs,
      total: matching.length,
      counts,
      offset: query.offset,
      limit: query.limit,
      etag: JSON.stringify([runs, matching.length]),
      server_time: Date.now() / 1000
    };
  }

  /** Change the store, as a training worker would, and wake held live requests. */
  update(change: () => void): void {
    change();
    this.waiters.splice(0).forEach(wake => wake());
  }

  async list(query: IListQuery): Promise<IRunsPage> {
    this.calls.push(`list ${query.offset}`);
    if (this.failNext) {
      const error = this.failNext;
      this.failNext = null;
      throw error;
    }
    return this.page(query);
  }

  async live(query: IListQuery, etag: string, _timeout: number, signal?: AbortSignal): Promise<IRunsPage> {
    this.liveQueries.push(query);
    while (this.page(query).etag === etag) {
      await new Promise<void>((resolve, reject) => {
        this.waiters.push(resolve);
        signal?.addEventListener('abort', () => reject(new Error('aborted')));
      });
    }
    return this.page(query);
  }

  async detail(runId: string): Promise<IRunDetail> {
    this.calls.push(`detail ${runId}`);
    const run = this.runs.find(r => r.id === runId);
    if (!run) {
      throw new RunsApiError(404, 'run_not_found', `no run '${runId}'`);
    }
    const checkpoints = Array.from({ length: run.checkpoint_count }, (_, i) => ({
      step: (i + 1) * 10,
      path: `checkpoint-${(i + 1) * 10}`,
      abs_path: `/runs/${runId}/checkpoint-${(i + 1) * 10}`,
      size: 1000,
      adapter_only: true,
      metrics: { f1: 0.9 }
    }));
    return { ...run, metrics: {}, metric_history: [], checkpoints, config: {}, dir: `/runs/${runId}`, log_tail: '', stop_requested: false };
  }

  async config(): Promise<never> {
    throw new Error('not used');
  }

  async stop(runId: string): Promise<void> {
    this.calls.push(`stop ${runId}`);
    const run = this.runs.find(r => r.id === runId);
    if (!run || run.status !== 'running') {
      throw new RunsApiError(409, 'run_not_active', `run '${runId}' is not running`);
    }
  }

  async deleteRun(runId: string): Promise<void> {
    this.calls.push(`delete ${runId}`);
    this.update(() => (this.runs = this.runs.filter(r => r.id !== runId)));
  }

  async deleteCheckpoint(runId: string, step: number): Promise<void> {
    this.calls.push(`delete ${runId}@${step}`);
    this.update(() => {
      const run = this.runs.find(r => r.id === runId)!;
      run.checkpoint_count -= 1;
    });
  }
}

/** Resolves when `predicate` holds after a model change (or fails after a second). */
function when(model: RunsModel, predicate: () => boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    if (predicate()) {
      return resolve();
    }
    const timer = setTimeout(() => reject(new Error('the model never reached the expected state')), 1000);
    const check = () => {
      if (predicate()) {
        clearTimeout(timer);
        model.changed.disconnect(check);
        resolve();
      }
    };
    model.changed.connect(check);
  });
}

/** Resolves once `predicate` holds, checking every few milliseconds (fails after a second). */
async function eventually(predicate: () => boolean): Promise<void> {
  for (let waited = 0; !predicate(); waited += 5) {
    if (waited > 1000) {
      throw new Error('the condition never held');
    }
    await new Promise(resolve => setTimeout(resolve, 5));
  }
}

const models: RunsModel[] = [];
function makeModel(api: IRunsApi, live = false): RunsModel {
  const model = new RunsModel({ api, live, liveInterval: 5 });
  models.push(model);
  return model;
}

afterEach(() => {
  models.splice(0).forEach(model => model.dispose());
});

describe('RunsModel', () => {
  it('starts loading, then holds the first page and the total', async () => {
    const api = new FakeApi();
    api.runs = [summary('a'), summary('b')];
    const model = makeModel(api);
    expect(model.loading).toBe(true);
    await model.refresh();
    expect(model.loading).toBe(false);
    expect(model.runs.map(r => r.id)).toEqual(['a', 'b']);
    expect(model.total).toBe(2);
  });

  it('pages through runs and knows when there is a next or previous page', async () => {
    const api = new FakeApi();
    api.runs = Array.from({ length: 120 }, (_, i) => summary(`r${i}`));
    const model = makeModel(api);
    await model.refresh();
    expect(model.runs).toHaveLength(50);
    expect([model.hasPreviousPage, model.hasNextPage]).toEqual([false, true]);
    await model.nextPage();
    await model.nextPage();
    expect(model.query.offset).toBe(100);
    expect(model.runs.map(r => r.id)[0]).toBe('r100');
    expect([model.hasPreviousPage, model.hasNextPage]).toEqual([true, false]);
    await model.previousPage();
    expect(model.query.offset).toBe(50);
  });

  it('goes back to the first page when the filter changes', async () => {
    const api = new FakeApi();
    api.runs = [...Array.from({ length: 60 }, (_, i) => summary(`c${i}`)), summary('x', 'failed')];
    const model = makeModel(api);
    await model.refresh();
    await model.nextPage();
    await model.filterStatus('failed');
    expect(model.query).toMatchObject({ offset: 0, status: ['failed'] });
    expect(model.runs.map(r => r.id)).toEqual(['x']);
    await model.setQuery({ status: [], q: 'c5' });
    expect(model.total).toBe(11); // c5, c50..c59
  });

  it('follows the live channel: progress appears without a refresh', async () => {
    const api = new FakeApi();
    api.runs = [summary('a', 'running', 10)];
    const model = makeModel(api, true);
    await when(model, () => model.runs.length === 1);
    api.update(() => (api.runs = [summary('a', 'running', 11)]));
    await when(model, () => model.runs[0].progress.step === 11);
    api.update(() => (api.runs = [summary('a', 'completed', 100)]));
    await when(model, () => model.runs[0].status === 'completed');
  });

  it('follows the live channel: the phase before the first step appears, then the steps', async () => {
    const api = new FakeApi();
    const starting = { name: 'starting', done: null, total: null, detail: null };
    api.runs = [{ ...summary('a', 'queued', 0), phase: starting }];
    const model = makeModel(api, true);
    await when(model, () => model.runs[0]?.phase?.name === 'starting');
    const tokenising = { name: 'tokenising', done: 500, total: 1000, detail: 'train' };
    api.update(() => (api.runs = [{ ...summary('a', 'running', 0), phase: tokenising }]));
    await when(model, () => model.runs[0].phase?.done === 500);
    api.update(() => (api.runs = [{ ...summary('a', 'running', 1), phase: null }]));
    await when(model, () => model.runs[0].phase === null && model.runs[0].progress.step === 1);
  });

  it('asks the live channel for the current query after the query changes', async () => {
    const api = new FakeApi();
    api.runs = [summary('a', 'running'), summary('b', 'failed')];
    const model = makeModel(api, true);
    await when(model, () => model.runs.length === 2);
    await model.filterStatus('failed');
    await eventually(() => api.liveQueries.some(q => q.status[0] === 'failed'));
    api.update(() => api.runs.push(summary('c', 'failed')));
    await when(model, () => model.runs.length === 2 && model.runs.every(r => r.status === 'failed'));
  });

  it('loads checkpoints when a run is expanded, and again when its checkpoints change', async () => {
    const api = new FakeApi();
    api.runs = [{ ...summary('a', 'running'), checkpoint_count: 1 }];
    const model = makeModel(api, true);
    await when(model, () => model.runs.length === 1);
    await model.toggle('a');
    expect(model.isExpanded('a')).toBe(true);
    expect(model.detail('a')?.checkpoints.map(c => c.step)).toEqual([10]);
    api.update(() => (api.runs = [{ ...summary('a', 'running'), checkpoint_count: 2 }]));
    await when(model, () => model.detail('a')?.checkpoints.length === 2);
    await model.toggle('a');
    expect(model.isExpanded('a')).toBe(false);
  });

  it('stops a run through the api and refreshes', async () => {
    const api = new FakeApi();
    api.runs = [summary('a', 'running')];
    const model = makeModel(api);
    await model.refresh();
    await model.stop('a');
    expect(api.calls).toEqual(['list 0', 'stop a', 'list 0']);
    expect(model.isStopping('a')).toBe(true);
    api.runs = [summary('a', 'stopped')];
    await model.refresh();
    expect(model.isStopping('a')).toBe(false);
  });

  it('reports a refused action as an error and rethrows it', async () => {
    const api = new FakeApi();
    api.runs = [summary('a', 'completed')];
    const model = makeModel(api);
    await model.refresh();
    await expect(model.stop('a')).rejects.toThrow("run 'a' is not running");
    expect(model.error).toBe("run 'a' is not running");
    await model.refresh();
    expect(model.error).toBeNull();
  });

  it('deletes a run and forgets its expanded detail', async () => {
    const api = new FakeApi();
    api.runs = [summary('a'), summary('b')];
    const model = makeModel(api);
    await model.refresh();
    await model.toggle('a');
    await model.deleteRun('a');
    expect(model.runs.map(r => r.id)).toEqual(['b']);
    expect(model.isExpanded('a')).toBe(false);
    expect(model.detail('a')).toBeUndefined();
  });

  it('deletes a checkpoint and shows the run without it', async () => {
    const api = new FakeApi();
    api.runs = [{ ...summary('a'), checkpoint_count: 2 }];
    const model = makeModel(api);
    await model.refresh();
    await model.toggle('a');
    await model.deleteCheckpoint('a', 20);
    expect(api.calls).toContain('delete a@20');
    expect(model.detail('a')?.checkpoints).toHaveLength(1);
  });

  it('keeps the last page on screen and shows the error when the server is unreachable', async () => {
    const api = new FakeApi();
    api.runs = [summary('a')];
    const model = makeModel(api);
    await model.refresh();
    api.failNext = new Error('Failed to fetch');
    await model.refresh();
    expect(model.error).toBe('Failed to fetch');
    expect(model.runs.map(r => r.id)).toEqual(['a']);
  });

  it('steps back a page when the last page empties', async () => {
    const api = new FakeApi();
    api.runs = Array.from({ length: 51 }, (_, i) => summary(`r${i}`));
    const model = makeModel(api);
    await model.refresh();
    await model.nextPage();
    expect(model.runs.map(r => r.id)).toEqual(['r50']);
    await model.deleteRun('r50');
    await when(model, () => model.query.offset === 0 && model.runs.length === 50);
  });

  it('tracks the selected run for the palette commands', async () => {
    const api = new FakeApi();
    api.runs = [summary('a'), summary('b')];
    const model = makeModel(api);
    await model.refresh();
    expect(model.selected).toBeNull();
    model.select('b');
    expect(model.selected?.id).toBe('b');
  });

  it('rests while the panel is hidden, then follows again once shown', async () => {
    const api = new FakeApi();
    api.runs = [summary('a', 'running')];
    let shown = false;
    const model = new RunsModel({ api, liveInterval: 5, isActive: () => shown });
    models.push(model);
    await new Promise(resolve => setTimeout(resolve, 50));
    expect(api.liveQueries).toHaveLength(0);
    shown = true;
    await when(model, () => model.runs.length === 1);
  });

  it('stops polling once disposed', async () => {
    const api = new FakeApi();
    api.runs = [summary('a', 'running')];
    const model = makeModel(api, true);
    await when(model, () => model.runs.length === 1);
    model.dispose();
    const asked = api.liveQueries.length;
    api.update(() => (api.runs = [summary('a', 'running', 50)]));
    await new Promise(resolve => setTimeout(resolve, 50));
    expect(api.liveQueries.length).toBe(asked);
    expect(model.isDisposed).toBe(true);
  });

  it('counts runs of each status matching the search, whatever the status filter', async () => {
    const api = new FakeApi();
    api.runs = [summary('a', 'running'), summary('b'), summary('c'), summary('d', 'failed')];
    const model = makeModel(api);
    await model.setQuery({ status: ['failed'] });
    expect(model.runs.map(r => r.id)).toEqual(['d']);
    expect(model.counts).toEqual({ queued: 0, running: 1, completed: 2, failed: 1, stopped: 0 });
  });

  it('keeps runs ticked for comparison across pages, in ticking order, and forgets a deleted one', async () => {
    const api = new FakeApi();
    api.runs = Array.from({ length: 60 }, (_, i) => summary(`r${i}`));
    const model = makeModel(api);
    await model.refresh();
    model.setChecked(['r3'], true);
    await model.nextPage();
    model.setChecked(['r55', 'r52'], true);
    expect(model.checked).toEqual(['r3', 'r55', 'r52']);
    model.setChecked(['r55'], false);
    expect([model.isChecked('r55'), model.isChecked('r52')]).toEqual([false, true]);
    await model.deleteRun('r52');
    expect(model.checked).toEqual(['r3']);
    model.clearChecked();
    expect(model.checked).toEqual([]);
  });

  it('tells a watcher when one of its runs changes on the live channel, and only then', async () => {
    const api = new FakeApi();
    api.runs = [summary('a', 'running', 10), summary('b', 'running', 10)];
    const model = makeModel(api, true);
    await when(model, () => model.runs.length === 2);
    let calls = 0;
    const unwatch = model.watch(['a'], () => calls++);
    api.update(() => (api.runs = [summary('a', 'running', 10), summary('b', 'running', 11)]));
    await when(model, () => model.runs[1].progress.step === 11);
    expect(calls).toBe(0); // another run moved
    api.update(() => (api.runs = [summary('a', 'running', 12), summary('b', 'running', 11)]));
    await when(model, () => model.runs[0].progress.step === 12);
    expect(calls).toBe(1);
    unwatch();
    api.update(() => (api.runs = [summary('a', 'completed', 100), summary('b', 'running', 11)]));
    await when(model, () => model.runs[0].status === 'completed');
    expect(calls).toBe(1);
  });
});

describe('groupBySweep', () => {
  it("gathers a sweep's runs where its first run is listed and leaves other runs in place", () => {
    const runs = [
      summary('a'),
      { ...summary('s1'), sweep: 'lr' },
      summary('b'),
      { ...summary('s2'), sweep: 'lr' },
      { ...summary('t1'), sweep: 'seed' }
    ];
    expect(groupBySweep(runs).map(g => [g.sweep, g.runs.map(r => r.id)])).toEqual([
      [null, ['a']],
      ['lr', ['s1', 's2']],
      [null, ['b']],
      ['seed', ['t1']]
    ]);
  });
});
