"""Fine-tuning with transformers' Trainer, reporting every step to the run store.

The Trainer does what it already does well (accumulation, mixed precision, schedules, early
stopping, checkpoint rotation, best-model selection, resume); ftkit adds the data and label
alignment, the adapter, a callback that writes events, graceful stop, and evaluation that maps
predictions back to sentences. Imported only by the worker process.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_pt_utils import LengthGroupedSampler

from . import adapters, data, evaluate, models
from .config import Config
from .errors import FtkitError
from .store import CHECKPOINT_PREFIX, PREDICTIONS_DIR, RunStore, best_checkpoint, folder_size

PROGRESS_INTERVAL_S = 0.5  # a follower sees progress well within a second


@dataclass
class Prepared:
    """Everything a Trainer needs, built from a Config."""

    config: Config
    raw: Any  # datasets.DatasetDict with tokens/tags or text/label
    features: Any  # the tokenized DatasetDict
    labels: list[str]
    tokenizer: Any
    model: Any


def prepare(config: Config) -> Prepared:
    """Load data and model, align labels, apply the adapter."""
    seed = config.training.seed
    raw = data.load_splits(config.data, config.task, seed=seed)
    if config.training.max_train_samples:
        raw["train"] = data.subset(raw["train"], config.training.max_train_samples, seed)
    if config.training.max_eval_samples:
        for split in ("validation", "test"):
            if split in raw:
                raw[split] = data.subset(raw[split], config.training.max_eval_samples, seed)
    labels = data.label_list(raw, config.task, given=config.data.labels)
    source = models.resolve_model_source(config.model)
    tokenizer = models.load_tokenizer(source)
    max_length = min(config.training.max_seq_length, _model_max_length(tokenizer))
    features = data.tokenize_dataset(raw, tokenizer, {label: i for i, label in enumerate(labels)},
                                     config.task, max_length, cache_dir=config.runs_dir / ".cache" / "tokenized")
    for split in ("validation", "test"):
        if split in features:
            # Longest first, evaluated in this order (see FtkitTrainer): little padding, and the
            # predictions line up with these rows, which carry their sentence ids.
            features[split] = features[split].sort("length", reverse=True)
    torch.manual_seed(seed)
    model = models.build_model(source, config.task, labels)
    model = adapters.apply_adapter(model, config.adapter, config.task)
    return Prepared(config, raw, features, labels, tokenizer, model)


def _model_max_length(tokenizer: Any) -> int:
    limit = getattr(tokenizer, "model_max_length", 512) or 512
    return 512 if limit > 100_000 else int(limit)


class FtkitTrainer(Trainer):
    """Trainer whose evaluation keeps dataset order and whose length grouping reuses our lengths.

    In transformers 5, `train_sampling_strategy="group_by_length"` also length-groups evaluation,
    which shuffles predictions away from their sentences. We pre-sort evaluation sets by length
    instead and read them sequentially: as little padding, and predictions stay aligned.
    """

    def _get_eval_sampler(self, eval_dataset: Any) -> torch.utils.data.Sampler | None:
        if self.args.world_size <= 1:
            return torch.utils.data.SequentialSampler(eval_dataset)
        return super()._get_eval_sampler(eval_dataset)

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        source = self.train_dataset
        if self.args.train_sampling_strategy == "group_by_length" and "length" in source.column_names:
            return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                        lengths=source["length"])
        return super()._get_train_sampler(train_dataset)


class EventCallback(TrainerCallback):
    """Writes progress, evaluation and checkpoint events; turns a stop request into save-and-stop."""

    def __init__(self, store: RunStore, run_id: str, best_metric: str, adapter_only: bool):
        self.store, self.run_id, self.best_metric, self.adapter_only = store, run_id, best_metric, adapter_only
        self.started = time.monotonic()
        self.start_step = 0
        self.last_progress = 0.0
        self.last_loss: float | None = None
        self.stop_requested = False
        self.samples_per_step = 1

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.start_step = time.monotonic(), state.global_step
        self.samples_per_step = args.train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
        self._progress(state, force=True)

    def on_step_end(self, args, state, control, **kwargs):
        self._progress(state)
        if not self.stop_requested and self.store.stop_requested(self.run_id):
            self.stop_requested = True
            self.store.append_event(self.run_id, {"type": "log", "message": f"stop requested: saving a checkpoint at step {state.global_step}"})
            control.should_save = True
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            self.last_loss = float(logs["loss"])
            self.store.append_event(self.run_id, {"type": "log", "step": state.global_step, "epoch": state.epoch,
                                                  "loss": self.last_loss, "learning_rate": logs.get("learning_rate"),
                                                  "grad_norm": logs.get("grad_norm")})
            self._progress(state, force=True)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics = {k.removeprefix("eval_"): v for k, v in (metrics or {}).items()}
        self.store.append_event(self.run_id, {"type": "eval", "split": "validation", "step": state.global_step,
                                              "epoch": state.epoch, "metrics": metrics,
                                              "best_metric_name": self.best_metric})

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}"
        if not folder.is_dir():
            return
        metrics = next((h for h in reversed(state.log_history) if h.get("step") == state.global_step
                        and any(k.startswith("eval_") for k in h)), {})
        kept = sorted(int(p.name.removeprefix(CHECKPOINT_PREFIX)) for p in Path(args.output_dir).glob(f"{CHECKPOINT_PREFIX}*")
                      if p.name.removeprefix(CHECKPOINT_PREFIX).isdigit())
        self.store.append_event(self.run_id, {
            "type": "checkpoint", "step": state.global_step, "path": str(folder), "size": folder_size(folder),
            "adapter_only": self.adapter_only, "kept": kept,
            "metrics": {k.removeprefix("eval_"): v for k, v in metrics.items() if k.startswith("eval_")},
        })

    def _progress(self, state, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_progress < PROGRESS_INTERVAL_S and state.global_step < state.max_steps:
            return
        self.last_progress = now
        done = state.global_step - self.start_step
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 and done > 0 else None
        self.store.append_event(self.run_id, {
            "type": "progress", "step": state.global_step, "total_steps": state.max_steps,
            "epoch": state.epoch or 0.0, "loss": self.last_loss,
            "samples_per_second": rate * self.samples_per_step if rate else None,
            "eta_seconds": (state.max_steps - state.global_step) / rate if rate else None,
        })


def training_arguments(config: Config, output_dir: Path) -> TrainingArguments:
    """Translate the ftkit schema into Trainer arguments (Trainer's names where they exist)."""
    t = config.training
    cuda = torch.cuda.is_available() and t.device != "cpu"
    if t.device == "cuda" and not torch.cuda.is_available():
        raise FtkitError("training.device is 'cuda' but no CUDA GPU is visible; use device: auto or cpu")
    precision = t.mixed_precision
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "no"
    if precision != "no" and not cuda:
        precision = "no"  # mixed precision is a GPU feature; fp32 on CPU
    eval_strategy = "steps" if t.eval_steps else "epoch"
    save_steps = t.save_steps or t.eval_steps
    save_strategy = "steps" if save_steps else "epoch"
    load_best = eval_strategy == save_strategy and (not save_steps or save_steps % (t.eval_steps or save_steps) == 0)
    auto_batch = t.batch_size == "auto"
    batch_size = 64 if auto_batch else int(t.batch_size)
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=float(t.epochs),
        max_steps=t.max_steps or -1,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=t.eval_batch_size or batch_size * 2,
        auto_find_batch_size=auto_batch,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        warmup_steps=float(t.warmup),
        weight_decay=t.weight_decay,
        lr_scheduler_type=t.lr_scheduler,
        eval_strategy=eval_strategy,
        eval_steps=t.eval_steps,
        save_strategy=save_strategy,
        save_steps=save_steps or 500,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=load_best,
        metric_for_best_model=config.best_metric,
        greater_is_better=not config.best_metric.endswith("loss"),
        logging_steps=t.logging_steps,
        logging_strategy="steps",
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        seed=t.seed,
        data_seed=t.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        tf32=True if cuda and torch.cuda.get_device_capability()[0] >= 8 else None,
        use_cpu=not cuda,
        optim="adamw_torch_fused" if cuda else "adamw_torch",
        dataloader_num_workers=t.dataloader_num_workers,
        dataloader_pin_memory=cuda,
        report_to="none",
        disable_tqdm=True,
        save_only_model=False,
    )


