/**
 * `ExportList`: a checkpoint's exports under it in the panel: format (and GGUF weights), state, the
 * job's progress and a Stop button while it works, then how its answers agree with the model's
 * (a failed verification marked as such), the file and its size, or why it failed. Plain React (no
 * JupyterLab imports); run-provided text only in text nodes.
 */

import * as React from 'react';

import { IExport } from './api';
import {
  exportFraction,
  exportProgressText,
  exportTitle,
  isActiveExport,
  verificationDetails,
  verificationText
} from './exports';
import { formatBytes, formatDuration } from './format';

/** The status badge colours (ftkit-Badge-*) an export's state takes. */
const BADGES: Record<IExport['state'], string> = {
  started: 'running',
  progress: 'running',
  completed: 'completed',
  failed: 'failed',
  stopped: 'stopped'
};

/** The checkpoints table keeps its cells on one line; an export's path and error wrap. */
const WRAP: React.CSSProperties = { whiteSpace: 'normal', overflowWrap: 'anywhere' };

export function ExportList(props: {
  exports: IExport[];
  isStopping: (exportId: string) => boolean;
  onStop: (exportId: string) => void;
}): JSX.Element | null {
  if (!props.exports.length) {
    return null;
  }
  return (
    <ul className="ftkit-Exports" style={{ listStyle: 'none', margin: 0, padding: '0 0 4px 0', ...WRAP }}>
      {props.exports.map(record => (
        <ExportItem key={record.id} record={record} stopping={props.isStopping(record.id)} onStop={props.onStop} />
      ))}
    </ul>
  );
}

function ExportItem(props: { record: IExport; stopping: boolean; onStop: (exportId: string) => void }): JSX.Element {
  const { record, stopping, onStop } = props;
  const active = isActiveExport(record);
  const verification = record.verification;
  return (
    <li className="ftkit-Export" data-export-id={record.id} data-state={record.state}>
      <div className="ftkit-Export-header">
        <span className="ftkit-Export-format">{exportTitle(record)}</span>{' '}
        <span className={`ftkit-Badge ftkit-Badge-${BADGES[record.state]} ftkit-Export-state`}>{record.state}</span>{' '}
        {active &&
          (stopping ? (
            <span className="ftkit-Export-stopping ftkit-Muted"> stopping…</span>
          ) : (
            <button
              className="jp-Button jp-mod-minimal ftkit-Export-stop"
              title="Stop this export (its partial files are removed)"
              onClick={event => {
                event.stopPropagation();
                onStop(record.id);
              }}
            >
              Stop
            </button>
          ))}
      </div>
      {verification && (
        <div>
          <span
            className={`ftkit-Badge ftkit-Badge-${verification.passed ? 'completed' : 'failed'} ftkit-Export-verification`}
            data-passed={String(!!verification.passed)}
            title={verificationDetails(verification)}
            style={{ display: 'inline-block' }}
          >
            {verification.passed ? '✓ ' : '✗ '}
            {verificationText(verification)}
          </span>
        </div>
      )}
      {active && <ExportProgress record={record} />}
      {record.state === 'completed' && record.path && (
        <div className="ftkit-Export-path ftkit-Muted" title={record.path}>
          {record.path} · {formatBytes(record.size)}
          {record.seconds !== null && record.seconds !== undefined && ` · ${formatDuration(record.seconds)}`}
        </div>
      )}
      {record.state === 'failed' && record.error && <div className="ftkit-Export-error ftkit-Run-error">{record.error}</div>}
    </li>
  );
}

function ExportProgress({ record }: { record: IExport }): JSX.Element {
  const fraction = exportFraction(record);
  const text = exportProgressText(record);
  return (
    <div
      className="ftkit-Progress ftkit-Export-progress"
      role="progressbar"
      aria-valuemin={0}
      aria-valuemax={fraction === null ? undefined : (record.total as number)}
      aria-valuenow={fraction === null ? undefined : (record.done as number)}
      aria-valuetext={text}
      title={text}
      style={{ margin: '2px 0' }}
    >
      <div className="ftkit-Progress-bar" style={{ width: `${((fraction ?? 0) * 100).toFixed(1)}%` }} />
      <span className="ftkit-Progress-label">{text}</span>
    </div>
  );
}
