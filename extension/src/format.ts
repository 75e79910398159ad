/** Plain formatting helpers shared by the panel and the commands (no DOM). */

/** "1h 02m", "3m 05s", "42s"; an em dash when unknown. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds) || seconds < 0) {
    return '—';
  }
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number) => String(n).padStart(2, '0');
  if (h > 0) {
    return `${h}h ${pad(m)}m`;
  }
  if (m > 0) {
    return `${m}m ${pad(s % 60)}s`;
  }
  return `${s}s`;
}

/** "512 B", "1.5 KB", "23.4 MB". */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || bytes < 0) {
    return '—';
  }
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** A metric value with four decimals (or as-is when it is a count). */
export function formatMetric(value: number | null | undefined): string {
  if (value === null || value === undefined) {
    return '—';
  }
  return Number.isInteger(value) ? String(value) : value.toFixed(4);
}

/**
 * A run's phase before its first step, as ftkit.events.phase_text writes it: "tokenising train
 * 3,000/12,637", "tokenising validation (cached)", "loading model default"; "" for none.
 */
export function formatPhase(
  phase: { name: string; done: number | null; total: number | null; detail: string | null } | null | undefined
): string {
  if (!phase || !phase.name) {
    return '';
  }
  const parts = [phase.name];
  if (phase.detail) {
    parts.push(phase.detail);
  }
  if (phase.total && phase.total > 0 && phase.done !== null && phase.done !== undefined) {
    parts.push(`${phase.done.toLocaleString('en-US')}/${phase.total.toLocaleString('en-US')}`);
  }
  return parts.join(' ');
}

/** A start time, short, in the reader's locale ("Nov 28, 15:32"). */
export function formatTime(epochSeconds: number | null | undefined): string {
  if (!epochSeconds) {
    return '—';
  }
  return new Date(epochSeconds * 1000).toLocaleString(undefined, {
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit'
  });
}

/** "ner · default · lora": what a run trains, leaving out what it does not say. */
export function runSubtitle(run: { task: string | null; model: string | null; adapter: string | null }): string {
  return [run.task, run.model, run.adapter].filter(part => !!part).join(' · ');
}

/** A config value in a table cell: numbers as written, lists and objects as JSON, nothing as a dash. */
export function formatValue(value: unknown): string {
  if (value === null || value === undefined) {
    return '—';
  }
  if (typeof value === 'object') {
    return JSON.stringify(value);
  }
  return String(value);
}

/** What the list says when no run is shown: the search and status that found nothing, or that there are none. */
export function emptyText(query: { q: string; status: readonly string[] }): string {
  const status = query.status.length ? `${query.status.join(' or ')} ` : '';
  const q = query.q.trim();
  if (q) {
    return `No ${status}runs match “${q}”`;
  }
  return status ? `No ${status}runs` : 'No runs yet';
}

/** A training run's latest loss and time left: "loss 0.4321 · ETA 3m 05s"; "" before either is known. */
export function liveText(progress: { loss: number | null; eta_seconds: number | null }): string {
  const parts: string[] = [];
  if (progress.loss !== null && progress.loss !== undefined) {
    parts.push(`loss ${formatMetric(progress.loss)}`);
  }
  if (progress.eta_seconds !== null && progress.eta_seconds !== undefined) {
    parts.push(`ETA ${formatDuration(progress.eta_seconds)}`);
  }
  return parts.join(' · ');
}
