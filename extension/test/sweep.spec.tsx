/** A sweep's view: its table as HTML (pruned trials marked, the best marked, run-provided text escaped), a plot
 * per searched setting, what Compare and Stop offer, and the model's loads while the sweep works. */

import * as React from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { ISweepEntry, ISweepSummary } from '../src/api';
import { settingPlot, SweepModel, sweepStateText } from '../src/sweep';
import { SweepView } from '../src/sweep-view';

const HOSTILE = '<img src=x onerror="window.__ftkit_xss=1">';
const ESCAPED = '&lt;img src=x onerror=&quot;window.__ftkit_xss=1&quot;&gt;';
const LR = 'training.learning_rate';
const R = 'adapter.r';

/** The text of every match's first group, in order. */
const all = (text: string, pattern: RegExp) => [...text.matchAll(pattern)].map(m => m[1]);
const noop = () => undefined;

function entry(trial: number, fields: Partial<ISweepEntry> = {}): ISweepEntry {
  return {
    id: `r${trial}`,
    name: `lr-${trial + 1}`,
    status: 'completed',
    trial,
    settings: { [LR]: 1e-4 * (trial + 1), [R]: 8 },
    value: 0.5 + trial / 10,
    ...fields
  };
}

const RUNS = [
  entry(0, { settings: { [LR]: 1e-5, [R]: 4 }, value: 0.6 }),
  entry(1, { status: 'pruned', settings: { [LR]: 5e-3, [R]: 16 }, value: 0.3 }),
  entry(2, { settings: { [LR]: 3e-4, [R]: 8 }, value: 0.8, name: HOSTILE }),
  entry(3, { id: null, name: null, status: 'failed', settings: { [LR]: 9e-3, [R]: 32 }, value: null, error: 'refused' })
];

const SEARCH: ISweepSummary = {
  sweep: 'lr',
  kind: 'search',
  state: 'finished',
  keys: [LR, R],
  metric: 'validation_f1',
  higher_is_better: true,
  runs: RUNS,
  best: RUNS[2],
  trials: 6,
  parallel: 2,
  pruner: 'median',
  storage: null,
  error: null
};

/** A server that answers `summaries` one after another (the last one again and again), counting loads and stops. */
function fakeApi(...summaries: ISweepSummary[]) {
  const api = {
    loads: 0,
    stops: [] as string[],
    sweep: async (name: string) => {
      expect(name).toBe('lr');
      return summaries[Math.min(api.loads++, summaries.length - 1)];
    },
    stopSweep: async (name: string) => {
      api.stops.push(name);
      return summaries[summaries.length - 1];
    }
  };
  return api;
}

const html = (summary: ISweepSummary, model: SweepModel = new SweepModel(fakeApi(summary), 'lr')) =>
  renderToStaticMarkup(<SweepView summary={summary} model={model} onCompare={noop} onStop={noop} />);

describe('SweepView', () => {
  it('shows a row per trial with its settings, status and metric; the pruned one marked, the best starred', () => {
    const out = html(SEARCH);
    expect(all(out, /<tr class="[^"]*"(?: data-run-id="[^"]*")? data-trial="(\d+)"/g)).toEqual(['0', '1', '2', '3']);
    expect(all(out, /data-run-id="([^"]+)" data-trial/g)).toEqual(['r0', 'r1', 'r2']);
    expect(all(out, /<tr class="([^"]*)"/g)).toEqual(['ftkit-SweepRow', 'ftkit-SweepRow ftkit-Sweep-pruned', 'ftkit-SweepRow ftkit-mod-best', 'ftkit-SweepRow']);
    expect(all(out, /ftkit-SweepRow-status"[^>]*>([^<]*)</g)).toEqual(['completed', 'pruned', 'completed', 'failed']);
    expect(all(out, /<th class="ftkit-Compare-key" data-key="([^"]+)"/g)).toEqual([LR, R]);
    expect(all(out, /<td class="ftkit-Compare-key">([^<]*)</g)).toEqual(['0.00001', '4', '0.005', '16', '0.0003', '8', '0.009', '32']);
    expect(all(out, /<td class="ftkit-SweepTable-metric">([^<]*)</g)).toEqual(['0.6000', '0.3000', '0.8000', '—']);
    expect(out).toContain('trial 3'); // no run: named by its trial, and cannot be ticked
    expect(out.match(/aria-label="best"/g)).toHaveLength(1);
    expect(out).toContain('finished · 4 of 6 trials done · 2 at a time · median pruner');
  });

  it('draws the metric against each searched setting, pruned runs hollow and unscored ones counted', () => {
    const out = html(SEARCH);
    expect(all(out, /<figure class="ftkit-Chart ftkit-SweepPlot" data-key="([^"]+)"/g)).toEqual([LR, R]);
    expect(all(out, /<circle class="([^"]*)" data-run-id="r\d"/g).slice(0, 3)).toEqual([
      'ftkit-SweepPlot-point',
      'ftkit-SweepPlot-point ftkit-mod-pruned',
      'ftkit-SweepPlot-point ftkit-mod-best'
    ]);
    expect(out.match(/<circle/g)).toHaveLength(6); // three scored runs on each of two plots
    expect(out).toContain('(log scale) · 1 without a score');
  });

  it('keeps a hostile run name as text', () => {
    const out = html(SEARCH);
    expect(out).not.toContain('<img');
    expect(out).toContain(ESCAPED);
  });

  it('offers Compare with two ticked runs and Stop while the sweep works', () => {
    const model = new SweepModel(fakeApi(SEARCH), 'lr');
    expect(html(SEARCH, model)).toMatch(/<button[^>]*disabled=""[^>]*>Compare selected \(0\)/);
    expect(html(SEARCH, model)).not.toContain('Stop sweep');
    const working = { ...SEARCH, state: 'searching' as const };
    expect(html(working, model)).toContain('Stop sweep');
    expect(html({ ...SEARCH, kind: 'grid', state: 'grid', runs: [entry(0, { status: 'running' })] }, model)).toContain('Stop sweep');
  });

  it('says so when no run has a score yet', () => {
    const out = html({ ...SEARCH, runs: [entry(0, { status: 'running', value: null })], best: null });
    expect(out).toContain('no run has a validation score yet');
    expect(out).toContain('no scores yet');
  });
});

