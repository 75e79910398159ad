/**
 * What the ftkit server extension sends and accepts (see ftkit/routes.py), and the interface the
 * model talks to. No JupyterLab imports here, so the model and its tests run without a browser.
 */

export type RunStatus = 'queued' | 'running' | 'completed' | 'failed' | 'stopped';
export const RUN_STATUSES: RunStatus[] = ['queued', 'running', 'completed', 'failed', 'stopped'];
export type SortKey = 'created' | 'name' | 'status' | 'best_metric' | 'updated';

export interface IProgress {
  step: number;
  total_steps: number | null;
  epoch: number | null;
  samples_per_second: number | null;
  eta_seconds: number | null;
  loss: number | null;
}

/**
 * What a run does before its first step (ftkit.events.PHASES: starting, reading data, tokenising,
 * loading model, first step), with its count n/N where it has one; null once it trains.
 */
export interface IPhase {
  name: string;
  done: number | null;
  total: number | null;
  /** The split or file it works on, e.g. "train" or "train (cached)". */
  detail: string | null;
}

export interface IRunSummary {
  id: string;
  name: string;
  status: RunStatus;
  task: string | null;
  model: string | null;
  adapter: string | null;
  pid: number | null;
  error: string | null;
  created: number | null;
  started: number | null;
  ended: number | null;
  duration: number | null;
  progress: IProgress;
  best_metric: { name: string; value: number } | null;
  checkpoint_count: number;
  /** The current phase of a queued or running run; absent from servers older than phases. */
  phase?: IPhase | null;
  /** The step of the checkpoint the run's ranked metric picks (what loads by default); null before one. */
  best_checkpoint?: number | null;
  /** The sweep the run belongs to; runs of one sweep are listed together. */
  sweep?: string | null;
  /** The splits it saved predictions for (what its errors view reads), e.g. ["test"]. */
  predictions?: string[];
}

/** An export's state (ftkit.runstore.events.EXPORT_STATES): started and progress while its job works. */
export type ExportState = 'started' | 'progress' | 'completed' | 'failed' | 'stopped';
export const ACTIVE_EXPORT_STATES: ExportState[] = ['started', 'progress'];

/** How an export answers next to the fine-tuned model: the share of examples on which they agree. */
export interface IExportVerification {
  passed: boolean;
  agreement: number | null;
  threshold: number | null;
  examples?: number | null;
  split?: string | null;
  /** Other numbers: exact_match_model, exact_match_export, max_logit_difference, ... */
  [key: string]: unknown;
}

/** An export of a checkpoint (`ftkit export`), its events merged (ftkit.runstore.queries.exports). */
export interface IExport {
  id: string;
  state: ExportState;
  /** The checkpoint's folder name, e.g. "checkpoint-60". */
  checkpoint: string;
  format: string;
  quant?: string | null;
  /** The exported file, once written. */
  path?: string | null;
  /** What the job does now ("writing tensors"), with its count done/total where it has one. */
  detail?: string | null;
  done?: number | null;
  total?: number | null;
  size?: number | null;
  seconds?: number | null;
  verification?: IExportVerification | null;
  error?: string | null;
  started?: number | null;
  updated?: number | null;
  ended?: number | null;
}

/** What POST /runs/<id>/exports takes: a checkpoint, and for GGUF its weights and an Ollama Modelfile. */
export interface IExportRequest {
  checkpoint: string;
  quant?: string;
  ollama?: boolean;
}

export interface ICheckpoint {
  step: number;
  /** Its folder name in the run, e.g. "checkpoint-60" (what an export names). */
  name?: string;
  path: string;
  abs_path: string;
  size: number | null;
  adapter_only: boolean;
  /** Whether it holds the optimizer's state beside the weights (optimizer.pt on disk), so a run can
   * resume from it; the last checkpoint of a completed run is the weights alone. */
  resumable?: boolean;
  /** Python that loads this checkpoint and runs it once (the run's task writes it); null for an unknown task. */
  snippet: string | null;
  metrics: Record<string, number>;
  /** This checkpoint's exports, oldest first; absent from servers older than exports. */
  exports?: IExport[];
}

/** The run a run's model came from (`model: run:<id>`), as recorded at launch (ftkit/runstore/lineage.py). */
export interface IRunParent {
  run: string;
  name: string | null;
  task: string | null;
  /** The checkpoint it started from, e.g. "checkpoint-60". */
  checkpoint: string;
}

