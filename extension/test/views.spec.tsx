/** The main-area views as HTML: a comparison, a run's errors, its log (run-provided text escaped). */

import * as React from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';

import { CurvePoint, IComparison, IErrorReport } from '../src/api';
import { LineChart } from '../src/chart';
import { byPrimary, CompareView, curveOrder } from '../src/compare';
import { ErrorView } from '../src/errors-view';
import { LogView } from '../src/log';

const HOSTILE = '<img src=x onerror="window.__ftkit_xss=1">';

const html = (element: JSX.Element) => renderToStaticMarkup(element);

/** The text of every match's first group, in order. */
const all = (text: string, pattern: RegExp) => [...text.matchAll(pattern)].map(m => m[1]);

/** The part of `text` from the first `from` to the next `to` after it. */
const between = (text: string, from: string, to: string) => text.slice(text.indexOf(from), text.indexOf(to, text.indexOf(from)));

/** The escaped form of the hostile name, as it must appear: text, never a tag. */
const ESCAPED = '&lt;img src=x onerror=&quot;window.__ftkit_xss=1&quot;&gt;';

/** `runs` runs with `points` loss points each; the learning rate is the key that differs. */
function comparison(runs: number, points: number): IComparison {
  const ids = Array.from({ length: runs }, (_, i) => `r${i}`);
  const curve = (i: number): CurvePoint[] => Array.from({ length: points }, (_, s) => [s + 1, 2 / (s + 1 + i)]);
  return {
    runs: ids.map((id, i) => ({ id, name: i ? `run ${i}` : HOSTILE, status: i ? 'completed' : 'running', task: 'ner', model: 'default', adapter: 'lora', sweep: 'lr' })),
    differing: [{ key: 'training.learning_rate', values: ids.map((_, i) => [0.001, 0.0001, 0.00001][i % 3]) }],
    metrics: [
      { name: 'validation_f1', values: ids.map((_, i) => (i ? 0.8 + i / 100 : null)) },
      { name: 'validation_PER_f1', values: ids.map(() => 0.9) },
      { name: 'test_f1', values: ids.map(() => 0.75) }
    ],
    curves: {
      learning_rate: Object.fromEntries(ids.map((id, i) => [id, [[1, 10 ** -(i + 3)], [2, 10 ** -(i + 4)]]])),
      loss: Object.fromEntries(ids.map((id, i) => [id, curve(i)])),
      validation_f1: Object.fromEntries(ids.slice(1).map(id => [id, [[50, 0.8]]]))
    },
    primary: ['loss', 'validation_f1', 'test_f1']
  };
}

describe('CompareView', () => {
  it('shows a row per run with the differing keys and final metrics, and one line per run in each curve', () => {
    const out = html(<CompareView data={comparison(3, 500)} />);
    expect(all(out, /<th class="ftkit-Compare-key" data-key="([^"]+)"/g)).toEqual(['training.learning_rate']);
    expect(all(out, /<td class="ftkit-Compare-key">([^<]*)</g)).toEqual(['0.001', '0.0001', '0.00001']);
    expect(all(out, /<th class="ftkit-Compare-metric" data-metric="([^"]+)"/g)).toEqual(['validation_f1', 'test_f1']);
    expect(all(out, /<td class="ftkit-Compare-metric">([^<]*)</g)).toEqual(['—', '0.7500', '0.8100', '0.7500', '0.8200', '0.7500']);
    // the primary ones only: the per-entity score and the learning rate are behind the toggle
    expect(all(out, /data-curve="([^"]+)"/g)).toEqual(['loss', 'validation_f1']);
    expect(all(out, /<button class="ftkit-LinkButton ftkit-Compare-more" aria-pressed="false"[^>]*>([^<]+)</g)).toEqual([
      'more curves and metrics (1 metrics, 1 curves)'
    ]);
    const loss = between(out, 'data-curve="loss"', '</figure>');
    expect(all(loss, /<path data-run-id="([^"]+)"/g)).toEqual(['r0', 'r1', 'r2']);
    expect(all(loss, / d="([^"]+)"/g)[0].split('L')).toHaveLength(500);
    // one evaluation each: a dot per run, as a line through one point draws nothing
    expect(between(out, 'data-curve="validation_f1"', '</figure>').match(/<circle/g)).toHaveLength(2);
  });

  it('keeps a hostile run name as text', () => {
    const out = html(<CompareView data={comparison(2, 3)} />);
    expect(out).not.toContain('<img');
    expect(out).toContain(ESCAPED);
  });

  it('draws twenty runs of 5000 points with at most two points per pixel column each', () => {
    const loss = between(html(<CompareView data={comparison(20, 5000)} />), 'data-curve="loss"', '</figure>');
    const paths = all(loss, / d="([^"]+)"/g);
    expect(paths).toHaveLength(20);
    for (const d of paths) {
      expect(d.split('L').length).toBeLessThanOrEqual(2 * 420);
    }
  });
});

describe('curveOrder', () => {
  it('puts the loss first, the evaluations next in the metrics order, any other curve by name, the optimizer last', () => {
    const names = ['learning_rate', 'rewards/margins', 'test_f1', 'validation_f1', 'loss', 'grad_norm', 'entropy', 'rewards/chosen'];
    expect(curveOrder(names, ['validation_f1', 'test_f1'])).toEqual([
      'loss',
      'validation_f1',
      'test_f1',
      'entropy',
      'rewards/chosen',
      'rewards/margins',
      'grad_norm',
      'learning_rate'
    ]);
  });
});

