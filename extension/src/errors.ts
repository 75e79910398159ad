/**
 * The arithmetic of a run's error view (no DOM): a sentence cut into plain words and entities,
 * the entities its mistakes involve, and the shade of a confusion-matrix cell. The server judges
 * each entity (`ftkit.tasks.scoring.span_decisions`); this only draws what it says.
 */

import { EntitySpan, IEntityDecision } from './api';

/** The words of a sentence cut into runs of plain words and whole entities, in order. */
export function segments(tokens: readonly string[], spans: readonly EntitySpan[]): { text: string; span: EntitySpan | null }[] {
  const sorted = [...spans].sort((a, b) => a[0] - b[0]);
  const out: { text: string; span: EntitySpan | null }[] = [];
  let at = 0;
  for (const span of sorted) {
    const [start, end] = span;
    if (start < at) {
      continue; // the spans of one side never overlap; should they, the first is drawn
    }
    if (start > at) {
      out.push({ text: tokens.slice(at, start).join(' '), span: null });
    }
    out.push({ text: tokens.slice(start, end).join(' '), span });
    at = end;
  }
  if (at < tokens.length) {
    out.push({ text: tokens.slice(at).join(' '), span: null });
  }
  return out;
}

/** The same entity, whichever array it came in. */
export const spanKey = (span: EntitySpan) => span.join(',');

/** The gold and the predicted entities some mistake involves, by `spanKey`. */
export function wrongSpans(decisions: readonly IEntityDecision[]): { gold: Set<string>; predicted: Set<string> } {
  const wrong = decisions.filter(d => d.kind !== 'correct');
  const keys = (side: 'gold' | 'predicted') =>
    new Set(wrong.map(d => d[side]).filter((s): s is EntitySpan => s !== null).map(spanKey));
  return { gold: keys('gold'), predicted: keys('predicted') };
}

/** "wrong_boundary" as people write it. */
export const kindLabel = (kind: string) => kind.replace(/_/g, ' ');

/** How dark a confusion-matrix cell is, 0 (none) to 1 (the largest count), on a square-root scale
 * so the few off-diagonal mistakes still show next to a large diagonal. */
export function shade(count: number, max: number): number {
  return max > 0 && count > 0 ? Math.sqrt(count / max) : 0;
}
