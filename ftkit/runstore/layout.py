"""The layout of a run store on disk, and the checkpoint policy that goes with it.

The one place that names the files of a run folder (``config.yaml``, ``run.json``,
``events.jsonl``, ``checkpoint-<step>/``, ...) and decides the questions everyone else asks:
whether a higher value of a metric is better (:func:`higher_is_better`), which checkpoint of a
run is its best (:func:`best_checkpoint`, :func:`choose_checkpoint`), and which checkpoints keep
what resuming needs (:func:`keeps_resume_state`). The store's index, the
Trainer's ``greater_is_better``, inference, ``ftkit eval``/``merge`` and the embedding explorer all
ask here, so they never disagree about what "best" means. Plain Python: no torch, no SQLite.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import FtkitError, RunError

# ----- the store folder ---------------------------------------------------------------------------
DEFAULT_RUNS_DIR = "./ftkit-runs"
INDEX_FILE = "index.sqlite"  # the SQLite index of every run (a cache; rebuilt from the folders)
# A store used from several machines (FTKIT_SHARED_STORE, or a network file system) says so for them all:
# its index keeps a rollback journal, not SQLite's WAL, whose shared memory works on one machine only.
SHARED_STORE_FILE = ".shared-store"
INDEX_LOCK_FILE = ".index.lock"  # shared by each index write with its event line, exclusive for a rebuild
CACHE_DIR = ".cache"  # shared caches (tokenized data sets) of the runs in a store
DEVICES_DIR = ".devices"  # the run queue: device slot locks, and queue/ with one ticket per waiting run
SWEEPS_DIR = ".sweeps"  # .sweeps/<name>/: a search's spec, its optuna journal and its driver's record and log
MLFLOW_DIR = "mlruns"  # MLflow's local file store for training.report_to: [mlflow] when no tracking URI is set

# ----- one run's folder (HF/PEFT names where they exist) -------------------------------------------
CONFIG_FILE = "config.yaml"  # exactly what ran, every path absolute
RUN_FILE = "run.json"  # id, name, status, host, boot id, pids with start times, error
EVENTS_FILE = "events.jsonl"  # one JSON event per line, written by the run's one writer
SUMMARY_FILE = "summary.json"  # a cache: the events folded up to a byte offset, so readers of a long run read only what is new
LOG_FILE = "train.log"  # the worker's stdout and stderr
STOP_FILE = "STOP"  # a stop request; the worker looks for it after every step
LOCK_FILE = ".lock"  # flock'ed for a moment: each change of run.json, and resume's compare-and-set
LIFE_LOCK_FILE = ".supervisor.lock"  # flock'ed by the run's supervisor for as long as it lives: one at a time
PROGRESS_MARK_FILE = "progress"  # touched by the worker as it trains and evaluates: what proves the run alive
HEARTBEAT_FILE = "heartbeat"  # touched by the supervisor every few seconds; other machines judge liveness by its age
RESERVE_FILE = ".reserve"  # disk space an active run holds back, given up to record its final status
DELETING_PREFIX = ".deleting-"  # a run or checkpoint folder renamed out of sight, then removed
SUBMITIT_DIR = "submitit"  # a run sent to a cluster (resources.executor): submitit's job files and logs
PREDICTIONS_DIR = "predictions"  # predictions/<split>.jsonl
DATA_DIR = "data"  # snapshots of in-memory data, and a retrain's copy of its parent's splits
DYNAMICS_FILE = "dynamics.parquet"  # each training example's confidence per pass (training.record_dynamics)
DYNAMICS_LEVEL_KEY = b"ftkit.level"  # its Parquet metadata: example, token or generated (see engine/dynamics.py)
CHECKPOINT_PREFIX = "checkpoint-"  # checkpoint-<step>/, as the Trainer names them
PARTIAL_PREFIX = ".tmp-"  # .tmp-checkpoint-<step>/ while a checkpoint is written
BEST_FOLDERS = ("best", "final")  # a model saved whole after training, preferred over checkpoints
CHECKPOINT_RECORD_FILE = "ftkit_checkpoint.json"  # in each checkpoint: the task and method that made it, its lineage
MERGED_DIR = "merged"  # `ftkit merge`'s default output
EXPORTS_DIR = "exports"  # `ftkit export`'s default outputs: exports/<checkpoint>-<format>[-<quant>]/
EXPORT_RECORD_FILE = "export.json"  # in an export's folder: what was exported, from where, and its verification
EXPORT_LOG_FILE = "export.log"  # in exports/: the output of export jobs started by the server
EXPORT_FORMATS = ("gguf", "onnx")  # a task says which it writes (`Task.export_format`)
GGUF_QUANTS = ("f16", "q8_0", "q4_0")  # GGUF weights: float16, or 8 / 4 bits per weight in blocks of 32
# The share of verification examples on which an export must answer as the fine-tuned model did; below it the
# export is kept but marked as failing verification, and `ftkit push` refuses it unless told otherwise.
VERIFICATION_THRESHOLDS = {"f16": 0.99, "q8_0": 0.95, "q4_0": 0.85, "onnx": 0.99}
EVAL_DIR = "eval-tmp"  # the Trainer's scratch folder for `ftkit eval`
TENSORBOARD_DIR = "tensorboard"  # TensorBoard event files (training.report_to: [tensorboard])
RANK_ERROR_GLOB = "rank-*.err"  # rank-<i>.err: the failure of one process of a distributed run

# The split the Trainer evaluates during training to keep and choose checkpoints: a run's best metric
# is ranked on it alone (a test score is reported, never ranked against validation scores).
SELECTION_SPLIT = "validation"

# Metrics for which lower is better: losses and the like. Everything else (f1, accuracy, ...) is a score.
LOWER_IS_BETTER_SUFFIXES = ("loss", "perplexity", "ppl", "error", "wer", "cer")


def resolve_runs_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The run store every surface uses: explicit folder, else $FTKIT_RUNS_DIR, else ./ftkit-runs."""
    return Path(explicit or os.environ.get("FTKIT_RUNS_DIR") or DEFAULT_RUNS_DIR).expanduser().resolve()


