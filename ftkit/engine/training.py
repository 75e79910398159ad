"""The training job a worker runs: prepare data and model, train, evaluate, record.

Imported only by the worker process (and `ftkit eval`'s worker). How a run trains is its task's
recipe (``recipes/``: the Trainer for the supervised tasks, TRL's trainers for preference methods);
the reporting callback lives in reporting.py and the argument translation in arguments.py.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from transformers import Trainer, TrainerCallback

from ..config import Config
from ..errors import FtkitError
from ..runstore.layout import CONFIG_FILE, EVAL_DIR, choose_checkpoint, predictions_file
from ..runstore import RunStore, is_disk_full, no_space
from ..runstore.queue import cpu_share
from ..tasks import get_task
from ..tasks.alignment import label_list
from ..tasks.base import EvalContext
from ..tasks.loading import no_report, run_splits
from ..tasks.scoring import report_table
from . import adapters, models
from .card import write_run_card
from .distributed import is_main_process
from .dynamics import recorder_for
from .lineage import model_source
from .recipes import get_recipe
from .reporting import EventCallback, PhaseReporter

if TYPE_CHECKING:
    from ..tasks.base import Task
    from .recipes.base import Recipe


@dataclass
class Prepared:
    """Everything a Trainer needs, built from a Config: the task and its recipe are looked up once, here."""

    config: Config
    raw: Any  # datasets.DatasetDict of the task's canonical rows
    features: Any  # the splits as the recipe's trainer reads them
    labels: list[str]
    tokenizer: Any
    model: Any
    source: str = ""  # the folder (or hub id) the model was loaded from
    task: "Task" = None  # type: ignore[assignment]  # filled from config.task when not given
    recipe: "Recipe" = None  # type: ignore[assignment]  # the task's recipe when not given

    def __post_init__(self) -> None:
        self.task = self.task or get_task(self.config.task)
        self.recipe = self.recipe or get_recipe(self.task.recipe)

    @property
    def validation_examples(self) -> int | None:
        """Examples in the validation split (None without one): whether it can choose the best checkpoint."""
        return len(self.raw["validation"]) if "validation" in self.raw else None

    def checkpoint_record(self) -> dict[str, Any]:
        """What each checkpoint says about itself (`ftkit.runstore.layout.CHECKPOINT_RECORD_FILE`)."""
        return {"task": self.task.name, "method": self.recipe.name, "model": str(self.config.model),
                "generative": self.task.label_column is None}


def prepare(config: Config, report: Callable[..., None] = no_report) -> Prepared:
    """Load data and model, align labels, build what the task's recipe trains on.

    ``report(phase, done, total, detail, cached)`` hears each phase as it starts and how far it is
    (a `PhaseReporter` in a training worker): reading data, tokenising, loading model.
    """
    seed = config.training.seed
    task = get_task(config.task)
    recipe = get_recipe(task.recipe)
    raw = run_splits(config, task, report)
    labels = label_list(raw, task, given=config.data.labels)
    source = model_source(config.model, task.name, config.runs_dir)
    tokenizer = models.load_tokenizer(source, task.name)
    features = recipe.features(raw, tokenizer, config, task, labels, report)
    report("loading model", detail=str(config.model))
    torch.manual_seed(seed)
    model = recipe.model(source, config, task, labels)
    return Prepared(config, raw, features, labels, tokenizer, model, source, task, recipe)


class CpuShare(TrainerCallback):
    """On a CPU that several runs share (``resources.runs_per_device`` > 1), keep this run at its share of the cores
    as the others come and go: all of them once it trains alone, half of them beside another run. More threads
    than cores in all makes every run many times slower; fewer leaves cores idle."""

    CHECK_EVERY_S = 2.0

    def __init__(self, root: Path, per_device: int):
        self.root, self.per_device, self.next_check = root, per_device, 0.0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        now = time.monotonic()
        if now >= self.next_check:
            self.next_check = now + self.CHECK_EVERY_S
            threads = cpu_share(self.root, self.per_device)
            if threads != torch.get_num_threads():
                torch.set_num_threads(threads)


def build_trainer(prepared: Prepared, output_dir: Path, callbacks: list[TrainerCallback] = ()) -> Trainer:
    """The recipe's trainer over ``prepared``."""
    return prepared.recipe.build_trainer(prepared, output_dir, callbacks)