def collator(task: str, tokenizer: Any, cuda: bool) -> Any:
    """Dynamic padding: each batch is padded to its own longest sequence (to a multiple of 8 on GPU)."""
    multiple = 8 if cuda else None
    if task == "ner":
        return DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=multiple)
    return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)


def build_trainer(prepared: Prepared, output_dir: Path, callbacks: list[TrainerCallback] = ()) -> FtkitTrainer:
    config = prepared.config
    args = training_arguments(config, output_dir)
    # Label names go into LoRA checkpoints before anyone is told the checkpoint exists.
    callbacks = [adapters.label_config_callback(), *callbacks]
    if config.training.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.training.early_stopping_patience))
    id2label = dict(enumerate(prepared.labels))
    return FtkitTrainer(
        model=prepared.model,
        args=args,
        train_dataset=prepared.features["train"],
        eval_dataset=prepared.features.get("validation"),
        processing_class=prepared.tokenizer,
        data_collator=collator(config.task, prepared.tokenizer, not args.use_cpu),
        compute_metrics=evaluate.make_compute_metrics(config.task, id2label),
        preprocess_logits_for_metrics=evaluate.preprocess_logits_for_metrics,
        callbacks=callbacks,
    )


def evaluate_split(trainer: Trainer, prepared: Prepared, split: str) -> tuple[dict[str, Any], Any]:
    """Metrics for one split plus predictions mapped back to its sentences, in dataset order."""
    features = prepared.features[split]
    output = trainer.predict(features, metric_key_prefix=split)
    metrics = {k.removeprefix(f"{split}_"): v for k, v in output.metrics.items()}
    return metrics, output.predictions


