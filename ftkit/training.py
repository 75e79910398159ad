"""Fine-tuning with transformers' Trainer, reporting every step to the run store.

The Trainer does what it already does well (accumulation, mixed precision, schedules, early
stopping, checkpoint rotation, best-model selection, resume); ftkit adds the data and label
alignment, the adapter, a callback that writes events, graceful stop, and evaluation that maps
predictions back to sentences. Imported only by the worker process.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    DataCollatorForTokenClassification,
    DataCollatorWithFlattening,
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
from .launch import is_main_process, world_size
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

    train_data_collator: Any = None  # padding-free training batches (see build_trainer); evaluation stays padded

    def _get_eval_sampler(self, eval_dataset: Any) -> torch.utils.data.Sampler | None:
        # Also when distributed: accelerate deals consecutive batches to the processes and gathers
        # them back in the same order, so predictions still line up with the sentences.
        return torch.utils.data.SequentialSampler(eval_dataset)

    def get_train_dataloader(self) -> torch.utils.data.DataLoader:
        if self.train_data_collator is None:
            return super().get_train_dataloader()
        padded, self.data_collator = self.data_collator, self.train_data_collator
        try:
            return super().get_train_dataloader()
        finally:
            self.data_collator = padded

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        source = self.train_dataset
        if self.args.train_sampling_strategy == "group_by_length" and "length" in source.column_names:
            return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                        lengths=source["length"])
        return super()._get_train_sampler(train_dataset)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """Trainer's checkpoint, written as ``.tmp-checkpoint-<step>`` and renamed into place once whole.

        transformers writes ``checkpoint-<step>`` in place, so a crash mid-save (kill -9, a full
        disk) would leave a folder that looks like a checkpoint but lacks weights or optimizer
        state, and resume or inference could pick it. Here the folder appears complete or not at
        all; a failed save removes its partial files, which also frees the space a full disk needs
        to record the failure. The steps are Trainer's own (model, optimizer, scaler, RNG, state).
        """
        from transformers.trainer import TRAINER_STATE_NAME
        from transformers.trainer_callback import ExportableState
        from transformers.trainer_utils import rotate_checkpoints

        run_dir = Path(self._get_output_dir(trial=trial))
        final = run_dir / f"{CHECKPOINT_PREFIX}{self.state.global_step}"
        partial = run_dir / f".tmp-{final.name}"
        if self.args.should_save:
            shutil.rmtree(partial, ignore_errors=True)  # left by an earlier crash
        self.accelerator.wait_for_everyone()
        if self.hp_search_backend is None and trial is None:
            self.store_flos()
        best = self.state.best_global_step
        if best:  # named by its final path: it is what trainer_state.json and rotation must refer to
            best_dir = run_dir / f"{CHECKPOINT_PREFIX}{best}"
            if best == self.state.global_step or best_dir.exists():
                self.state.best_model_checkpoint = str(best_dir)
        try:
            self.save_model(str(partial), _internal_call=True)
            if not self.args.save_only_model:
                self._save_optimizer_and_scheduler(str(partial))
                self._save_scaler(str(partial))
                self._save_rng_state(str(partial))
            if self.args.should_save:
                for callback in [*self.callback_handler.callbacks, self.control]:
                    if isinstance(callback, ExportableState):
                        name, exported = type(callback).__name__, callback.state()
                        if isinstance(self.state.stateful_callbacks[name], list):
                            self.state.stateful_callbacks[name].append(exported)
                        else:
                            self.state.stateful_callbacks[name] = exported
                self.state.save_to_json(str(partial / TRAINER_STATE_NAME))
            self.accelerator.wait_for_everyone()  # every rank's files are in before the rename
        except BaseException as exc:
            if not self.args.should_save:
                raise
            full = disk_full(run_dir, exc)  # looked at before the partial files give the space back
            shutil.rmtree(partial, ignore_errors=True)
            if full:
                raise FtkitError(
                    f"no space left on device while writing {final.name} in {run_dir} ({_first_line(exc)}). "
                    "Free some space there (or set output.dir to a bigger disk) and resume the run; "
                    "its earlier checkpoints are intact"
                ) from None
            raise
        if self.args.should_save:
            if final.exists():  # killed after the rename but before its event: a resume saves this step again
                shutil.rmtree(final)
            os.replace(partial, final)
            rotate_checkpoints(output_dir=str(run_dir), save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)
        self.accelerator.wait_for_everyone()


def disk_full(folder: Path, exc: BaseException) -> bool:
    """Whether a failed write ran out of disk: ENOSPC, or (torch and safetensors hide the errno) no room left."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "No space left" in str(exc):
        return True
    try:
        return shutil.disk_usage(folder).free < 1024 * 1024
    except OSError:
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