export interface IRunDetail extends IRunSummary {
  metrics: Record<string, Record<string, number>>;
  metric_history: {
    split: string;
    step: number | null;
    epoch: number | null;
    name: string;
    value: number;
  }[];
  checkpoints: ICheckpoint[];
  config: Record<string, unknown>;
  dir: string;
  log_tail: string;
  stop_requested: boolean;
  /** Null when its model is not another run's; absent from servers older than lineage. */
  parent?: IRunParent | null;
  /** Every export of the run's checkpoints, oldest first. */
  exports?: IExport[];
  /** What Export writes for the run's task ("gguf", "onnx"); null for a task the server does not know. */
  export_format?: string | null;
  /** The GGUF weights to choose from (f16 first, the default); empty for ONNX. */
  export_quants?: string[];
}

export type StatusCounts = Record<RunStatus, number>;

export interface IRunsPage {
  runs: IRunSummary[];
  total: number;
  /** Runs of each status matching the search, whatever the status filter. */
  counts?: StatusCounts;
  offset: number;
  limit: number;
  /** Changes whenever anything on the page changes (a running run's duration aside). */
  etag: string;
  server_time: number;
}

export interface IRunConfig {
  path: string;
  text: string;
  /** The config's path relative to the server root, or null when it lies outside. */
  server_path: string | null;
}

/** The end of a run's train.log. */
export interface IRunLog {
  path: string;
  text: string;
  lines: number;
  status: RunStatus;
  /** The log's path relative to the server root, or null when it lies outside. */
  server_path: string | null;
}

/** One [step, value] point of a curve. */
export type CurvePoint = [number, number];

/** Runs side by side: the config keys whose values differ, final metrics, and every logged curve. */
export interface IComparison {
  runs: (Pick<IRunSummary, 'id' | 'name' | 'status' | 'task' | 'model' | 'adapter'> & {
    sweep: string | null;
  })[];
  /** One entry per differing config key; `values` in the order of `runs`. */
  differing: { key: string; values: unknown[] }[];
  metrics: { name: string; values: (number | null)[] }[];
  /** Curve name (loss, learning_rate, validation_f1, ...) → run id → points; a curve no run logged at
   * two steps is left out (a value evaluated once is a metric). */
  curves: Record<string, Record<string, CurvePoint[]>>;
  /** The curves and metrics shown first, in this order (ftkit.comparison.primary): the training loss,
   * then the metric that picks each run's best checkpoint, on validation then on test. */
  primary: string[];
}

/** An entity of a sentence: words [start, end) and its type. */
export type EntitySpan = [number, number, string];

/** One judged entity of a sentence (ftkit.tasks.scoring.span_decisions); `type` is the gold one's,
 * the prediction's for a spurious entity. */
export interface IEntityDecision {
  kind: 'correct' | 'wrong_type' | 'wrong_boundary' | 'missed' | 'spurious';
  type: string;
  gold: EntitySpan | null;
  predicted: EntitySpan | null;
}

/** What a finished run got wrong on a split, from its saved predictions. */
export interface IErrorReport {
  run: string;
  task: string;
  split: string;
  summary: Record<string, unknown>;
  table: { title: string; columns: string[]; rows: unknown[][] };
  /** Rows gold, columns predicted; null for a task without labels. */
  confusion: { title: string; labels: string[]; matrix: number[][] } | null;
  /** NER: `{id, tokens, gold, predicted, errors}` sentences, most errors first; other tasks: their
   * mistakes as flat records (text, label, predicted, confidence). */
  examples: Record<string, unknown>[];
}

/** One training example in a run's label-issue table (ftkit.dynamics.label_issue_report): its data-map
 * coordinates over the epochs recorded, and an issue score (the lower, the likelier a label error). */
export interface ILabelIssue {
  /** Its index in the training split. */
  example: number;
  /** The text; for NER the sentence's words joined by spaces. */
  text: string;
  /** The gold label; for NER the entities, written like "EU/ORG German/MISC". */
  gold: string;
  predicted: string | null;
  /** Mean probability of the gold label over the epochs recorded. */
  confidence: number;
  /** Its standard deviation over the epochs recorded. */
  variability: number;
  /** The share of epochs in which the gold label was predicted. */
  correctness: number;
  issue_score: number;
  /** Passes over it recorded. */
  epochs?: number;
}

