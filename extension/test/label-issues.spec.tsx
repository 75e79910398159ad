/** A run's label issues: the table as HTML (worst first, text cut with the whole in its title, escaped),
 * the label filter and the loads it asks for, and loading again once per epoch while the run trains. */

import * as React from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';

import { ILabelIssue, ILabelIssueReport, IListQuery, IRunsApi, IRunsPage, IRunSummary } from '../src/api';
import { ALL_LABELS, epochKey, epochText, LabelIssues, TEXT_CHARS, truncate } from '../src/label-issues';
import { LabelIssuesView, NOT_RECORDED } from '../src/label-issues-view';
import { RunsModel } from '../src/model';
import { runSummary } from './fixtures';

const HOSTILE = '<img src=x onerror="window.__ftkit_xss=1">';
const ESCAPED = '&lt;img src=x onerror=&quot;window.__ftkit_xss=1&quot;&gt;';

/** The text of every match's first group, in order. */
const all = (text: string, pattern: RegExp) => [...text.matchAll(pattern)].map(m => m[1]);
const noop = () => undefined;

function row(example: number, fields: Partial<ILabelIssue> = {}): ILabelIssue {
  return {
    example,
    text: `example ${example}`,
    gold: 'pos',
    predicted: 'neg',
    confidence: 0.1 * example,
    variability: 0.05,
    correctness: 0,
    issue_score: -1 + 0.1 * example,
    ...fields
  };
}

const LONG = 'a very long review '.repeat(20);

const REPORT: ILabelIssueReport = {
  run: 'r1',
  task: 'classification',
  recorded: true,
  epochs: 2,
  labels: ['neg', 'pos'],
  total: 240,
  rows: [row(3, { text: LONG }), row(7, { text: HOSTILE, predicted: null }), row(12, { gold: 'neg', predicted: 'neg' })]
};

const html = (report: ILabelIssueReport, label: string = ALL_LABELS) =>
  renderToStaticMarkup(<LabelIssuesView report={report} label={label} onLabel={noop} onRefresh={noop} />);

describe('LabelIssuesView', () => {
  it('shows a row per example in the order given (worst first) with its labels and scores', () => {
    const out = html(REPORT);
    expect(all(out, /<tr data-example="(\d+)">/g)).toEqual(['3', '7', '12']);
    expect(all(out, /<th[^>]*>([^<]+)<\/th>/g)).toEqual([
      'example',
      'text',
      'gold',
      'predicted',
      'confidence',
      'variability',
      'issue score'
    ]);
    const last = out.slice(out.indexOf('data-example="12"'));
    expect(all(last, /<td[^>]*>([^<]*)<\/td>/g)).toEqual(['12', 'example 12', 'neg', 'neg', '1.2000', '0.0500', '0.2000']);
    expect(out).toContain('3 of 240 examples, worst first · 2 epochs recorded');
  });

  it('cuts a long text, keeping all of it in the title, and shows a missing prediction as a dash', () => {
    const out = html(REPORT);
    const [title, shown] = all(out, /<td class="ftkit-LabelIssue-text" title="([^"]*">[^<]*)<\/td>/g)[0].split('">');
    expect(title).toBe(LONG);
    expect(shown).toHaveLength(TEXT_CHARS);
    expect(shown.endsWith('…')).toBe(true);
    expect(all(out, /<td class="ftkit-LabelIssue-predicted">([^<]*)</g)).toEqual(['neg', '—', 'neg']);
  });

  it('keeps hostile example text as text', () => {
    const out = html(REPORT);
    expect(out).not.toContain('<img');
    expect(out).toContain(ESCAPED);
  });

  it("offers every label to filter by, all labels first, with the view's label chosen", () => {
    expect(all(html(REPORT), /<option value="([^"]*)"/g)).toEqual(['', 'neg', 'pos']);
    expect(html(REPORT)).toMatch(/<option value="" selected="">all labels<\/option>/);
    expect(html(REPORT, 'pos')).toMatch(/<option value="pos" selected="">pos<\/option>/);
    expect(html({ ...REPORT, labels: [] })).not.toContain('ftkit-LabelFilter'); // sft: nothing to filter by
  });

  it('says why there is no table when the run recorded no training dynamics', () => {
    const out = html({ ...REPORT, recorded: false, epochs: 0, total: 0, rows: [] });
    expect(out).toContain(NOT_RECORDED);
    expect(out).not.toContain('<table');
    expect(out).toContain('ftkit-LabelIssues-refresh');
  });

  it('says when no example of the label chosen has records', () => {
    const out = html({ ...REPORT, total: 0, rows: [] }, 'neg');
    expect(out).toContain('No training examples labelled neg have records yet.');
    expect(out).not.toContain('<table');
  });

  it('shows NER sentences with their entity spans as the server writes them', () => {
    const ner: ILabelIssueReport = {
      ...REPORT,
      task: 'ner',
      labels: ['MISC', 'ORG'],
      rows: [row(0, { text: 'EU rejects German call', gold: 'EU/ORG German/MISC', predicted: 'EU/ORG' })]
    };
    const out = html(ner);
    expect(all(out, /<td class="ftkit-LabelIssue-(?:text|gold|predicted)"[^>]*>([^<]*)</g)).toEqual([
      'EU rejects German call',
      'EU/ORG German/MISC',
      'EU/ORG'
    ]);
  });
});

