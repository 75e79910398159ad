"""The `Run` handle: start, follow, stop, resume and query a run from any process.

Starting a run writes its folder and index row, then spawns a supervisor in a new session (so it
outlives the notebook kernel or terminal that started it); the supervisor runs the worker and
records how it ended. This module never imports the training stack.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from .config import Config, check_paths, is_in_memory_data, load_config
from .data.splits import SPLITS
from .runstore.queue import DeviceQueue
from .errors import ConfigError, FtkitError, RunError
from .runstore.events import FINAL_STATUSES
from .runstore.layout import CONFIG_FILE, DATA_DIR, LOG_FILE, RUN_FILE, choose_checkpoint, predictions_file, resolve_runs_dir
from .process import executors, supervisor
from .runstore import RunBusy, RunStore, process_alive
from .runstore.lineage import is_run_reference, parent_folder, pin_parent
from .tasks import all_tasks, get_task
from .trainer_args import check_launch

# The run stores this process has opened runs in (newest last): `get` looks there after the default
# store, so a run launched with output.dir / --runs-dir is found by its id without FTKIT_RUNS_DIR.
_KNOWN_STORES: dict[Path, None] = {}
_GENERATORS: dict[Path, Any] = {}  # checkpoint folder -> its loaded Generator (Run.generate)


class Run:
    """A handle on one run; every property reads the store afresh, so it is never stale.

    ``run.store`` is the run's own store (``run.store.root`` its folder): everything that takes a
    run (the magics, inference, ``ftkit.embeddings.load(run)``) reads it there.
    """

    def __init__(self, run_id: str, store: RunStore | None = None):
        self.store = store or RunStore()
        self.id = self.store.resolve(run_id)
        self.dir: Path = self.store.run_dir(self.id)
        _KNOWN_STORES.pop(self.store.root, None)
        _KNOWN_STORES[self.store.root] = None

    def __repr__(self) -> str:
        return f"<Run {self.id} '{self.name}' {self.status}>"

    # ----- state ---------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """The full detail (as `ftkit show RUN --json`)."""
        return self.store.get(self.id)

    @property
    def name(self) -> str:
        return self.store.read_record(self.id)["name"]

    @property
    def status(self) -> str:
        """As run.json says, or 'failed' when its processes are gone without a word (reported, not written)."""
        return self.store.status(self.id)[0]

    @property
    def error(self) -> str | None:
        return self.store.status(self.id)[1]  # the same source as `status`

    @property
    def progress(self) -> dict[str, Any]:
        return self.info()["progress"]

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        return self.info()["metrics"]

    @property
    def checkpoints(self) -> list[dict[str, Any]]:
        return self.store.checkpoints(self.id)

    @property
    def config(self) -> Config:
        return load_config(self.dir / CONFIG_FILE)

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATUSES

    def log_tail(self, lines: int = 40) -> str:
        return self.store.log_tail(self.id, lines)

    # ----- following -------------------------------------------------------------------------
    def events(self, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Events from byte ``offset`` on, and the offset to continue from."""
        return self.store.read_events(self.id, offset)

    def follow(self, poll: float = 0.25, timeout: float | None = None, offset: int = 0) -> Iterator[dict[str, Any]]:
        """Yield events as they are written, from byte ``offset`` on, until the run ends (or ``timeout``
        seconds pass)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            events, offset = self.events(offset)
            yield from events
            if self.done:
                events, offset = self.events(offset)
                yield from events
                return
            if deadline is not None and time.monotonic() > deadline:
                return
            time.sleep(poll)

    def wait(self, timeout: float | None = None, poll: float = 0.25) -> "Run":
        """Block until the run ends; raises TimeoutError past ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {self.id} still {self.status} after {timeout} s")
            time.sleep(poll)
        return self

    # ----- control ---------------------------------------------------------------------------
    def stop(self, wait: bool = False, timeout: float = 120) -> "Run":
        """Ask the worker to checkpoint and stop (it checks after every step); a cluster job that has not started yet
        is cancelled. A started job ends once its run has stopped."""
        if self.done:
            return self
        self.store.request_stop(self.id)
        job = self.store.read_record(self.id).get("job")
        if job and self.status == "queued" and not self.store.has_supervisor(self.id):
            # Still in the cluster's queue: cancel the job rather than let it start only to stop.
            executors.cancel(job)
            if not self.store.has_supervisor(self.id):
                self.store.set_status(self.id, "stopped")
        if wait:
            self.wait(timeout)
        return self

    def resume(self) -> "Run":
        """Continue a stopped or failed run from its last checkpoint to the same final step.

        Compare-and-set under the run's lock: of two resumes at once, one starts a supervisor and the
        other gets `RunBusy` (the run is already queued). A run found dead that no one recorded (its
        supervisor died too) is recorded as failed first.
        """
        with self.store.run_lock(self.id):
            self.store.record_if_dead(self.id)
            status = self.status
            if status in ("queued", "running"):
                raise RunBusy(f"run {self.id} is {status} already: another resume (or its first launch) started it")
            if status not in ("stopped", "failed"):
                raise RunError(f"run {self.id} is {status}; only stopped or failed runs can be resumed")
            if not self.checkpoints:
                raise RunError(f"run {self.id} has no checkpoint to resume from; start it again with ftkit.train")
            self._wait_for_supervisor_exit()
            self.store.clear_stop(self.id)
            self.store.set_status(self.id, "queued", error=None)
            _spawn(self.store, self.id, resume=True)
        return self

    def _wait_for_supervisor_exit(self, timeout: float = 30) -> None:
        """One writer per run: the previous attempt's supervisor (which records how its worker ended, then
        exits) must have let go of the run's life lock before a new one starts."""
        deadline = time.monotonic() + timeout
        while self.store.has_supervisor(self.id):
            if time.monotonic() > deadline:
                raise RunBusy(f"run {self.id}: the supervisor of its previous attempt has not exited yet; try again shortly")
            time.sleep(0.1)

    def checkpoint_path(self, checkpoint: str | int | None = None) -> Path:
        """The folder to load: ``checkpoint`` (a step, name or path), else the best (`ftkit.runstore.layout.choose_checkpoint`)."""
        return choose_checkpoint(self.dir, self.checkpoints, self.config.best_metric, checkpoint, self.id)

    def predict(self, texts: str | list[str], checkpoint: str | None = None) -> Any:
        """Entities with character offsets (NER), labels with probabilities (classification) or the
        generated answer (sft), per text."""
        from .engine.inference import Predictor

        return Predictor.from_run(self, checkpoint).predict(texts)

    def export(self, format: str | None = None, quant: str | None = None, checkpoint: str | int | None = None,
               output: str | Path | None = None, ollama: bool = False, examples: int = 200) -> dict[str, Any]:
        """Export a checkpoint (default: the best) where people run models, and verify it against the run's
        model on up to ``examples`` held-out rows: GGUF (``quant`` f16, q8_0 or q4_0; ``ollama`` adds a
        Modelfile) for generative runs, ONNX for encoders. Runs in a worker process; returns the record
        (``path``, ``size``, ``verification``) also written as export.json beside the file."""
        from .exports import export_run

        return export_run(self, format, quant, checkpoint, output, ollama, examples)

    def error_report(self, split: str = "test", limit: int | None = 200) -> dict[str, Any]:
        """Where the model goes wrong on ``split``, from the saved predictions (no model loaded): see `error_report`."""
        return error_report(self.store, self.id, split, limit)

    def errors(self, split: str = "test") -> Any:
        """The same judgements as a pandas DataFrame, in the split's order: one row per entity decision (NER:
        id, kind, type, gold, predicted, sentence) or per example (classification with its confidence; sft)."""
        import pandas as pd

        task = get_task(self.store.read_record(self.id)["task"])
        return pd.DataFrame(task.error_rows(read_predictions(self.store, self.id, split)))

    def data_map(self) -> Any:
        """How each training example was learnt, from the dynamics training recorded (``training.record_dynamics``):
        a DataFrame, one row per example (its row in the train split), with text, gold and predicted label,
        confidence, variability, correctness and ``issue_score`` (lowest: the likeliest label errors). Readable
        while the run trains; empty before its first records. `ftkit.datamap` says how each is measured."""
        from .datamap import data_map

        return data_map(self)

    def label_issues(self, label: str | None = None, limit: int | None = 100) -> Any:
        """The likeliest label errors, worst first (optionally only examples labelled ``label``): a DataFrame."""
        import pandas as pd

        from .datamap import label_issue_report

        return pd.DataFrame(label_issue_report(self.store, self.id, label, limit)["rows"])

    def retrain(self, exclude: Any = None, relabel: Mapping[Any, Any] | None = None, name: str | None = None,
                **overrides: Any) -> "Run":
        """Start a child run on this run's splits without ``exclude`` (row numbers, a slice of `data_map`, or a
        file of them) and with ``relabel`` ({row: label}); ``overrides`` as ``ftkit.train`` takes them
        (``training__seed=1``). Compare them with ``ftkit.compare(run, child)``."""
        from .datamap import retrain_config

        changes = {key.replace("__", "."): value for key, value in overrides.items()}
        config, splits = retrain_config(self, exclude, relabel, name, changes)
        return start(config, **splits)

    def generator(self, checkpoint: str | int | None = None) -> Any:
        """The `ftkit.engine.generation.Generator` of a checkpoint (default: the best), loaded once per process.

        Its tokenizer is the checkpoint's own, so answers use the chat template the run trained with.
        """
        path = self.checkpoint_path(checkpoint).resolve()
        cached = _GENERATORS.get(path)
        if cached is None:
            from .engine.generation import Generator

            cached = Generator.load(path)
            _GENERATORS.clear()  # one model held at a time: a kernel chatting with many runs keeps its memory
            _GENERATORS[path] = cached
        return cached

    def generate(self, prompt_or_messages: Any, max_new_tokens: int = 64, temperature: float = 0.0,
                 top_p: float = 1.0, checkpoint: str | int | None = None) -> str:
        """The answer of an sft run's best checkpoint to a prompt (one user turn) or a list of messages.

        Temperature 0 is greedy decoding; the answer stops at the end-of-turn token or ``max_new_tokens``.
        """
        return self.generator(checkpoint).generate(prompt_or_messages, max_new_tokens, temperature, top_p)

    def stream(self, prompt_or_messages: Any, max_new_tokens: int = 64, temperature: float = 0.0,
               top_p: float = 1.0, checkpoint: str | int | None = None) -> Iterator[str]:
        """Like `generate`, as text pieces while they are produced."""
        return self.generator(checkpoint).stream(prompt_or_messages, max_new_tokens, temperature, top_p)