describe('sweep helpers', () => {
  it('reads a wide positive range on a log scale, a narrow one linearly, anything else as categories', () => {
    expect(settingPlot(SEARCH, LR).axis.kind).toBe('log');
    expect(settingPlot(SEARCH, LR).points.map(p => p.x)).toEqual([-5, Math.log10(5e-3), Math.log10(3e-4)]);
    expect(settingPlot(SEARCH, R).axis.kind).toBe('linear');
    const kinds = { ...SEARCH, keys: ['adapter.kind'], runs: RUNS.map((e, i) => ({ ...e, settings: { 'adapter.kind': ['lora', 'full'][i % 2] } })) };
    const plot = settingPlot(kinds, 'adapter.kind');
    expect([plot.axis, plot.points.map(p => p.x), plot.unscored]).toEqual([{ kind: 'category', categories: ['lora', 'full'] }, [0, 1, 0], 1]);
  });

  it('puts a searched key on the scale the search searched it on', () => {
    const space = { key: R, low: 4, high: 512, log: false, integer: true, choices: null };
    const linear = { ...SEARCH, runs: RUNS.map((e, i) => ({ ...e, settings: { [R]: [4, 64, 512][i % 3] } })) };
    expect(settingPlot(linear, R).axis.kind).toBe('log'); // no spaces (a grid): values spanning decades
    expect(settingPlot({ ...linear, spaces: [space] }, R).axis.kind).toBe('linear');
    expect(settingPlot({ ...SEARCH, spaces: [{ ...space, key: R, low: 4, high: 32, log: true }] }, R).axis.kind).toBe('log');
  });

  it('describes a grid by its runs', () => {
    const grid: ISweepSummary = { ...SEARCH, kind: 'grid', state: 'grid', runs: [entry(0), entry(1, { status: 'running' })] };
    expect(sweepStateText(grid)).toBe('grid · 2 runs, 1 ended');
  });
});

describe('SweepModel', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const searching: ISweepSummary = { ...SEARCH, state: 'searching', runs: [entry(0, { status: 'running', value: null })] };

  it('loads again every few seconds while the sweep works, and rests once it is done', async () => {
    const api = fakeApi(searching, searching, SEARCH);
    const model = new SweepModel(api, 'lr', { interval: 1000 });
    await model.refresh();
    expect(model.isActive).toBe(true);
    await vi.advanceTimersByTimeAsync(1000);
    expect(api.loads).toBe(2);
    await vi.advanceTimersByTimeAsync(1000);
    expect([api.loads, model.isActive, model.remote.data?.state]).toEqual([3, false, 'finished']);
    await vi.advanceTimersByTimeAsync(5000);
    expect(api.loads).toBe(3);
    model.dispose();
  });

  it('rests while the view is hidden and stops loading once disposed', async () => {
    const api = fakeApi(searching);
    let shown = false;
    const model = new SweepModel(api, 'lr', { interval: 1000, isActive: () => shown });
    await model.refresh();
    await vi.advanceTimersByTimeAsync(3000);
    expect(api.loads).toBe(1);
    shown = true;
    await vi.advanceTimersByTimeAsync(1000);
    expect(api.loads).toBe(2);
    model.remote.dispose(); // the view closed
    await vi.advanceTimersByTimeAsync(5000);
    expect(api.loads).toBe(2);
  });

  it('keeps the ticked runs the sweep lists, in its order, and needs two to compare', async () => {
    const model = new SweepModel(fakeApi(SEARCH), 'lr');
    await model.refresh();
    let changes = 0;
    model.changed.connect(() => changes++);
    model.setSelected(['r2'], true);
    expect(model.canCompare).toBe(false);
    model.setSelected(['r0', 'gone'], true);
    expect([model.selected, model.canCompare, changes]).toEqual([['r0', 'r2'], true, 2]);
    model.setSelected(['r0'], false);
    expect(model.selected).toEqual(['r2']);
    model.dispose();
  });

  it('stops the sweep and says it is stopping until it no longer works', async () => {
    const api = fakeApi(searching, searching, searching, SEARCH);
    const model = new SweepModel(api, 'lr', { interval: 1000 });
    await model.refresh();
    await model.stop();
    expect([api.stops, model.isStopping]).toEqual([['lr'], true]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(model.isStopping).toBe(true);
    await vi.advanceTimersByTimeAsync(1000);
    expect([model.isStopping, model.isActive]).toEqual([false, false]);
    model.dispose();
  });
});
