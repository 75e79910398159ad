/** Exports of a checkpoint: the model starts, follows and stops them; their words; their list in the panel. */

import * as React from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { afterEach, describe, expect, it } from 'vitest';

import {
  IExport,
  IExportRequest,
  IListQuery,
  IRunDetail,
  IRunsApi,
  IRunsPage,
  IRunSummary,
  RunsApiError
} from '../src/api';
import {
  exportProgressText,
  exportTitle,
  formatPercent,
  quantLabel,
  verificationDetails,
  verificationText
} from '../src/exports';
import { ExportList } from '../src/exports-view';
import { RunsModel } from '../src/model';
import { runSummary } from './fixtures';

function summary(id: string): IRunSummary {
  return runSummary({ id, checkpoint_count: 2 });
}

/** A server whose run "a" (finished) has checkpoints 30 and 60; `exports` is what its events say. */
class FakeApi implements IRunsApi {
  exports: IExport[] = [];
  calls: string[] = [];
  /** Whether a started export shows up in the run's events (false: its job never reports). */
  reports = true;
  refuseStop = false;

  async list(query: IListQuery): Promise<IRunsPage> {
    this.calls.push('list');
    const runs = [summary('a')];
    return { runs, total: 1, offset: 0, limit: query.limit, etag: 'same', server_time: Date.now() / 1000 };
  }

  live(): Promise<IRunsPage> {
    return new Promise(() => undefined); // nothing changes in the list: exports are not in it
  }

  async detail(runId: string): Promise<IRunDetail> {
    this.calls.push(`detail ${runId}`);
    const checkpoints = [30, 60].map(step => ({
      step,
      name: `checkpoint-${step}`,
      path: `/runs/a/checkpoint-${step}`,
      abs_path: `/runs/a/checkpoint-${step}`,
      size: 1000,
      adapter_only: true,
      snippet: null,
      metrics: {},
      exports: this.exports.filter(e => e.checkpoint === `checkpoint-${step}`)
    }));
    return {
      ...summary(runId),
      metrics: {},
      metric_history: [],
      checkpoints,
      config: {},
      dir: '/runs/a',
      log_tail: '',
      stop_requested: false,
      exports: [...this.exports],
      export_format: 'gguf',
      export_quants: ['f16', 'q8_0', 'q4_0']
    };
  }

  async config(): Promise<never> {
    throw new Error('not used');
  }
  async log(): Promise<never> {
    throw new Error('not used');
  }
  async compare(): Promise<never> {
    throw new Error('not used');
  }
  async errors(): Promise<never> {
    throw new Error('not used');
  }
  async stop(): Promise<void> {}
  async deleteRun(): Promise<void> {}
  async deleteCheckpoint(): Promise<void> {}

  async startExport(runId: string, request: IExportRequest): Promise<IExport> {
    this.calls.push(`export ${runId} ${JSON.stringify(request)}`);
    const record: IExport = { id: 'e1', state: 'started', checkpoint: request.checkpoint, format: 'gguf', quant: request.quant ?? 'f16' };
    if (this.reports) {
      this.exports.push({ ...record, pid: 99 } as IExport);
    }
    return record;
  }

  async stopExport(runId: string, exportId: string): Promise<void> {
    this.calls.push(`stop-export ${runId} ${exportId}`);
    if (this.refuseStop) {
      throw new RunsApiError(409, 'export_ended', `export '${exportId}' has already ended (completed)`);
    }
  }

  /** The job reports, as its events would. */
  report(change: Partial<IExport>): void {
    this.exports = this.exports.map(e => ({ ...e, ...change }));
  }
}

async function eventually(predicate: () => boolean, what = 'the condition'): Promise<void> {
  for (let waited = 0; !predicate(); waited += 5) {
    if (waited > 2000) {
      throw new Error(`${what} never held`);
    }
    await new Promise(resolve => setTimeout(resolve, 5));
  }
}

const models: RunsModel[] = [];
function makeModel(api: IRunsApi, options: Partial<RunsModel.IOptions> = {}): RunsModel {
  const model = new RunsModel({ api, live: false, exportInterval: 5, ...options });
  models.push(model);
  return model;
}