def run_name(name: str | None, task: str, model: str, adapter: str) -> str:
    """A run's name: the one it was given, else ``<task>-<model's folder name>-<adapter>``."""
    return name or f"{task}-{Path(model).name or model}-{adapter}"


def run_summary(config: Mapping[str, Any]) -> dict[str, Any]:
    """What run.json and the index show of a run (name, task, model, adapter, sweep), from its config.yaml."""
    adapter = (config.get("adapter") or {}).get("kind", "full")
    task, model = config.get("task", "ner"), str(config.get("model", "default"))
    return {"name": run_name(config.get("name"), task, model, adapter), "task": task, "model": model,
            "adapter": adapter, "sweep": (config.get("output") or {}).get("sweep")}


def checkpoint_name(step: int) -> str:
    """``checkpoint-<step>``: the folder name of the checkpoint saved at ``step``."""
    return f"{CHECKPOINT_PREFIX}{int(step)}"


def checkpoint_step(name: str | Path) -> int | None:
    """The step of a ``checkpoint-<step>`` folder name (or path); None for anything else."""
    suffix = Path(str(name)).name.removeprefix(CHECKPOINT_PREFIX)
    return int(suffix) if Path(str(name)).name.startswith(CHECKPOINT_PREFIX) and suffix.isdigit() else None


def keeps_resume_state(step: int, max_steps: int) -> bool:
    """Whether the checkpoint saved at ``step`` holds optimizer, scheduler and RNG state beside the model:
    only while steps are left to resume. The last one, the model a completed run keeps, is the model
    alone (a completed run is never resumed), which spares writing twice the model's size at the end."""
    return step < max_steps


def partial_name(name: str) -> str:
    """The name a checkpoint is written under until it is whole."""
    return f"{PARTIAL_PREFIX}{name}"


def rank_error_name(rank: int) -> str:
    return f"rank-{int(rank)}.err"


def rank_of_error_file(path: str | Path) -> int:
    return int(Path(path).name.removeprefix("rank-").removesuffix(".err"))


def export_folder_name(checkpoint: str, format: str, quant: str | None) -> str:
    """``checkpoint-60-gguf-q8_0``, ``checkpoint-60-onnx``: the default folder of an export under exports/."""
    return "-".join(part for part in (Path(checkpoint).name, format, quant) if part)


def predictions_file(split: str) -> str:
    """Where a run's predictions for ``split`` are, relative to its folder."""
    return f"{PREDICTIONS_DIR}/{split}.jsonl"


def saved_checkpoints(run_dir: str | Path) -> list[int]:
    """Steps of the whole ``checkpoint-<step>`` folders in ``run_dir``, oldest first."""
    steps = (checkpoint_step(p.name) for p in Path(run_dir).glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir())
    return sorted(step for step in steps if step is not None)


def checkpoint_of_event(event: Mapping[str, Any]) -> str:
    """The checkpoint's name in a checkpoint event or index row.

    Events name it (``"checkpoint": "checkpoint-40"``); older run stores recorded an absolute
    ``"path"``, whose last part is the same name, so their runs still read.
    """
    name = event.get("checkpoint") or event.get("name")
    if name:
        return Path(str(name)).name
    if event.get("path"):
        return Path(str(event["path"])).name
    return checkpoint_name(event["step"])


# ----- which is better ----------------------------------------------------------------------------


def higher_is_better(metric: str) -> bool:
    """False for loss-like metrics (``loss``, ``eval_loss``, ``perplexity``, ...), True for scores.

    The one rule behind the Trainer's ``greater_is_better``, the index's best metric and the
    choice of a run's best checkpoint.
    """
    name = str(metric).lower()
    return not any(name == suffix or name.endswith(suffix) for suffix in LOWER_IS_BETTER_SUFFIXES)


