"""The training job a worker runs: prepare data and model, train, evaluate, record.

Imported only by the worker process (and `ftkit eval`'s worker). The Trainer subclass lives in
trainer.py, the reporting callback in reporting.py and the argument translation in arguments.py.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback

from ..config import Config
from ..data.splits import subset
from ..errors import FtkitError
from ..runstore.layout import CACHE_DIR, CONFIG_FILE, EVAL_DIR, choose_checkpoint, predictions_file
from ..runstore import RunStore, is_disk_full, no_space
from ..tasks import get_task
from ..tasks.alignment import label_list, tokenize_dataset
from ..tasks.base import EvalContext
from ..tasks.loading import load_splits
from ..tasks.scoring import report_table
from . import adapters, evaluate, models
from .arguments import padding_free, training_arguments
from .card import write_run_card
from .distributed import is_main_process
from .packing import packed_collator
from .reporting import EventCallback, PhaseReporter
from .trainer import FtkitTrainer


@dataclass
class Prepared:
    """Everything a Trainer needs, built from a Config."""

    config: Config
    raw: Any  # datasets.DatasetDict with tokens/tags or text/label
    features: Any  # the tokenized DatasetDict
    labels: list[str]
    tokenizer: Any
    model: Any


def _no_report(phase: str, done: int | None = None, total: int | None = None, detail: str | None = None,
               cached: bool = False) -> None:
    return None


def prepare(config: Config, report: Callable[..., None] = _no_report) -> Prepared:
    """Load data and model, align labels, apply the adapter.

    ``report(phase, done, total, detail, cached)`` hears each phase as it starts and how far it is
    (a `PhaseReporter` in a training worker): reading data, tokenising, loading model.
    """
    seed = config.training.seed
    raw = load_splits(config.data, config.task, seed=seed,
                      on_progress=lambda done, total, name: report("reading data", done, total, name or None),
                      cache_dir=config.runs_dir / CACHE_DIR / "data")
    if config.training.max_train_samples:
        raw["train"] = subset(raw["train"], config.training.max_train_samples, seed)
    if config.training.max_eval_samples:
        for split in ("validation", "test"):
            if split in raw:
                raw[split] = subset(raw[split], config.training.max_eval_samples, seed)
    labels = label_list(raw, config.task, given=config.data.labels)
    task = get_task(config.task)
    source = models.resolve_model_source(config.model, config.task)
    tokenizer = models.load_tokenizer(source, config.task)
    max_length = min(config.training.max_seq_length, _model_max_length(tokenizer))
    features = tokenize_dataset(raw, tokenizer, {label: i for i, label in enumerate(labels)},
                                config.task, max_length, cache_dir=config.runs_dir / CACHE_DIR / "tokenized",
                                options=task.encoder_options(config),
                                on_progress=lambda split, done, total, cached: report("tokenising", done, total,
                                                                                      split, cached))
    if not len(features["train"]):
        raise FtkitError(f"no training example is left after tokenising: every one was cut at max_seq_length "
                         f"{max_length} before anything it trains on; raise training.max_seq_length")
    for split in ("validation", "test"):
        if split in features:
            # Longest first, evaluated in this order (see FtkitTrainer): little padding, and the
            # predictions line up with these rows, which carry their sentence ids.
            features[split] = features[split].sort("length", reverse=True)
    report("loading model", detail=str(config.model))
    torch.manual_seed(seed)
    model = models.build_model(source, config.task, labels)
    task.configure_model(model)
    model = adapters.apply_adapter(model, config.adapter, config.task)
    return Prepared(config, raw, features, labels, tokenizer, model)


def _model_max_length(tokenizer: Any) -> int:
    limit = getattr(tokenizer, "model_max_length", 512) or 512
    return 512 if limit > 100_000 else int(limit)


def collator(task: str, tokenizer: Any, cuda: bool, packed: bool = False) -> Any:
    """The task's dynamic padding: each batch is padded to its own longest sequence (to a multiple of 8
    on GPU); ``packed``: one padding-free row per batch (`packing.packed_collator`)."""
    if packed:
        return packed_collator()
    return get_task(task).collator(tokenizer, pad_to_multiple_of=8 if cuda else None)


def build_trainer(prepared: Prepared, output_dir: Path, callbacks: list[TrainerCallback] = ()) -> FtkitTrainer:
    config = prepared.config
    args = training_arguments(config, output_dir)
    callbacks = list(callbacks)
    if config.training.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.training.early_stopping_patience))
    id2label = dict(enumerate(prepared.labels))
    cuda = not args.use_cpu
    task = get_task(config.task)
    compute_metrics = evaluate.make_compute_metrics(config.task, id2label)
    trainer = FtkitTrainer(
        loss_metrics=task.loss_metrics,
        model=prepared.model,
        args=args,
        train_dataset=prepared.features["train"],
        eval_dataset=prepared.features.get("validation"),
        processing_class=prepared.tokenizer,
        data_collator=collator(config.task, prepared.tokenizer, cuda),
        compute_loss_func=task.loss_function(),
        compute_metrics=compute_metrics,
        # Metrics read argmax ids (classification: probabilities); without metrics there is nothing to reduce.
        preprocess_logits_for_metrics=evaluate.make_preprocess_logits(config.task) if compute_metrics else None,
        callbacks=callbacks,
    )
    if padding_free(config, prepared.model, cuda):
        # Training batches only: evaluation keeps one padded row per sentence, which predictions map back to.
        trainer.train_data_collator = collator(config.task, prepared.tokenizer, cuda, packed=True)
    return trainer


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
    return get_task(prepared.config.task).evaluate(trainer, prepared.features[split], split, context)


def save_split_predictions(prepared: Prepared, split: str, predictions: Any, path: Path) -> None:
    """The task's predictions file for ``split``: one line per example, in the split's order."""
    get_task(prepared.config.task).save_predictions(prepared, split, predictions, path)


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
    prepared = prepare(config, PhaseReporter(store, run_id) if main else _no_report)

    def log(message: str) -> None:
        if main:
            store.append_event(run_id, {"type": "log", "message": message})

    if main:
        log(f"model {config.model} ({models.resolve_model_source(config.model, config.task)}), adapter {config.adapter.kind}: "
            f"{adapters.describe_parameters(prepared.model)}")
        log(f"data: {', '.join(f'{s} {len(prepared.raw[s])}' for s in prepared.raw)} examples"
            + (f"; labels {prepared.labels}" if prepared.labels else ""))
        dropped = {s: len(prepared.raw[s]) - len(prepared.features[s]) for s in prepared.raw
                   if len(prepared.features[s]) < len(prepared.raw[s])}
        if dropped:  # an SFT example whose answer truncation cut entirely (NER windows only ever add rows)
            log("dropped, as truncation cut everything they train on: "
                + ", ".join(f"{s} {n}" for s, n in dropped.items()))
        batch_size = 64 if config.training.batch_size == "auto" else int(config.training.batch_size)
        longest = max(prepared.features["train"]["length"][:], default=config.training.max_seq_length)  # [:]: one read
        estimate = models.estimate_peak_memory(models.resolve_model_source(config.model, config.task), config.task,
                                               config.adapter.kind, batch_size, longest)
        log(f"estimated peak memory: {models.describe_memory(estimate)}")
        trainable, total = adapters.parameter_counts(prepared.model)
        store.set_record_fields(run_id, parameters={"trainable": trainable, "total": total}, memory_estimate=estimate)
    callback = EventCallback(store, run_id, config.best_metric, adapter_only=config.adapter.kind == "lora")
    trainer = build_trainer(prepared, folder, [callback])
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
        store.set_record_fields(run_id, resources=resource_usage(prepared, output.metrics))
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
                    save_split_predictions(prepared, "test", predictions, folder / predictions_file("test"))
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


def resource_usage(prepared: Prepared, train_metrics: dict[str, Any]) -> dict[str, Any]:
    """Time, throughput (non-padding tokens) and peak memory of the training just finished."""
    runtime = train_metrics.get("train_runtime") or 0.0
    lengths = prepared.features["train"]["length"][:]
    samples_seen = (train_metrics.get("train_samples_per_second") or 0.0) * runtime
    tokens = samples_seen * sum(lengths) / max(1, len(lengths))
    usage = {
        "train_runtime_seconds": runtime,
        "train_tokens_per_second": tokens / runtime if runtime else None,
        "peak_rss_bytes": peak_rss_bytes(),
    }
    if torch.cuda.is_available():
        usage["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
    return usage