afterEach(() => {
  models.splice(0).forEach(model => model.dispose());
});

const details = (api: FakeApi) => api.calls.filter(call => call.startsWith('detail')).length;

describe('RunsModel exports', () => {
  it('starts an export, shows it under its checkpoint and follows it after the run ended, until it ends', async () => {
    const api = new FakeApi();
    const model = makeModel(api);
    await model.refresh();
    const started = await model.startExport('a', { checkpoint: 'checkpoint-60', quant: 'q8_0', ollama: true });
    expect(started.id).toBe('e1');
    expect(api.calls).toContain('export a {"checkpoint":"checkpoint-60","quant":"q8_0","ollama":true}');
    expect(model.isExpanded('a')).toBe(true);
    expect(model.exports('a', 'checkpoint-60').map(e => [e.id, e.state])).toEqual([['e1', 'started']]);
    expect(model.exports('a', 'checkpoint-30')).toEqual([]);

    // the run is finished and the live channel quiet: the model looks again by itself
    api.report({ state: 'progress', detail: 'writing tensors', done: 12, total: 272 });
    await eventually(() => model.exports('a', 'checkpoint-60')[0]?.done === 12, 'progress');
    api.report({ state: 'completed', path: '/runs/a/exports/m.gguf', size: 2048, verification: { passed: true, agreement: 0.995, threshold: 0.95 } });
    await eventually(() => model.exports('a', 'checkpoint-60')[0]?.state === 'completed', 'completion');

    // ended: no more looks
    const after = details(api);
    await new Promise(resolve => setTimeout(resolve, 50));
    expect(details(api)).toBe(after);
  });

  it('shows an export started here at once, and as failed when its job never reports', async () => {
    const api = new FakeApi();
    api.reports = false;
    const model = makeModel(api, { exportGrace: 40 });
    await model.refresh();
    await model.startExport('a', { checkpoint: 'checkpoint-30' });
    expect(model.exports('a', 'checkpoint-30').map(e => e.state)).toEqual(['started']);
    await eventually(() => model.exports('a', 'checkpoint-30')[0].state === 'failed', 'the failure');
    expect(model.exports('a', 'checkpoint-30')[0].error).toContain('/runs/a/exports/export.log');
    const after = details(api);
    await new Promise(resolve => setTimeout(resolve, 50));
    expect(details(api)).toBe(after); // given up: no more looks
  });

  it('rests while the panel is hidden, and follows again once a refresh shows it', async () => {
    const api = new FakeApi();
    let shown = true;
    const model = makeModel(api, { isActive: () => shown });
    await model.refresh();
    await model.startExport('a', { checkpoint: 'checkpoint-60' });
    shown = false;
    await new Promise(resolve => setTimeout(resolve, 30));
    const hidden = details(api);
    await new Promise(resolve => setTimeout(resolve, 50));
    expect(details(api)).toBe(hidden);
    shown = true;
    await model.refresh();
    api.report({ state: 'failed', error: 'out of disk' });
    await eventually(() => model.exports('a', 'checkpoint-60')[0]?.state === 'failed', 'the failure');
  });

  it('stops an export through the api, and says so until it has stopped', async () => {
    const api = new FakeApi();
    const model = makeModel(api);
    await model.refresh();
    await model.startExport('a', { checkpoint: 'checkpoint-60' });
    await model.stopExport('a', 'e1');
    expect(api.calls).toContain('stop-export a e1');
    expect(model.isStoppingExport('e1')).toBe(true);
    api.report({ state: 'stopped' });
    await eventually(() => !model.isStoppingExport('e1'), 'the stop');
    expect(model.exports('a', 'checkpoint-60')[0].state).toBe('stopped');
  });

  it('reports a refused stop as an error and rethrows it', async () => {
    const api = new FakeApi();
    api.refuseStop = true;
    const model = makeModel(api);
    await model.refresh();
    await expect(model.stopExport('a', 'e1')).rejects.toThrow('has already ended');
    expect(model.error).toContain('has already ended');
    expect(model.isStoppingExport('e1')).toBe(false);
  });
});

