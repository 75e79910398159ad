/**
 * `ErrorView`: what a finished run got wrong on a split, from its saved predictions (no model is
 * loaded): the per-type table, the confusion matrix (rows gold, columns predicted; cells shaded by
 * count) and the example sentences with gold and predicted entities marked, filterable by kind of
 * error and by type. Plain React; run-provided text only in text nodes.
 */

import * as React from 'react';

import { EntitySpan, IEntityDecision, IErrorReport } from './api';
import { kindLabel, segments, shade, spanKey, wrongSpans } from './errors';
import { formatMetric, formatValue } from './format';

/** A number with four decimals (a count as it is), anything else as `formatValue` writes it. */
const cell = (value: unknown) => (typeof value === 'number' ? formatMetric(value) : formatValue(value));

interface ISentence {
  id: number;
  tokens: string[];
  gold: EntitySpan[];
  predicted: EntitySpan[];
  errors: IEntityDecision[];
}

/** A judged NER sentence, or null for another task's example (a text and its labels). */
function asSentence(example: Record<string, unknown>): ISentence | null {
  const { tokens, gold, predicted, errors } = example;
  return Array.isArray(tokens) && Array.isArray(gold) && Array.isArray(predicted) && Array.isArray(errors)
    ? (example as unknown as ISentence)
    : null;
}

function Confusion({ confusion }: { confusion: NonNullable<IErrorReport['confusion']> }): JSX.Element {
  const max = Math.max(0, ...confusion.matrix.flat());
  return (
    <section>
      <h3>{confusion.title}</h3>
      <div className="ftkit-TableScroll">
        <table className="ftkit-Confusion">
          <thead>
            <tr>
              <th className="ftkit-Muted">gold ↓ predicted →</th>
              {confusion.labels.map(label => (
                <th key={label}>{label}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {confusion.matrix.map((row, i) => (
              <tr key={confusion.labels[i]}>
                <th>{confusion.labels[i]}</th>
                {row.map((count, j) => {
                  const level = shade(count, max);
                  return (
                    <td
                      key={confusion.labels[j]}
                      className={`ftkit-Confusion-cell${i === j ? ' ftkit-mod-diagonal' : ''}${level > 0.55 ? ' ftkit-mod-dark' : ''}`}
                      style={{ '--ftkit-shade': level.toFixed(3) } as React.CSSProperties}
                      title={`gold ${confusion.labels[i]}, predicted ${confusion.labels[j]}: ${count}`}
                    >
                      {count}
                    </td>
                  );
                })}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

/** The sentence once with its gold and once with its predicted entities; those a mistake involves stand out. */
function Sentence({ sentence, shown }: { sentence: ISentence; shown: IEntityDecision[] }): JSX.Element {
  const wrong = wrongSpans(sentence.errors);
  const line = (side: 'gold' | 'predicted') => (
    <div className="ftkit-Sentence-line" data-line={side}>
      <span className="ftkit-Sentence-label">{side}</span>
      {segments(sentence.tokens, sentence[side]).map((piece, i) =>
        piece.span ? (
          <mark key={i} className={`ftkit-Entity${wrong[side].has(spanKey(piece.span)) ? ' ftkit-mod-wrong' : ''}`} data-type={piece.span[2]}>
            {piece.text}
            <span className="ftkit-Entity-type">{piece.span[2]}</span>
          </mark>
        ) : (
          <span key={i}> {piece.text} </span>
        )
      )}
    </div>
  );
  return (
    <li className="ftkit-Sentence">
      {line('gold')}
      {line('predicted')}
      <div className="ftkit-Sentence-errors">
        {shown.map((d, i) => (
          <span key={i} className="ftkit-ErrorKind" data-kind={d.kind}>
            {kindLabel(d.kind)} {d.type}
          </span>
        ))}
      </div>
    </li>
  );
}

/** What the list shows of what: "showing 1 of 2 sentences with errors" (the notebook's ErrorBrowser says the same). */
export const examplesCount = (shown: number, withErrors: number) => `showing ${shown} of ${withErrors} sentences with errors`;

/** The mistakes as the task gives them: NER sentences, filterable by kind of error and type; else each record's fields. */
function Examples({ examples }: { examples: Record<string, unknown>[] }): JSX.Element {
  const [kind, setKind] = React.useState('');
  const [type, setType] = React.useState('');
  const sentences = examples.map(asSentence).filter((s): s is ISentence => s !== null);
  if (!sentences.length) {
    return (
      <ul className="ftkit-Examples">
        {examples.map((example, i) => (
          <li key={i} className="ftkit-Example">
            {Object.entries(example).map(([key, value]) => (
              <div key={key}>
                <span className="ftkit-Sentence-label">{key}</span> {cell(value)}
              </div>
            ))}
          </li>
        ))}
      </ul>
    );
  }
  const mistakes = sentences.flatMap(s => s.errors).filter(d => d.kind !== 'correct');
  const withErrors = sentences.filter(s => s.errors.some(d => d.kind !== 'correct')).length;
  const kinds = [...new Set(mistakes.map(d => d.kind))].sort();
  const types = [...new Set(mistakes.map(d => d.type))].sort();
  const shown = sentences
    .map(sentence => ({
      sentence,
      shown: sentence.errors.filter(d => d.kind !== 'correct' && (!kind || d.kind === kind) && (!type || d.type === type))
    }))
    .filter(s => s.shown.length > 0);
  return (
    <>
      <div className="ftkit-Filters">
        <select className="ftkit-KindFilter jp-mod-styled" aria-label="Kind of error" value={kind} onChange={e => setKind(e.target.value)}>
          <option value="">every kind of error</option>
          {kinds.map(k => (
            <option key={k} value={k}>
              {kindLabel(k)}
            </option>
          ))}
        </select>
        <select className="ftkit-TypeFilter jp-mod-styled" aria-label="Entity type" value={type} onChange={e => setType(e.target.value)}>
          <option value="">every type</option>
          {types.map(t => (
            <option key={t} value={t}>
              {t}
            </option>
          ))}
        </select>
        <span className="ftkit-Examples-count">{examplesCount(shown.length, withErrors)}</span>
      </div>
      <ul className="ftkit-Examples">
        {shown.map(s => (
          <Sentence key={s.sentence.id} {...s} />
        ))}
      </ul>
    </>
  );
}

export function ErrorView({ report }: { report: IErrorReport }): JSX.Element {
  return (
    <div className="ftkit-ErrorView">
      <h2>
        Errors on {report.split} <span className="ftkit-Muted">({report.task})</span>
      </h2>
      <dl className="ftkit-ErrorSummary">
        {Object.entries(report.summary).map(([key, value]) => (
          <React.Fragment key={key}>
            <dt>{kindLabel(key)}</dt>
            <dd>{cell(value)}</dd>
          </React.Fragment>
        ))}
      </dl>
      <section>
        <h3>{report.table.title}</h3>
        <div className="ftkit-TableScroll">
          <table className="ftkit-ErrorTable">
            <thead>
              <tr>
                {report.table.columns.map(column => (
                  <th key={column}>{kindLabel(column)}</th>
                ))}
              </tr>
            </thead>
            <tbody>
              {report.table.rows.map((row, i) => (
                <tr key={i}>
                  {row.map((value, j) => (
                    <td key={j}>{cell(value)}</td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
      {report.confusion && <Confusion confusion={report.confusion} />}
      <section>
        <h3>Examples</h3>
        <Examples examples={report.examples} />
      </section>
    </div>
  );
}