class EventCallback(TrainerCallback):
    """Writes progress, evaluation and checkpoint events; turns a stop request into save-and-stop.

    Every process of a distributed run has one, but only the first (``state.is_world_process_zero``)
    writes: one writer per run. It also reads the stop request and tells the others, so that all
    processes stop after the same step (one that trained on alone would wait forever for its peers).
    """

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
        if not self.stop_requested and self._stop_agreed(args, state):
            self.stop_requested = True
            self._write(state, {"type": "log", "message": f"stop requested: saving a checkpoint at step {state.global_step}"})
            control.should_save = True
            control.should_training_stop = True

    def _stop_agreed(self, args, state) -> bool:
        requested = state.is_world_process_zero and self.store.stop_requested(self.run_id)
        if args.world_size > 1:
            flag = torch.tensor([int(requested)], device=args.device)
            torch.distributed.broadcast(flag, src=0)
            requested = bool(flag.item())
        return requested

    def _write(self, state, event: dict[str, Any]) -> None:
        if state.is_world_process_zero:
            self.store.append_event(self.run_id, event)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            self.last_loss = float(logs["loss"])
            self._write(state, {"type": "log", "step": state.global_step, "epoch": state.epoch,
                                "loss": self.last_loss, "learning_rate": logs.get("learning_rate"),
                                "grad_norm": logs.get("grad_norm")})
            self._progress(state, force=True)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics = {k.removeprefix("eval_"): v for k, v in (metrics or {}).items()}
        self._write(state, {"type": "eval", "split": "validation", "step": state.global_step,
                            "epoch": state.epoch, "metrics": metrics, "best_metric_name": self.best_metric})

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}"
        if not state.is_world_process_zero or not folder.is_dir():
            return
        metrics = next((h for h in reversed(state.log_history) if h.get("step") == state.global_step
                        and any(k.startswith("eval_") for k in h)), {})
        kept = sorted(int(p.name.removeprefix(CHECKPOINT_PREFIX)) for p in Path(args.output_dir).glob(f"{CHECKPOINT_PREFIX}*")
                      if p.name.removeprefix(CHECKPOINT_PREFIX).isdigit())
        self._write(state, {
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
        self._write(state, {
            "type": "progress", "step": state.global_step, "total_steps": state.max_steps,
            "epoch": state.epoch or 0.0, "loss": self.last_loss,
            "samples_per_second": rate * self.samples_per_step if rate else None,
            "eta_seconds": (state.max_steps - state.global_step) / rate if rate else None,
        })


def hardware_arguments(config: Config, cuda: bool, bf16_supported: bool = False, compute_capability: int = 0,
                       processes: int = 1) -> dict[str, Any]:
    """The TrainingArguments that follow from the hardware and ``resources``.

    On a GPU: bf16 autocast on Ampere or newer (fp16 with loss scaling before), TF32 matmuls, fused
    AdamW, pinned memory. On CPU: fp32 and plain AdamW. Under torchrun the Trainer joins the
    process group itself (NCCL on GPUs, gloo on CPU); ``resources.strategy`` picks DDP, FSDP or
    DeepSpeed ZeRO-2, and ``resources.compile`` torch.compile.
    """
    r = config.resources
    precision = r.mixed_precision
    if precision == "auto":
        precision = ("bf16" if bf16_supported else "fp16") if cuda else "no"
    if not cuda:
        precision = "no"  # mixed precision is a GPU feature; fp32 on CPU
    if r.strategy != "ddp" and not cuda:
        raise FtkitError(f"resources.strategy '{r.strategy}' needs CUDA GPUs; use strategy: ddp on CPU")
    return {
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "tf32": True if cuda and compute_capability >= 8 else None,
        "use_cpu": not cuda,
        "optim": "adamw_torch_fused" if cuda else "adamw_torch",
        "torch_compile": r.compile,
        "ddp_backend": "gloo" if not cuda and processes > 1 else None,
        "dataloader_pin_memory": cuda,
        **_sharding_arguments(r.strategy),
    }


def training_arguments(config: Config, output_dir: Path) -> TrainingArguments:
    """Translate the ftkit schema into Trainer arguments (Trainer's names where they exist)."""
    t = config.training
    cuda = torch.cuda.is_available() and t.device != "cpu"
    if t.device == "cuda" and not torch.cuda.is_available():
        raise FtkitError("training.device is 'cuda' but no CUDA GPU is visible; use device: auto or cpu")
    hardware = hardware_arguments(config, cuda, cuda and torch.cuda.is_bf16_supported(),
                                  torch.cuda.get_device_capability()[0] if cuda else 0, world_size())
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
        dataloader_num_workers=t.dataloader_num_workers,
        dataloader_persistent_workers=t.dataloader_num_workers > 0,
        **hardware,
        report_to="none",
        disable_tqdm=True,
        save_only_model=False,
    )


# ZeRO-2 with every size left to the Trainer ("auto"), so it follows the ftkit config.
DEEPSPEED_ZERO2 = {
    "zero_optimization": {"stage": 2, "overlap_comm": True, "contiguous_gradients": True},
    "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"}, "gradient_clipping": "auto",
    "train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
}


def _sharding_arguments(strategy: str) -> dict[str, Any]:
    if strategy == "fsdp":  # wraps each transformer layer (the model's _no_split_modules)
        return {"fsdp": "full_shard auto_wrap"}
    if strategy == "deepspeed":
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise FtkitError("resources.strategy 'deepspeed' needs the deepspeed package: pip install deepspeed")
        return {"deepspeed": DEEPSPEED_ZERO2}
    return {}