def start(config: Config | Mapping[str, Any] | str | os.PathLike, **overrides: Any) -> Run:
    """Validate ``config``, record a queued run and launch its worker; returns at once.

    Paths are made absolute here, against this process's working folder (a file's own paths
    against its folder), so the run's config.yaml says exactly what ran wherever its folder is.
    """
    config, overrides, in_memory = _take_in_memory_data(config, overrides)
    config = load_config(config, **overrides).with_absolute_paths()
    check_launch(config)  # trainer_args' names and report_to's packages, before a run exists
    check_paths(config)  # data files and a model folder that do not exist: refused before a run is made
    store = RunStore(config.runs_dir)
    config, parent = pin_parent_run(store, config)
    prepare = (lambda folder: _snapshot_data(config, in_memory, folder)) if in_memory else None
    run_id = store.create_run(config, prepare, parent=parent)
    _spawn(store, run_id, resume=False)
    return Run(run_id, store)


def pin_parent_run(store: RunStore, config: Config) -> tuple[Config, dict[str, Any] | None]:
    """For ``model: run:<id or name>``: the config with the parent pinned to its best checkpoint now, and the
    ``parent`` record (`ftkit.runstore.lineage`); other configs as they are. The parent must have trained
    the kind of model the task trains (a dpo run starts from an sft run, not from a ner run)."""
    if not is_run_reference(config.model):
        return config, None
    folder = parent_folder(store, config.model)
    parent_config = load_config(folder / CONFIG_FILE)
    task, parent_task = get_task(config.task), get_task(parent_config.task)
    if parent_task.model_class() is not task.model_class():
        kin = ", ".join(t.name for t in all_tasks() if t.model_class() is task.model_class())
        raise ConfigError(f"model '{config.model}' is a {parent_task.name} run; a {task.name} run starts from a run "
                          f"that trained the same kind of model ({kin})")
    pinned, parent = pin_parent(store, config.model, parent_config.best_metric)
    return config.replace({"model": pinned}), parent