describe('byPrimary', () => {
  it('shows what the server names primary first, in its order, and keeps the rest in theirs for the toggle', () => {
    const names = curveOrder(['learning_rate', 'validation_PER_f1', 'validation_f1', 'loss', 'rewards/margins'], ['validation_PER_f1', 'validation_f1']);
    expect(byPrimary(names, name => name, ['loss', 'validation_f1', 'test_f1'])).toEqual([
      ['loss', 'validation_f1'],
      ['validation_PER_f1', 'rewards/margins', 'learning_rate']
    ]);
  });
});

describe('LineChart of a curve no list names', () => {
  it('draws a line per run that logged it, its name with "/" intact', () => {
    const series = [
      { runId: 'r0', index: 0, points: [] },
      { runId: 'r1', index: 1, points: [[1, 0.2], [2, 0.5]] as CurvePoint[] }
    ];
    const out = html(<LineChart name="rewards/margins" series={series} />);
    expect(out).toContain('<figcaption class="ftkit-Chart-title">rewards/margins</figcaption>');
    expect(all(out, /<path data-run-id="([^"]+)"/g)).toEqual(['r0', 'r1']);
    // a run that never logged the curve draws no line in it
    expect(all(out, / d="([^"]*)"/g)).toEqual(['', expect.stringMatching(/^M[^L]*L[^L]*$/)]);
  });
});

const REPORT: IErrorReport = {
  run: 'r1',
  task: 'ner',
  split: 'test',
  summary: { sentences: 2, f1: 0.5, wrong_type: 1, wrong_boundary: 0 },
  table: { title: 'per type', columns: ['type', 'precision', 'recall', 'f1', 'support'], rows: [['PER', 1, 0.5, 0.6667, 2]] },
  confusion: { title: 'entity types', labels: ['PER', 'LOC', 'O'], matrix: [[8, 1, 1], [0, 5, 0], [2, 0, 90]] },
  examples: [
    {
      id: 0,
      tokens: ['Peter', 'visits', HOSTILE],
      gold: [[0, 1, 'PER'], [2, 3, 'LOC']],
      predicted: [[0, 1, 'PER']],
      errors: [
        { kind: 'correct', type: 'PER', gold: [0, 1, 'PER'], predicted: [0, 1, 'PER'] },
        { kind: 'missed', type: 'LOC', gold: [2, 3, 'LOC'], predicted: null }
      ]
    },
    {
      id: 1,
      tokens: ['Paris', 'is', 'big'],
      gold: [[0, 1, 'LOC']],
      predicted: [[0, 1, 'PER']],
      errors: [{ kind: 'wrong_type', type: 'LOC', gold: [0, 1, 'LOC'], predicted: [0, 1, 'PER'] }]
    }
  ]
};

describe('ErrorView', () => {
  it('shows the per-type table and the confusion matrix, shading cells by count', () => {
    const out = html(<ErrorView report={REPORT} />);
    expect(all(between(out, 'ftkit-ErrorTable', '</table>'), /<td>([^<]*)<\/td>/g)).toEqual(['PER', '1', '0.5000', '0.6667', '2']);
    const cells = all(out, /<td class="ftkit-Confusion-cell([^"]*)"/g);
    expect(all(out, /title="gold [^"]*">(\d+)<\/td>/g)).toEqual(['8', '1', '1', '0', '5', '0', '2', '0', '90']);
    expect(all(out, /style="--ftkit-shade:([\d.]+)"/g).map(Number)[8]).toBe(1);
    expect(all(out, /style="--ftkit-shade:([\d.]+)"/g).map(Number)[3]).toBe(0);
    expect(cells.filter(c => c.includes('ftkit-mod-diagonal'))).toHaveLength(3);
  });

  it('marks gold and predicted entities of each sentence and names its mistakes', () => {
    const out = html(<ErrorView report={REPORT} />);
    expect(all(out, /data-kind="[^"]+">([^<]+)</g)).toEqual(['missed LOC', 'wrong type LOC']); // not the correct PER
    const gold = between(out, 'data-line="gold"', 'data-line="predicted"');
    expect(all(gold, /<mark class="([^"]+)" data-type="[A-Z]+"/g)).toEqual(['ftkit-Entity', 'ftkit-Entity ftkit-mod-wrong']);
    expect(gold).toContain(ESCAPED);
    expect(out).not.toContain('<img');
    expect(out).toContain('>showing 2 of 2 sentences with errors<');
  });

  it('writes kinds of error as people do, "wrong type", in the summary as in the filters', () => {
    const out = html(<ErrorView report={REPORT} />);
    expect(all(out, /<dt>([^<]+)<\/dt>/g)).toEqual(['sentences', 'f1', 'wrong type', 'wrong boundary']);
    expect(out.replace(/<[^>]*>/g, ' ')).not.toContain('wrong_'); // in no text, only in attribute values
  });
  it("lists another task's mistakes field by field", () => {
    const report: IErrorReport = {
      ...REPORT,
      task: 'classification',
      examples: [{ id: 4, text: HOSTILE, label: 'pos', predicted: 'neg', confidence: 0.9123 }]
    };
    const out = html(<ErrorView report={report} />);
    expect(all(out, /<span class="ftkit-Sentence-label">([^<]+)<\/span>/g)).toEqual(['id', 'text', 'label', 'predicted', 'confidence']);
    expect(out).toContain('0.9123');
    expect(out).toContain(ESCAPED);
    expect(out).not.toContain('ftkit-KindFilter');
  });
});

describe('LogView', () => {
  it('shows the log as text with its path', () => {
    const out = html(<LogView log={{ path: '/runs/r1/train.log', text: `step 1\n${HOSTILE}`, lines: 2000, status: 'running', server_path: null }} />);
    expect(out).toContain(`step 1\n${ESCAPED}</pre>`);
    expect(out).toContain('/runs/r1/train.log');
    expect(out).toContain('following');
    expect(out).not.toContain('<img');
  });
});