def save_split_predictions(prepared: Prepared, split: str, predictions: Any, path: Path) -> None:
    raw, features = prepared.raw[split], prepared.features[split]
    id2label = dict(enumerate(prepared.labels))
    if prepared.config.task == "ner":
        by_sentence = evaluate.word_predictions(features, predictions, id2label)
        predicted = [by_sentence.get(i, ["O"] * len(tokens)) for i, tokens in enumerate(raw["tokens"])]
        evaluate.save_predictions(path, raw["tokens"], raw["tags"], predicted)
    else:
        order = features["sentence_id"] if "sentence_id" in features.column_names else range(len(features))
        predicted = [None] * len(raw)
        for row, sentence in zip(predictions, order):
            predicted[sentence] = id2label[int(row)]
        evaluate.save_predictions(path, raw["text"], raw["label"], predicted)


def run_training(store: RunStore, run_id: str, resume: bool = False) -> str:
    """The body of a worker: train, evaluate, record; returns the final status."""
    from .config import load_config

    folder = store.run_dir(run_id)
    config = load_config(folder / "config.yaml")
    store.set_status(run_id, "running", pid=os.getpid())
    prepared = prepare(config)
    log = lambda message: store.append_event(run_id, {"type": "log", "message": message})  # noqa: E731
    log(f"model {config.model} ({models.resolve_model_source(config.model)}), adapter {config.adapter.kind}: "
        f"{adapters.describe_parameters(prepared.model)}")
    log(f"data: {', '.join(f'{s} {len(prepared.raw[s])}' for s in prepared.raw)} examples; labels {prepared.labels}")
    batch_size = 64 if config.training.batch_size == "auto" else int(config.training.batch_size)
    longest = max(prepared.features["train"]["length"], default=config.training.max_seq_length)
    estimate = models.estimate_peak_memory(models.resolve_model_source(config.model), config.task,
                                           config.adapter.kind, batch_size, longest)
    log(f"estimated peak memory: {models.describe_memory(estimate)}")
    trainable, total = adapters.parameter_counts(prepared.model)
    store.set_record_fields(run_id, parameters={"trainable": trainable, "total": total}, memory_estimate=estimate)
    callback = EventCallback(store, run_id, config.best_metric, adapter_only=config.adapter.kind == "lora")
    trainer = build_trainer(prepared, folder, [callback])
    checkpoint = None
    if resume:
        checkpoints = store.checkpoints(run_id)
        checkpoint = checkpoints[-1]["path"] if checkpoints else None
        log(f"resuming from {checkpoint}")
    try:
        output = trainer.train(resume_from_checkpoint=checkpoint)
    except torch.OutOfMemoryError as exc:
        raise FtkitError(f"out of memory: {str(exc).splitlines()[0]}. {models.oom_advice(config)}") from None
    store.set_record_fields(run_id, resources=resource_usage(prepared, output.metrics))
    if callback.stop_requested:
        store.set_status(run_id, "stopped")
        return "stopped"
    if "test" in prepared.features:
        metrics, predictions = evaluate_split(trainer, prepared, "test")
        store.append_event(run_id, {"type": "eval", "split": "test", "step": trainer.state.global_step,
                                    "epoch": trainer.state.epoch, "metrics": metrics, "best_metric_name": config.best_metric})
        log("test report\n" + evaluate.report_table(metrics, config.task))
        if config.output.save_predictions:
            save_split_predictions(prepared, "test", predictions, folder / PREDICTIONS_DIR / "test.jsonl")
    store.set_status(run_id, "completed")
    return "completed"


def evaluate_run(store: RunStore, run_id: str, split: str = "test", checkpoint: str | None = None) -> dict[str, Any]:
    """Evaluate a saved checkpoint of a run on one split (for `ftkit eval`)."""
    from .config import load_config

    folder = store.run_dir(run_id)
    config = load_config(folder / "config.yaml")
    checkpoints = store.checkpoints(run_id)
    if checkpoint is None:
        if not checkpoints:
            raise FtkitError(f"run {run_id} has no checkpoint to evaluate")
        checkpoint = best_checkpoint(checkpoints, config.best_metric)["path"]
    prepared = prepare(config)
    if split not in prepared.features:
        raise FtkitError(f"run {run_id} has no '{split}' split; its splits: {', '.join(prepared.features)}")
    prepared.model, prepared.tokenizer = adapters.load_for_inference(checkpoint)
    trainer = build_trainer(prepared, folder / "eval-tmp")
    metrics, _ = evaluate_split(trainer, prepared, split)
    return metrics


def resource_usage(prepared: Prepared, train_metrics: dict[str, Any]) -> dict[str, Any]:
    """Time, throughput (non-padding tokens) and peak memory of the training just finished."""
    import resource

    runtime = train_metrics.get("train_runtime") or 0.0
    lengths = prepared.features["train"]["length"]
    samples_seen = (train_metrics.get("train_samples_per_second") or 0.0) * runtime
    tokens = samples_seen * sum(lengths) / max(1, len(lengths))
    usage = {
        "train_runtime_seconds": runtime,
        "train_tokens_per_second": tokens / runtime if runtime else None,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    if torch.cuda.is_available():
        usage["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
    return usage
