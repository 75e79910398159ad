/**
 * `LabelIssuesView`: the training examples a run's model found likeliest mislabelled, worst first
 * (lowest issue score), from the confidence in the gold label it recorded while training (a data
 * map): example, text, gold and predicted labels, confidence, variability, issue score; narrowed to
 * one gold label by a select. Plain React; run-provided text only in text nodes and titles.
 */

import * as React from 'react';

import { ILabelIssueReport } from './api';
import { formatMetric } from './format';
import { ALL_LABELS, epochText, truncate } from './label-issues';

export const NOT_RECORDED =
  'This run recorded no training dynamics (training.record_dynamics is off, or it has not finished an epoch yet)';

export interface ILabelIssuesViewProps {
  report: ILabelIssueReport;
  /** The gold label the report is narrowed to (`ALL_LABELS`: every one). */
  label: string;
  onLabel: (label: string) => void;
  onRefresh: () => void;
}

export function LabelIssuesView({ report, label, onLabel, onRefresh }: ILabelIssuesViewProps): JSX.Element {
  const { rows } = report;
  return (
    <div className="ftkit-LabelIssuesView">
      <h2>
        Label issues <span className="ftkit-Muted">({report.task})</span>
      </h2>
      <div className="ftkit-Filters">
        {report.labels.length > 0 && (
          // uncontrolled: the choice shows at once, while the examples of the label load
          <select
            className="ftkit-LabelFilter jp-mod-styled"
            aria-label="Gold label"
            defaultValue={label}
            onChange={event => onLabel(event.target.value)}
          >
            <option value={ALL_LABELS}>all labels</option>
            {report.labels.map(l => (
              <option key={l} value={l}>
                {l}
              </option>
            ))}
          </select>
        )}
        <span className="ftkit-Examples-count">
          {report.recorded ? `${rows.length} of ${report.total} examples, worst first · ${epochText(report.epochs)} recorded` : ''}
        </span>
        <button className="jp-Button jp-mod-styled ftkit-LabelIssues-refresh" title="Load the latest records" onClick={onRefresh}>
          Refresh
        </button>
      </div>
      {!report.recorded ? (
        <p className="ftkit-Muted ftkit-LabelIssues-empty">{NOT_RECORDED}</p>
      ) : rows.length === 0 ? (
        <p className="ftkit-Muted ftkit-LabelIssues-empty">No training examples{label ? ` labelled ${label}` : ''} have records yet.</p>
      ) : (
        <div className="ftkit-TableScroll">
          <table className="ftkit-ErrorTable ftkit-LabelIssues">
            <thead>
              <tr>
                <th title="its index in the training split">example</th>
                <th>text</th>
                <th>gold</th>
                <th>predicted</th>
                <th title="mean probability of the gold label over the epochs">confidence</th>
                <th title="its standard deviation over the epochs">variability</th>
                <th title="the lower, the likelier a label error">issue score</th>
              </tr>
            </thead>
            <tbody>
              {rows.map(row => (
                <tr key={row.example} data-example={row.example}>
                  <td>{row.example}</td>
                  <td className="ftkit-LabelIssue-text" title={row.text}>
                    {truncate(row.text)}
                  </td>
                  <td className="ftkit-LabelIssue-gold">{row.gold}</td>
                  <td className="ftkit-LabelIssue-predicted">{row.predicted ?? '—'}</td>
                  <td>{formatMetric(row.confidence)}</td>
                  <td>{formatMetric(row.variability)}</td>
                  <td>{formatMetric(row.issue_score)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
