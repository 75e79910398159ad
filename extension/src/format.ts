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

/**
 * Python that loads a checkpoint of a run of a given task, keyed by the run's `task`; tasks not
 * listed load for prediction. Each gets the path as a Python string literal.
 */
const TASK_SNIPPETS = new Map<string, (path: string) => string>([
  [
    'sft',
    path =>
      'from ftkit.engine.generation import Generator\n' +
      `generator = Generator.load(${path})\n` +
      'print(generator.generate("Hello! What can you do?", max_new_tokens=64))'
  ]
]);

const PREDICTOR_SNIPPET = (path: string): string =>
  'from ftkit.engine.inference import Predictor\n' + `predictor = Predictor.from_checkpoint(${path})`;

/**
 * Python that loads a checkpoint: for generation when the run's task is sft, else for prediction.
 * The path becomes a JSON string, which is also a valid Python string literal, so quotes and
 * backslashes in it cannot break out of the code.
 */
export function loadSnippet(checkpointPath: string, task?: string | null): string {
  const snippet = (task && TASK_SNIPPETS.get(task)) || PREDICTOR_SNIPPET;
  return snippet(JSON.stringify(checkpointPath));
}