def is_better(metric: str, value: float, than: float | None) -> bool:
    """Whether ``value`` of ``metric`` beats ``than`` (anything beats None)."""
    if than is None:
        return True
    return value > than if higher_is_better(metric) else value < than


def metric_value(metrics: Mapping[str, Any] | None, name: str) -> float | None:
    """``name`` from a metrics dict, also under the Trainer's ``eval_`` and our ``validation_`` prefixes."""
    for key in (name, f"eval_{name}", f"validation_{name}"):
        value = (metrics or {}).get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:  # NaN never wins
            return float(value)
    return None


def best_checkpoint(checkpoints: Iterable[Mapping[str, Any]], metric: str) -> Mapping[str, Any]:
    """The checkpoint with the best ``metric`` (lowest for a loss; the later one on a tie), else (no
    checkpoint has the metric, or the run kept its last one: ``ranked`` False) the latest."""
    checkpoints = sorted(checkpoints, key=lambda c: c["step"])
    if not checkpoints:
        raise RunError("there is no checkpoint yet")
    scored = [c for c in checkpoints if c.get("ranked", True) and metric_value(c.get("metrics"), metric) is not None]
    if not scored:
        return checkpoints[-1]
    sign = 1 if higher_is_better(metric) else -1
    return max(scored, key=lambda c: (sign * metric_value(c["metrics"], metric), c["step"]))


def best_checkpoint_step(checkpoints: Iterable[Mapping[str, Any]], best_metric_name: str | None) -> int | None:
    """The step :func:`best_checkpoint` picks by a run's ranked metric (named ``<SELECTION_SPLIT>_<metric>``);
    None before the run has a checkpoint or a ranked evaluation."""
    checkpoints = list(checkpoints)
    if not checkpoints or not best_metric_name:
        return None
    return best_checkpoint(checkpoints, best_metric_name.removeprefix(f"{SELECTION_SPLIT}_"))["step"]


def choose_checkpoint(run_dir: str | Path, checkpoints: Iterable[Mapping[str, Any]], metric: str,
                      requested: str | int | None = None, run_id: str | None = None) -> Path:
    """The folder of a run to load: the one ``requested`` (a step, ``checkpoint-<step>``, a folder
    name in the run or a path), else the ``best``/``final`` folder, else :func:`best_checkpoint`
    among the checkpoints still on disk.
    """
    run_dir = Path(run_dir)
    checkpoints = list(checkpoints)
    label = run_id or run_dir.name
    if requested is not None:
        name = str(requested)
        for candidate in (Path(name).expanduser(), run_dir / name, run_dir / f"{CHECKPOINT_PREFIX}{name}"):
            if candidate.is_dir():
                return candidate
        steps = ", ".join(str(c["step"]) for c in checkpoints) or "none"
        raise FtkitError(f"run {label} has no checkpoint '{requested}' (steps: {steps})")
    for name in BEST_FOLDERS:
        if (run_dir / name).is_dir():
            return run_dir / name
    existing = [c for c in checkpoints if (run_dir / checkpoint_of_event(c)).is_dir()]
    if not existing:
        raise FtkitError(f"run {label} has no saved model yet: wait for its first checkpoint")
    return run_dir / checkpoint_of_event(best_checkpoint(existing, metric))


__all__ = [
    "BEST_FOLDERS", "CACHE_DIR", "CHECKPOINT_PREFIX", "CONFIG_FILE", "DATA_DIR", "DELETING_PREFIX", "EVAL_DIR",
    "CHECKPOINT_RECORD_FILE", "EVENTS_FILE", "EXPORTS_DIR", "EXPORT_FORMATS", "EXPORT_LOG_FILE", "EXPORT_RECORD_FILE", "GGUF_QUANTS", "HEARTBEAT_FILE", "INDEX_FILE", "INDEX_LOCK_FILE", "LIFE_LOCK_FILE", "LOCK_FILE", "RESERVE_FILE", "LOG_FILE", "MERGED_DIR", "MLFLOW_DIR", "TENSORBOARD_DIR", "PARTIAL_PREFIX", "PREDICTIONS_DIR", "RANK_ERROR_GLOB",
    "RUN_FILE", "SELECTION_SPLIT", "SHARED_STORE_FILE", "STOP_FILE", "SUMMARY_FILE", "best_checkpoint", "best_checkpoint_step", "checkpoint_name", "checkpoint_of_event", "checkpoint_step",
    "choose_checkpoint", "export_folder_name", "higher_is_better", "is_better", "keeps_resume_state", "metric_value", "partial_name", "predictions_file",
    "rank_error_name", "rank_of_error_file", "saved_checkpoints", "VERIFICATION_THRESHOLDS",
]