def evaluate_split(trainer: Trainer, prepared: Prepared, split: str,
                   predictions_path: Path | None = None) -> tuple[dict[str, Any], Any]:
    """Metrics for one split plus what the task's predictions file needs (the task's ``evaluate``).

    A generative task also gets the split's rows and a generator over the trained model (built on
    first use, with the training tokenizer and so its chat template); it may write its predictions
    to ``predictions_path`` as they are produced.
    """
    generators: list[Any] = []

    def generator() -> Any:
        if not generators:
            from .generation import Generator

            model = trainer.model
            getattr(model, "get_base_model", lambda: model)().config.use_cache = True  # off while training
            generators.append(Generator(model, prepared.tokenizer, trainer.args.device))
        return generators[0]

    context = EvalContext(prepared.raw[split], prepared.config, prepared.tokenizer, generator, predictions_path,
                          trainer.is_world_process_zero())
    features = prepared.recipe.evaluation_features(trainer, prepared, split)
    return prepared.task.evaluate(trainer, features, split, context)


def run_training(store: RunStore, run_id: str, resume: bool = False) -> str:
    """The body of a worker: train, evaluate, record; returns the final status.

    In a distributed run every process runs this; only rank 0 writes to the store.
    """
    from ..config import load_config

    main = is_main_process()
    folder = store.run_dir(run_id)
    config = load_config(folder / CONFIG_FILE)
    if main:
        store.set_status(run_id, "running", pid=os.getpid())
    prepared = prepare(config, PhaseReporter(store, run_id) if main else no_report)

    def log(message: str) -> None:
        if main:
            store.append_event(run_id, {"type": "log", "message": message})

    callback = EventCallback(store, run_id, config.best_metric, adapter_only=config.adapter.kind == "lora")
    recorder = recorder_for(prepared, folder) if prepared.recipe.records_dynamics else None
    # A preference trainer tokenises and wraps LoRA in build_trainer.
    trainer = build_trainer(prepared, folder, [callback] + ([recorder] if recorder else []))
    if recorder:
        trainer.dynamics = recorder
    if trainer.args.device.type == "cpu" and config.resources.runs_per_device > 1:
        trainer.add_callback(CpuShare(store.root, config.resources.runs_per_device))
    sampler = getattr(trainer, "validation_answers", None)
    if sampler is not None:
        callback.answers = sampler.take_latest
    lengths = prepared.recipe.train_lengths(trainer) if main else []  # tokens per example: the estimate, tokens/s
    if main:
        log(f"model {config.model} ({prepared.source}), adapter {config.adapter.kind}, method {prepared.recipe.name}: "
            f"{adapters.describe_parameters(prepared.model)}")
        log(f"data: {', '.join(f'{s} {len(prepared.raw[s])}' for s in prepared.raw)} examples"
            + (f"; labels {prepared.labels}" if prepared.labels else ""))
        if config.training.record_dynamics and recorder is None:
            log(f"training dynamics are not recorded for {prepared.recipe.name} (its trainer is TRL's): no data map")
        dropped = {s: len(prepared.raw[s]) - len(prepared.features[s]) for s in prepared.raw
                   if len(prepared.features[s]) < len(prepared.raw[s])}
        if dropped:  # an SFT example whose answer truncation cut entirely (NER windows only ever add rows)
            log("dropped, as truncation cut everything they train on: "
                + ", ".join(f"{s} {n}" for s, n in dropped.items()))
        batch_size = 64 if config.training.batch_size == "auto" else int(config.training.batch_size)
        longest = max(lengths, default=config.training.max_seq_length)
        estimate = models.estimate_peak_memory(prepared.source, config.task, config.adapter.kind, batch_size, longest)
        log(f"estimated peak memory: {models.describe_memory(estimate)}")
        trainable, total = adapters.parameter_counts(prepared.model)
        store.set_record_fields(run_id, parameters={"trainable": trainable, "total": total}, memory_estimate=estimate)
    if trainer.args.world_size > 1:
        log(f"distributed: {trainer.args.world_size} processes ({config.resources.strategy}, "
            f"{trainer.args.ddp_backend or 'nccl'}), each trains on its share of every global batch")
    checkpoint = None
    if resume:
        checkpoints = store.recorded_checkpoints(run_id)  # from the folder: every rank reads the same
        checkpoint = str(checkpoints[-1]) if checkpoints else None
        log(f"resuming from {checkpoint}")
    try:
        output = trainer.train(resume_from_checkpoint=checkpoint)
    except torch.OutOfMemoryError as exc:
        raise FtkitError(f"out of memory: {str(exc).splitlines()[0]}. {models.oom_advice(config)}") from None
    if main:
        store.set_record_fields(run_id, resources=resource_usage(lengths, output.metrics, callback.evaluation_seconds,
                                                                 recorder.seconds if recorder else None))
    if callback.stop_requested:
        if main:
            store.set_status(run_id, "stopped")
        return "stopped"
    if "test" in prepared.features:
        path = folder / predictions_file("test") if config.output.save_predictions else None
        with _predictions_disk(folder / predictions_file("test")):
            metrics, predictions = evaluate_split(trainer, prepared, "test", path)  # every process takes part
        if main:
            store.append_event(run_id, {"type": "eval", "split": "test", "step": trainer.state.global_step,
                                        "epoch": trainer.state.epoch, "metrics": metrics,
                                        "best_metric_name": config.best_metric})
            log("test report\n" + report_table(metrics, config.task))
            if config.output.save_predictions:
                with _predictions_disk(folder / predictions_file("test")):
                    prepared.task.save_predictions(prepared, "test", predictions, folder / predictions_file("test"))
    if main:
        write_run_card(store, run_id, config)  # README.md in the best checkpoint, as the hub shows it
        store.set_status(run_id, "completed")
    return "completed"