describe('label-issues helpers', () => {
  it('cuts only what is too long', () => {
    expect(truncate('short', 10)).toBe('short');
    expect(truncate('0123456789abc', 10)).toBe('012345678…');
  });

  it('writes how many epochs the records cover', () => {
    expect([epochText(1), epochText(2), epochText(1.5), epochText(0.333333)]).toEqual([
      '1 epoch',
      '2 epochs',
      '1.5 epochs',
      '0.33 epochs'
    ]);
  });

  it('keys a run by its status and the epoch it is in, not its step', () => {
    const at = (step: number, epoch: number | null, status: IRunSummary['status'] = 'running') =>
      epochKey(runSummary({ id: 'r1', status, progress: { ...runSummary({ id: 'r1' }).progress, step, epoch } }));
    expect(at(10, 0.2)).toBe(at(40, 0.9));
    expect(at(40, 0.9)).not.toBe(at(50, 1.0));
    expect(at(50, 1.0)).not.toBe(at(50, 1.0, 'completed'));
    expect(at(0, null)).toBe(at(1, 0.01));
  });
});

describe('LabelIssues', () => {
  it('asks for every label, then for the label chosen, with its row limit', async () => {
    const asked: [string, string | null, number][] = [];
    const api = {
      labelIssues: async (runId: string, label: string | null, limit: number) => {
        asked.push([runId, label, limit]);
        return { ...REPORT, rows: REPORT.rows.filter(r => !label || r.gold === label) };
      }
    };
    const issues = new LabelIssues(api, 'r1', 'run · label issues', 50);
    await issues.refresh();
    expect(issues.remote.data?.rows).toHaveLength(3);
    await issues.setLabel('neg');
    expect(issues.label).toBe('neg');
    expect(issues.remote.data?.rows.map(r => r.example)).toEqual([12]);
    await issues.setLabel(ALL_LABELS);
    expect(asked).toEqual([
      ['r1', null, 50],
      ['r1', 'neg', 50],
      ['r1', null, 50]
    ]);
    expect(issues.remote.title).toBe('run · label issues');
  });

  it("keeps the table and says why when a load fails (an unknown label, the server gone)", async () => {
    let fail = false;
    const issues = new LabelIssues(
      {
        labelIssues: async () => {
          if (fail) {
            throw new Error("label 'maybe' is not one of neg, pos");
          }
          return REPORT;
        }
      },
      'r1',
      'view'
    );
    await issues.refresh();
    fail = true;
    await issues.setLabel('maybe');
    expect([issues.remote.data, issues.remote.error]).toEqual([REPORT, "label 'maybe' is not one of neg, pos"]);
  });
});

/** A server that lists `runs` as they are now (no live channel: the spec refreshes). */
class ListingApi implements Partial<IRunsApi> {
  runs: IRunSummary[] = [];
  async list(query: IListQuery): Promise<IRunsPage> {
    return { runs: this.runs, total: this.runs.length, offset: query.offset, limit: query.limit, etag: JSON.stringify(this.runs), server_time: 0 };
  }
}

describe('a label-issues view of a training run', () => {
  it('loads again when the run enters a new epoch or ends, not at every step', async () => {
    const api = new ListingApi();
    const at = (step: number, status: IRunSummary['status'] = 'running') =>
      runSummary({ id: 'r1', status, progress: { step, total_steps: 100, epoch: step / 40, samples_per_second: null, eta_seconds: null, loss: 0.5 } });
    api.runs = [at(10)];
    const runs = new RunsModel({ api: api as unknown as IRunsApi, live: false });
    await runs.refresh();
    let loads = 0;
    const issues = new LabelIssues({ labelIssues: async () => (loads++, REPORT) }, 'r1', 'view');
    issues.remote.follow(runs, ['r1'], epochKey);
    for (const [step, status] of [[20], [39], [40], [60], [80], [80, 'completed']] as [number, IRunSummary['status']?][]) {
      api.runs = [at(step, status)];
      await runs.refresh();
    }
    await issues.refresh();
    expect(loads).toBe(4); // epoch 1, epoch 2, completed, and the refresh asked for
    issues.remote.dispose();
    runs.dispose();
  });
});
