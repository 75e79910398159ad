/** RunProgress: the panel's progress line shows the phase before the first step, then the steps. */

import * as React from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';

import { IPhase, IRunSummary, RunStatus } from '../src/api';
import { formatPhase } from '../src/format';
import { RunProgress } from '../src/progress';

function run(status: RunStatus, phase: IPhase | null, step = 0): IRunSummary {
  return {
    id: 'r1',
    name: 'ner',
    status,
    task: 'ner',
    model: 'default',
    adapter: 'full',
    pid: 1,
    error: null,
    created: 1000,
    started: 1000,
    ended: null,
    duration: null,
    progress: { step, total_steps: step ? 100 : null, epoch: null, samples_per_second: null, eta_seconds: null, loss: null },
    best_metric: null,
    checkpoint_count: 0,
    phase
  };
}

const render = (summary: IRunSummary) => renderToStaticMarkup(<RunProgress run={summary} />);

describe('RunProgress', () => {
  it('names the phase of a run that has only just been launched', () => {
    const html = render(run('queued', { name: 'starting', done: null, total: null, detail: null }));
    expect(html).toContain('data-phase="starting"');
    expect(html).toContain('>starting</span>');
  });

  it('shows the count of a phase that has one, as text and as the bar', () => {
    const html = render(run('running', { name: 'tokenising', done: 3000, total: 12000, detail: 'train' }));
    expect(html).toContain('tokenising train 3,000/12,000');
    expect(html).toContain('aria-valuenow="3000"');
    expect(html).toContain('width:25.0%');
  });

  it('says when a split comes from the tokenised cache', () => {
    const phase = { name: 'tokenising', done: 1404, total: 1404, detail: 'validation (cached)' };
    expect(render(run('running', phase))).toContain('tokenising validation (cached) 1,404/1,404');
  });

  it('shows steps once training has started, and nothing for a finished run', () => {
    expect(render(run('running', null, 7))).toContain('7/100');
    expect(render(run('running', null, 7))).not.toContain('data-phase');
    expect(render(run('completed', { name: 'first step', done: null, total: null, detail: null }, 100))).toBe('');
  });

  it('formats phases the way the Python side does', () => {
    expect(formatPhase(null)).toBe('');
    expect(formatPhase({ name: 'loading model', done: null, total: null, detail: 'default' })).toBe('loading model default');
    expect(formatPhase({ name: 'reading data', done: 1, total: 2, detail: 'valid.txt' })).toBe('reading data valid.txt 1/2');
  });
});
