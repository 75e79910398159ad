/** A run's lineage: the line in the expanded run, the list's marker, and selecting the parent run. */

import * as React from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';

import { IListQuery, IRunParent, IRunsApi, IRunsPage, IRunSummary } from '../src/api';
import { ParentMarker, parentRunId, RunLineage } from '../src/lineage';
import { RunsModel } from '../src/model';
import { runSummary } from './fixtures';

const PARENT: IRunParent = { run: '20250101-120000-abc123', name: 'sst2-sft', task: 'sft', checkpoint: 'checkpoint-60' };

function summary(id: string, name: string, model: string | null = 'default'): IRunSummary {
  return runSummary({ id, name, model, task: model?.startsWith('run:') ? 'dpo' : 'sft' });
}

const CHILD = summary('20250102-090000-def456', 'sst2-dpo', `run:${PARENT.run}/checkpoint-60`);
const text = (html: string) => html.replace(/<[^>]+>/g, '');
const noop = () => undefined;

describe('RunLineage', () => {
  it('says which run and checkpoint the run started from, the parent name a button that selects it', () => {
    const html = renderToStaticMarkup(<RunLineage parent={PARENT} task="dpo" onSelect={noop} />);
    expect(text(html)).toBe('from sft run sst2-sft · checkpoint-60 → this dpo run');
    expect(html).toMatch(new RegExp(`<button class="ftkit-ParentLink ftkit-Lineage-parent" data-parent-id="${PARENT.run}"[^>]*>sst2-sft</button>`));
  });

  it('keeps a hostile parent name as text', () => {
    const html = renderToStaticMarkup(<RunLineage parent={{ ...PARENT, name: '<img src=x onerror=alert(1)>' }} task="dpo" onSelect={noop} />);
    expect(html).not.toContain('<img');
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
  });
});

describe('ParentMarker', () => {
  const marker = (parent: IRunParent | null | undefined, runs: IRunSummary[]) =>
    text(renderToStaticMarkup(<ParentMarker run={CHILD} parent={parent} runs={runs} onSelect={noop} />));

  it('names the parent from the detail, else from the page, else by its id', () => {
    expect(marker(PARENT, [])).toBe('↳ sst2-sft');
    expect(marker(undefined, [CHILD, summary(PARENT.run, 'from-the-page')])).toBe('↳ from-the-page');
    expect(marker(undefined, [CHILD])).toBe(`↳ ${PARENT.run}`);
  });

  it('marks nothing for a run that starts from a model', () => {
    expect(renderToStaticMarkup(<ParentMarker run={summary('r1', 'sft')} parent={null} runs={[]} onSelect={noop} />)).toBe('');
    expect(parentRunId('HuggingFaceTB/SmolLM2-135M')).toBeNull();
    expect(parentRunId(null)).toBeNull();
    expect(parentRunId(`run:${PARENT.run}/checkpoint-60`)).toBe(PARENT.run);
  });
});

/** A server whose search matches names and ids, as the real one does (ftkit/runstore/index.py SEARCH). */
class SearchingApi implements Partial<IRunsApi> {
  constructor(readonly runs: IRunSummary[]) {}
  queries: IListQuery[] = [];

  async list(query: IListQuery): Promise<IRunsPage> {
    this.queries.push(query);
    const matching = this.runs.filter(run => `${run.name} ${run.id} ${run.model}`.includes(query.q));
    const runs = matching.slice(query.offset, query.offset + query.limit);
    return { runs, total: matching.length, offset: query.offset, limit: query.limit, etag: JSON.stringify(runs), server_time: 0 };
  }
}

describe('RunsModel.reveal', () => {
  const model = (api: SearchingApi) => new RunsModel({ api: api as unknown as IRunsApi, live: false });

  it('selects a parent listed on the page without asking the server', async () => {
    const api = new SearchingApi([CHILD, summary(PARENT.run, 'sst2-sft')]);
    const runs = model(api);
    await runs.refresh();
    await runs.reveal(PARENT.run);
    expect(runs.selected?.name).toBe('sst2-sft');
    expect(api.queries).toHaveLength(1);
    runs.dispose();
  });

  it('searches for a parent the page does not show, whatever the filters, and selects it', async () => {
    const api = new SearchingApi([CHILD, summary('other', 'other'), summary(PARENT.run, 'sst2-sft')]);
    const runs = model(api);
    await runs.setQuery({ q: 'dpo', status: ['completed'] });
    expect(runs.runs.map(run => run.name)).toEqual(['sst2-dpo']);
    await runs.reveal(PARENT.run);
    expect(runs.query.q).toBe(PARENT.run);
    expect(runs.query.status).toEqual([]);
    expect(runs.runs.map(run => run.name)).toEqual(['sst2-dpo', 'sst2-sft']); // the parent and the run from it
    expect(runs.selected?.id).toBe(PARENT.run);
    runs.dispose();
  });
});