/** The training examples likeliest mislabelled, worst first, from the dynamics the run recorded. */
export interface ILabelIssueReport {
  run: string;
  task: string;
  /** False when the run recorded no training dynamics (yet). */
  recorded: boolean;
  /** Passes over the training split the records cover so far (it grows while the run trains). */
  epochs: number;
  /** The gold labels the table can be narrowed to ([] for sft). */
  labels: string[];
  /** Examples with records (of the label asked for); `rows` holds the worst of them. */
  total: number;
  rows: ILabelIssue[];
}

/** A sweep's state (ftkit.sweeps.Sweep.state): "grid", or a search's; "unreadable" when the server could not read it. */
export type SweepState =
  | 'grid'
  | 'starting'
  | 'searching'
  | 'stopping'
  | 'finished'
  | 'stopped'
  | 'failed'
  | 'interrupted'
  | 'unreadable';

/** A run of a sweep as its table shows it: "pruned" is a trial the pruner stopped. */
export type SweepRunStatus = RunStatus | 'pruned';

/** One row of a sweep's table: a run (or a search's trial that failed before its run started: no id). */
export interface ISweepEntry {
  id: string | null;
  name: string | null;
  status: SweepRunStatus;
  /** The optuna trial's number (0-based); null for a grid's run. */
  trial: number | null;
  /** The value of each of the sweep's `keys` in this run. */
  settings: Record<string, unknown>;
  /** Its best validation score by the sweep's metric; null before one. */
  value: number | null;
  error?: string | null;
}

/** A sweep (ftkit.sweeps.Sweep.summary): its runs with their settings and metric, and the best. */
export interface ISweepSummary {
  sweep: string;
  kind: 'grid' | 'search';
  state: SweepState;
  /** The keys a search searched, or that differ between a grid's runs. */
  keys: string[];
  /** e.g. "validation_f1"; null before the sweep has a run. */
  metric: string | null;
  higher_is_better: boolean | null;
  runs: ISweepEntry[];
  best: ISweepEntry | null;
  /** A search's: how many trials it asks, how many run at once, its pruner and study storage. */
  trials?: number;
  parallel?: number;
  pruner?: string;
  storage?: string | null;
  /** A search's spaces: where it looked for each key (a number range, on a log scale or not, or choices). */
  spaces?: { key: string; low: number | null; high: number | null; log: boolean; integer: boolean; choices: unknown[] | null }[];
  /** Why the search failed, or why the server could not read it. */
  error?: string | null;
}

export interface IListQuery {
  status: RunStatus[];
  q: string;
  sort: SortKey;
  order: 'asc' | 'desc';
  limit: number;
  offset: number;
}

/** The server, as the model sees it; `ServerRunsApi` is the real one, tests pass a fake. */
export interface IRunsApi {
  list(query: IListQuery): Promise<IRunsPage>;
  /** Resolves once the page differs from `etag`, or after `timeoutSeconds` with the same page. */
  live(
    query: IListQuery,
    etag: string,
    timeoutSeconds: number,
    signal?: AbortSignal
  ): Promise<IRunsPage>;
  detail(runId: string): Promise<IRunDetail>;
  config(runId: string): Promise<IRunConfig>;
  log(runId: string, lines: number): Promise<IRunLog>;
  compare(runIds: string[]): Promise<IComparison>;
  errors(runId: string, split: string): Promise<IErrorReport>;
  /** The worst `limit` label issues of the run's training examples, of one gold label or (null) all. */
  labelIssues(runId: string, label: string | null, limit: number): Promise<ILabelIssueReport>;
  stop(runId: string): Promise<void>;
  deleteRun(runId: string): Promise<void>;
  deleteCheckpoint(runId: string, step: number): Promise<void>;
  /** Start an export job of one checkpoint; answers at once with the export as started. */
  startExport(runId: string, request: IExportRequest): Promise<IExport>;
  /** Stop a running export's job. */
  stopExport(runId: string, exportId: string): Promise<void>;
  /** Every sweep of the store, oldest first. */
  sweeps(): Promise<ISweepSummary[]>;
  sweep(name: string): Promise<ISweepSummary>;
  /** Stop a sweep (a search asks no more trials and stops its running ones); its summary after. */
  stopSweep(name: string): Promise<ISweepSummary>;
}

/** An error from the server, carrying its `{code, message}` body. */
export class RunsApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string
  ) {
    super(message);
  }
}

/** The query string the list and live routes take. */
export function listParams(query: IListQuery): URLSearchParams {
  const params = new URLSearchParams({
    q: query.q,
    sort: query.sort,
    order: query.order,
    limit: String(query.limit),
    offset: String(query.offset)
  });
  if (query.status.length) {
    params.set('status', query.status.join(','));
  }
  return params;
}