def _take_in_memory_data(config: Any, overrides: dict[str, Any]) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Split DataFrames, Datasets and lists of rows off the data keys of a config mapping and its overrides.

    They are saved into the run's folder (`_snapshot_data`); the config records those files.
    """
    def take(section: Mapping[str, Any]) -> dict[str, Any]:
        kept = dict(section)
        in_memory.update({split: kept.pop(split) for split in SPLITS if is_in_memory_data(kept.get(split))})
        return kept

    in_memory: dict[str, Any] = {}
    if isinstance(config, Mapping) and isinstance(config.get("data"), Mapping):
        config = {**config, "data": take(config["data"])}
    overrides = dict(overrides)
    if isinstance(overrides.get("data"), Mapping):
        overrides["data"] = take(overrides["data"])
    for split in SPLITS:
        if is_in_memory_data(overrides.get(f"data__{split}")):
            in_memory[split] = overrides.pop(f"data__{split}")
    return config, overrides, in_memory


def _snapshot_data(config: Config, in_memory: Mapping[str, Any], folder: Path) -> Config:
    """Save in-memory data as Parquet in the run folder and point the config at those files."""
    from .data.snapshot import write_snapshots

    paths = write_snapshots(in_memory, folder / DATA_DIR)
    return config.replace({**{f"data.{split}": path for split, path in paths.items()}, "data.format": None})


def get(ref: "str | Run", runs_dir: str | os.PathLike | None = None) -> Run:
    """A run by id, unique id prefix or name: also re-attaches after a kernel restart.

    Looked up in ``runs_dir`` when given; else in the default store ($FTKIT_RUNS_DIR or
    ./ftkit-runs), then in the other stores this process has opened runs in (a run launched with
    ``output.dir``). A `Run` is returned as it is, and a run folder names its own store.
    """
    if isinstance(ref, Run):
        return ref
    if runs_dir is not None:
        return Run(ref, RunStore(runs_dir))
    folder = Path(str(ref)).expanduser()
    if os.sep in str(ref) and (folder / RUN_FILE).is_file():
        return Run(folder.name, RunStore(folder.resolve().parent))
    default = resolve_runs_dir()
    others = [root for root in reversed(_KNOWN_STORES) if root != default and root.is_dir()]
    not_found = RunError(f"no run '{ref}' in {default}; `ftkit runs` lists them")
    for root in ([default] if default.is_dir() else []) + others:  # looking never creates a store
        try:
            return Run(ref, RunStore(root))
        except RunError as exc:
            not_found = exc if root == default else not_found
    raise not_found


def list(status: str | None = None, runs_dir: str | os.PathLike | None = None) -> "list[dict[str, Any]]":  # noqa: A001
    """Run summaries, newest first."""
    return RunStore(runs_dir).list_runs(status=status)[0]


def read_predictions(store: RunStore, run_id: str, split: str = "test") -> "list[dict[str, Any]]":
    """The rows of a run's ``predictions/<split>.jsonl``; an unfinished last line (still being written) is left out."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    path = store.run_dir(run_id) / predictions_file(split)
    if not path.is_file():
        raise RunError(f"run {run_id} has no saved predictions for its {split} split ({predictions_file(split)}); "
                       "a run writes them when it finishes with a test split and output.save_predictions on")
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    return [json.loads(line) for line in lines if line.strip()]