describe('export words', () => {
  it('names the format and weights, the progress and the verification', () => {
    expect(exportTitle({ format: 'gguf', quant: 'q8_0' })).toBe('GGUF q8_0');
    expect(exportTitle({ format: 'onnx', quant: null })).toBe('ONNX');
    const base: IExport = { id: 'x', state: 'progress', checkpoint: 'checkpoint-60', format: 'gguf' };
    expect(exportProgressText({ ...base, detail: 'writing tensors', done: 1200, total: 2720 })).toBe('writing tensors 1,200/2,720');
    expect(exportProgressText({ ...base, state: 'started' })).toBe('starting…');
    expect(formatPercent(0.995)).toBe('99.5%');
    expect(formatPercent(1)).toBe('100%');
    expect(formatPercent(null)).toBe('—');
    expect(verificationText({ passed: true, agreement: 0.995, threshold: 0.95 })).toBe('agrees 99.5%');
    expect(verificationText({ passed: false, agreement: 0.91, threshold: 0.95 })).toBe('verification failed: agrees 91.0%, needs 95.0%');
    expect(verificationDetails({ passed: true, agreement: 1, threshold: 0.99, examples: 200, split: 'test', max_logit_difference: 0.00123 }))
      .toBe('passed: the export answers as the fine-tuned model did on 100% of the examples (needs 99.0%) · 200 test examples · max logit difference 0.0012');
    expect(quantLabel('f16')).toMatch(/^f16 \(/);
    expect(quantLabel('q2_k')).toBe('q2_k');
  });
});

describe('ExportList', () => {
  const HOSTILE = '<img src=x onerror="window.__ftkit_xss=1">';
  const records: IExport[] = [
    { id: 'w', state: 'progress', checkpoint: 'checkpoint-60', format: 'gguf', quant: 'q4_0', detail: 'writing tensors', done: 136, total: 272 },
    { id: 'ok', state: 'completed', checkpoint: 'checkpoint-60', format: 'gguf', quant: 'f16', path: '/runs/a/exports/model-f16.gguf', size: 3 * 1024 * 1024, verification: { passed: true, agreement: 0.995, threshold: 0.99 } },
    { id: 'bad', state: 'completed', checkpoint: 'checkpoint-60', format: 'gguf', quant: 'q4_0', path: '/runs/a/exports/model-q4_0.gguf', size: 1024, verification: { passed: false, agreement: 0.8, threshold: 0.85 } },
    { id: 'err', state: 'failed', checkpoint: 'checkpoint-60', format: 'gguf', quant: 'q8_0', error: HOSTILE }
  ];
  const html = (stopping: string[] = []) =>
    renderToStaticMarkup(React.createElement(ExportList, { exports: records, isStopping: id => stopping.includes(id), onStop: () => undefined }));

  it('shows progress and Stop while working, the agreement, the file and its size, and the error', () => {
    const out = html();
    const item = (id: string) => out.slice(out.indexOf(`data-export-id="${id}"`), out.indexOf('</li>', out.indexOf(`data-export-id="${id}"`)));
    expect(item('w')).toContain('aria-valuenow="136"');
    expect(item('w')).toContain('writing tensors 136/272');
    expect(item('w')).toContain('ftkit-Export-stop"');
    expect(item('ok')).not.toContain('ftkit-Export-stop"');
    expect(item('ok')).toContain('data-passed="true"');
    expect(item('ok')).toContain('agrees 99.5%');
    expect(item('ok')).toContain('/runs/a/exports/model-f16.gguf · 3.0 MB');
    // a failed verification is marked as failed, in the failure colour, with what it needed
    expect(item('bad')).toContain('data-passed="false"');
    expect(item('bad')).toContain('ftkit-Badge-failed ftkit-Export-verification');
    expect(item('bad')).toContain('verification failed: agrees 80.0%, needs 85.0%');
    expect(item('err')).toContain('ftkit-Export-error');
    expect(out).not.toContain('<img');
    expect(out).toContain('&lt;img src=x');
  });

  it('says stopping instead of Stop once asked', () => {
    const out = html(['w']);
    expect(out).toContain('stopping…');
    expect(out).not.toContain('ftkit-Export-stop"');
  });
});
