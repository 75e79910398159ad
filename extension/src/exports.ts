/**
 * An export of a checkpoint in plain words (no DOM): what it is, what its job does now, and how its
 * answers agree with the fine-tuned model's. The panel's export list and the Export dialog use them.
 */

import { ACTIVE_EXPORT_STATES, ICheckpoint, IExport, IExportVerification, IRunDetail } from './api';

/** True while the export's job works (started, or reporting progress). */
export function isActiveExport(record: IExport): boolean {
  return ACTIVE_EXPORT_STATES.includes(record.state);
}

/** A checkpoint's folder name ("checkpoint-60"), which exports name it by. */
export function checkpointName(checkpoint: ICheckpoint): string {
  return checkpoint.name ?? checkpoint.path.split(/[\\/]/).pop() ?? `checkpoint-${checkpoint.step}`;
}

/** Every export of a run, from its detail (the run's list, else each checkpoint's). */
export function runExports(detail: IRunDetail | undefined): IExport[] {
  if (!detail) {
    return [];
  }
  return detail.exports ?? detail.checkpoints.flatMap(checkpoint => checkpoint.exports ?? []);
}

/** "GGUF q8_0", "ONNX". */
export function exportTitle(record: Pick<IExport, 'format' | 'quant'>): string {
  return [record.format.toUpperCase(), record.quant].filter(part => !!part).join(' ');
}

/** What a working export does now: "writing tensors 12/272"; "starting…" before it says. */
export function exportProgressText(record: IExport): string {
  const parts: string[] = [];
  if (record.detail) {
    parts.push(record.detail);
  }
  if (counted(record)) {
    parts.push(`${record.done!.toLocaleString('en-US')}/${record.total!.toLocaleString('en-US')}`);
  }
  return parts.length ? parts.join(' ') : 'starting…';
}

/** The share done, 0 to 1; null when the job gives no count. */
export function exportFraction(record: IExport): number | null {
  return counted(record) ? Math.min(1, record.done! / record.total!) : null;
}

function counted(record: IExport): boolean {
  return typeof record.total === 'number' && record.total > 0 && typeof record.done === 'number';
}

/** "99.5%"; a dash when unknown. */
export function formatPercent(share: number | null | undefined): string {
  if (share === null || share === undefined || !isFinite(share)) {
    return '—';
  }
  const percent = share * 100;
  return `${percent === 100 || percent === 0 ? percent.toFixed(0) : percent.toFixed(1)}%`;
}

/** The verification in a few words: "agrees 99.5%" when it passed, "agrees 91.0%, needs 95%" when not. */
export function verificationText(verification: IExportVerification): string {
  const agrees = `agrees ${formatPercent(verification.agreement)}`;
  return verification.passed ? agrees : `verification failed: ${agrees}, needs ${formatPercent(verification.threshold)}`;
}

/** Everything the verification measured, for a tooltip: "agreement 0.995 (threshold 0.95) · 200 test examples · ...". */
export function verificationDetails(verification: IExportVerification): string {
  const { passed, agreement, threshold, examples, split, ...others } = verification;
  const parts = [
    `${passed ? 'passed' : 'failed'}: the export answers as the fine-tuned model did on ${formatPercent(agreement)}` +
      ` of the examples (needs ${formatPercent(threshold)})`
  ];
  if (examples) {
    parts.push(`${examples} ${split ? `${split} ` : ''}examples`);
  }
  for (const [key, value] of Object.entries(others)) {
    if (typeof value === 'number') {
      parts.push(`${key.replace(/_/g, ' ')} ${Number.isInteger(value) ? value : value.toFixed(4)}`);
    }
  }
  return parts.join(' · ');
}

/** How the Export dialog names the GGUF weights. */
export function quantLabel(quant: string): string {
  const words: Record<string, string> = {
    f16: '16-bit floats: the largest file, the closest to the model',
    q8_0: '8 bits per weight: about half the size of f16',
    q4_0: '4 bits per weight: the smallest file, the loosest'
  };
  return words[quant] ? `${quant} (${words[quant]})` : quant;
}

/**
 * What the panel knows of exports beyond the server's list: those started here that the server does
 * not list yet (their job has not reported), and those asked to stop. One that never reports is shown
 * as failed once `grace` milliseconds have passed.
 */
export class ExportTracker {
  constructor(private readonly grace: number) {}

  /** An export the server accepted (POST .../exports answered), before its job reports. */
  started(runId: string, record: IExport): void {
    this._pending.set(record.id, { runId, record, since: Date.now() });
  }

  stopping(exportId: string): void {
    this._stopping.add(exportId);
  }

  isStopping(exportId: string): boolean {
    return this._stopping.has(exportId);
  }

  /** The server's latest list of a run's exports: forget what it now says itself. */
  settle(listed: IExport[]): void {
    for (const record of listed) {
      this._pending.delete(record.id);
      if (!isActiveExport(record)) {
        this._stopping.delete(record.id);
      }
    }
  }

  /** A checkpoint's exports, oldest first: the server's, then those started here it does not list yet. */
  exports(runId: string, detail: IRunDetail | undefined, checkpoint: string): IExport[] {
    const listed = runExports(detail);
    const known = new Set(listed.map(record => record.id));
    const waiting = [...this._pending.values()]
      .filter(p => p.runId === runId && !known.has(p.record.id))
      .map(p => (this._expired(p) ? { ...p.record, state: 'failed' as const, error: silentError(detail) } : p.record));
    return [...listed, ...waiting].filter(record => record.checkpoint === checkpoint);
  }

  /** Whether one of the run's exports is at work, or started here and awaited. */
  hasActive(runId: string, detail: IRunDetail | undefined): boolean {
    return (
      runExports(detail).some(isActiveExport) ||
      [...this._pending.values()].some(p => p.runId === runId && !this._expired(p))
    );
  }

  private _expired(pending: { since: number }): boolean {
    return Date.now() - pending.since > this.grace;
  }

  private readonly _pending = new Map<string, { runId: string; record: IExport; since: number }>();
  private readonly _stopping = new Set<string>();
}

function silentError(detail: IRunDetail | undefined): string {
  const log = `${detail?.dir ? `${detail.dir}/` : ''}exports/export.log`;
  return `the export job has not reported; its output is in ${log}`;
}