def error_report(store: RunStore, run_id: str, split: str = "test", limit: int | None = 200) -> dict[str, Any]:
    """Where a run's model goes wrong on ``split``, from its saved predictions (for the panel's route and `Run`).

    ``{"run", "task", "split", "summary", "table", "confusion", "examples"}``: the task's
    ``error_report`` of the predictions file, with at most ``limit`` examples (None: all), worst first.
    """
    task = store.read_record(run_id)["task"]
    report = get_task(task).error_report(read_predictions(store, run_id, split), limit)
    return {"run": run_id, "task": task, "split": split, **report}


def _spawn(store: RunStore, run_id: str, resume: bool) -> None:
    """Start the run's supervisor: a process of its own here, or a cluster job (``resources.executor``)."""
    folder = store.run_dir(run_id)
    config = load_config(folder / CONFIG_FILE)
    if config.resources.executor != executors.LOCAL:
        try:
            store.set_record_fields(run_id, job=executors.submit(folder, config, resume))
        except FtkitError as exc:  # the run is recorded as failed with the cluster's reason, never left queued
            store.set_status(run_id, "failed", error=str(exc))
            raise
        return
    command = supervisor.command(folder, resume)
    # The run's place in its devices' queue, taken now (launch order) and held on by the supervisor.
    ticket = DeviceQueue(store.root).take_ticket(run_id)
    with open(folder / LOG_FILE, "ab") as log, ticket.handle:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, cwd=os.getcwd(), pass_fds=(ticket.handle.fileno(),))
    _reap_later(process)


def _reap_later(process: subprocess.Popen) -> None:
    """Collect the supervisor's exit status in the background so it never lingers as a zombie."""
    import threading

    threading.Thread(target=process.wait, daemon=True).start()


__all__ = ["Run", "start", "get", "list", "error_report", "read_predictions", "process_alive"]