@contextmanager
def _predictions_disk(path: Path) -> Iterator[None]:
    """A full disk while predictions are written: ftkit's message, and no half-written file left to read."""
    try:
        yield
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        path.unlink(missing_ok=True)
        raise no_space(path.name, path.parent, exc) from None


def evaluate_run(store: RunStore, run_id: str, split: str = "test", checkpoint: str | None = None,
                 data_source: str | None = None) -> dict[str, Any]:
    """Evaluate a saved checkpoint of a run on one split (`ftkit eval`, in a worker process).

    ``checkpoint`` is a step, a checkpoint name or a folder; by default the run's best
    (`ftkit.runstore.layout.choose_checkpoint`, as for predictions). ``data_source`` (a file, folder or hub id)
    is scored instead of the run's own ``split``, read with the run's data options. Labels are the
    checkpoint's own, in its order, so a file with a label the model never learnt is refused.
    """
    from ..config import load_config
    from ..tasks.scoring import int_keys

    folder = store.run_dir(run_id)
    config = load_config(folder / CONFIG_FILE)
    checkpoint = str(choose_checkpoint(folder, store.checkpoints(run_id), config.best_metric, checkpoint, run_id))
    model, tokenizer = adapters.load_for_inference(checkpoint)
    overrides: dict[str, Any] = {}
    if get_task(config.task).label_column is not None:
        id2label = int_keys(model.config.id2label)
        overrides["data.labels"] = [id2label[i] for i in sorted(id2label)]
    if data_source is not None:
        overrides["data.test"], split = data_source, "test"
    prepared = prepare(config.replace(overrides))
    if split not in prepared.features:
        raise FtkitError(f"run {run_id} has no '{split}' split; its splits: {', '.join(prepared.features)}")
    prepared.model, prepared.tokenizer = model, tokenizer
    trainer = build_trainer(prepared, folder / EVAL_DIR)
    metrics, _ = evaluate_split(trainer, prepared, split)
    return metrics


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory: kilobytes on Linux, bytes on macOS; None where unknown (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def resource_usage(lengths: list[int], train_metrics: dict[str, Any], evaluation_seconds: float = 0.0,
                   dynamics_seconds: float | None = None) -> dict[str, Any]:
    """Time, throughput and peak memory of the training just finished (and what recording its dynamics took).

    Throughput counts non-padding tokens (``lengths``: per training example) over the training time
    less ``evaluation_seconds`` (the validation passes the Trainer's runtime includes), so it says how
    fast the model trains whatever the evaluation schedule.
    """
    runtime = train_metrics.get("train_runtime") or 0.0
    samples_seen = (train_metrics.get("train_samples_per_second") or 0.0) * runtime
    tokens = samples_seen * sum(lengths) / max(1, len(lengths))
    training = runtime - evaluation_seconds
    usage = {
        "train_runtime_seconds": runtime,
        "evaluation_seconds": evaluation_seconds,
        "train_tokens_per_second": tokens / training if training > 0 else None,
        "peak_rss_bytes": peak_rss_bytes(),
    }
    if dynamics_seconds is not None:
        usage["dynamics_seconds"] = dynamics_seconds
    if torch.cuda.is_available():
        usage["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
    return usage