def padding_free(config: Config, model: Any, cuda: bool) -> bool:
    """Whether to train on packed rows without padding (``training.padding_free``).

    Packing puts several sentences in one row and tells attention where each starts. In
    transformers 5.24 an encoder like BERT honours those boundaries only through flash-attention's
    variable-length kernels: its SDPA and eager masks ignore ``position_ids``, so packed sentences
    would attend to each other. Classification heads pool one vector per row, so they never pack.
    """
    choice = config.training.padding_free
    attention = getattr(getattr(model, "config", None), "_attn_implementation", None) or ""
    supported = config.task == "ner" and attention.startswith("flash_attention")
    if choice == "always" and not supported:
        raise FtkitError(
            f"training.padding_free is 'always', but {type(model).__name__} uses {attention or 'unknown'} attention"
            f"{' for classification' if config.task != 'ner' else ''}: packed batches need a token-level task and "
            "flash-attention (pip install flash-attn, on an Ampere or newer GPU). Use padding_free: auto")
    return supported and (choice == "always" or cuda) and choice != "never"


def collator(task: str, tokenizer: Any, cuda: bool, packed: bool = False) -> Any:
    """Dynamic padding: each batch is padded to its own longest sequence (to a multiple of 8 on GPU);
    ``packed``: one padding-free row per batch with flash-attention's sequence boundaries."""
    if packed:
        return DataCollatorWithFlattening(return_flash_attn_kwargs=True, separator_id=-100)
    multiple = 8 if cuda else None
    if task == "ner":
        return DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=multiple)
    return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)


def label_weighted_loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
    """Cross-entropy summed over the labelled tokens (or texts), divided by their count in the whole
    optimiser step: across accumulation steps and processes, exactly as one big batch would be.

    transformers 5.24 assumes that a model whose forward takes ``**kwargs`` divides its loss by
    ``num_items_in_batch`` itself, and scales it up by the accumulation steps and the process count
    accordingly. BERT's classification heads take ``**kwargs`` but average per batch, so without
    this the gradient would grow with gradient_accumulation_steps and with the number of processes.
    """
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    labels = labels.to(logits.device)
    loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1),
                                             ignore_index=-100, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (labels != -100).sum().clamp(min=1)
    return loss / count


def build_trainer(prepared: Prepared, output_dir: Path, callbacks: list[TrainerCallback] = ()) -> FtkitTrainer:
    config = prepared.config
    args = training_arguments(config, output_dir)
    # Label names go into LoRA checkpoints before anyone is told the checkpoint exists.
    callbacks = [adapters.label_config_callback(), *callbacks]
    if config.training.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.training.early_stopping_patience))
    id2label = dict(enumerate(prepared.labels))
    cuda = not args.use_cpu
    trainer = FtkitTrainer(
        model=prepared.model,
        args=args,
        train_dataset=prepared.features["train"],
        eval_dataset=prepared.features.get("validation"),
        processing_class=prepared.tokenizer,
        data_collator=collator(config.task, prepared.tokenizer, cuda),
        compute_loss_func=label_weighted_loss,
        compute_metrics=evaluate.make_compute_metrics(config.task, id2label),
        preprocess_logits_for_metrics=evaluate.preprocess_logits_for_metrics,
        callbacks=callbacks,
    )
    if padding_free(config, prepared.model, cuda):
        # Training batches only: evaluation keeps one padded row per sentence, which predictions map back to.
        trainer.train_data_collator = collator(config.task, prepared.tokenizer, cuda, packed=True)
    return trainer


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
    """The body of a worker: train, evaluate, record; returns the final status.

    In a distributed run every process runs this; only rank 0 writes to the store.
    """
    from .config import load_config

    main = is_main_process()
    folder = store.run_dir(run_id)
    config = load_config(folder / "config.yaml")
    if main:
        store.set_status(run_id, "running", pid=os.getpid())
    prepared = prepare(config)

    def log(message: str) -> None:
        if main:
            store.append_event(run_id, {"type": "log", "message": message})

    if main:
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
    if trainer.args.world_size > 1:
        log(f"distributed: {trainer.args.world_size} processes ({config.resources.strategy}, "
            f"{trainer.args.ddp_backend or 'nccl'}), each trains on its share of every global batch")
    checkpoint = None
    if resume:
        checkpoints = store.checkpoints(run_id)
        checkpoint = checkpoints[-1]["path"] if checkpoints else None
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
        metrics, predictions = evaluate_split(trainer, prepared, "test")  # every process takes part
        if main:
            store.append_event(run_id, {"type": "eval", "split": "test", "step": trainer.state.global_step,
                                        "epoch": trainer.state.epoch, "metrics": metrics,
                                        "best_metric_name": config.best_metric})
            log("test report\n" + evaluate.report_table(metrics, config.task))
            if config.output.save_predictions:
                save_split_predictions(prepared, "test", predictions, folder / PREDICTIONS_DIR / "test.jsonl")
    if main:
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
