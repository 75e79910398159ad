/** The error view's arithmetic: a sentence cut into pieces, the entities mistakes involve, cell shades. */

import { describe, expect, it } from 'vitest';

import { EntitySpan, IEntityDecision } from '../src/api';
import { kindLabel, segments, shade, spanKey, wrongSpans } from '../src/errors';

describe('segments', () => {
  it('cuts a sentence into plain words and whole entities, in order', () => {
    const tokens = ['EU', 'rejects', 'German', 'call', 'to', 'boycott', 'British', 'lamb', '.'];
    const spans: EntitySpan[] = [[6, 7, 'MISC'], [0, 1, 'ORG'], [2, 3, 'MISC']];
    expect(segments(tokens, spans).map(p => [p.text, p.span?.[2] ?? null])).toEqual([
      ['EU', 'ORG'],
      ['rejects', null],
      ['German', 'MISC'],
      ['call to boycott', null],
      ['British', 'MISC'],
      ['lamb .', null]
    ]);
  });
});

describe('wrongSpans', () => {
  it('collects the gold and predicted entities of every decision but the correct ones', () => {
    const decisions: IEntityDecision[] = [
      { kind: 'correct', type: 'PER', gold: [0, 1, 'PER'], predicted: [0, 1, 'PER'] },
      { kind: 'wrong_boundary', type: 'ORG', gold: [3, 5, 'ORG'], predicted: [4, 5, 'ORG'] },
      { kind: 'spurious', type: 'LOC', gold: null, predicted: [7, 8, 'LOC'] }
    ];
    const wrong = wrongSpans(decisions);
    expect([...wrong.gold]).toEqual([spanKey([3, 5, 'ORG'])]);
    expect([...wrong.predicted]).toEqual([spanKey([4, 5, 'ORG']), spanKey([7, 8, 'LOC'])]);
    expect(wrong.gold.has(spanKey([0, 1, 'PER']))).toBe(false);
  });

  it('writes kinds as people do', () => {
    expect(kindLabel('wrong_boundary')).toBe('wrong boundary');
  });
});

describe('shade', () => {
  it('is 0 for no count, 1 for the largest, and lets small counts show', () => {
    expect([shade(0, 100), shade(100, 100), shade(0, 0)]).toEqual([0, 1, 0]);
    expect(shade(1, 100)).toBeCloseTo(0.1);
  });
});
