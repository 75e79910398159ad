"""From ftkit's config to transformers' TrainingArguments: hyperparameters, hardware and sharding."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments

from ..config import Config
from ..errors import ConfigError, FtkitError
from ..runstore.layout import EVAL_DIR, MLFLOW_DIR, TENSORBOARD_DIR, higher_is_better
from ..tasks import get_task
from ..trainer_args import check_trackers_installed, check_trainer_args, trackers
from .distributed import world_size
from .packing import probe_packing


def hardware_arguments(config: Config, cuda: bool, bf16_supported: bool = False, compute_capability: int = 0,
                       processes: int = 1) -> dict[str, Any]:
    """The TrainingArguments that follow from the hardware and ``resources``.

    On a GPU: bf16 autocast on Ampere or newer (fp16 with loss scaling before), TF32 matmuls, fused
    AdamW, pinned memory. On CPU: fp32, and fused AdamW too (the Trainer's own default: a third of a
    CPU step went to the per-tensor AdamW loop, benchmarks/RESULTS.md, issue 32). Under torchrun the Trainer joins the
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
        "optim": "adamw_torch_fused",
        "torch_compile": r.compile,
        "ddp_backend": "gloo" if not cuda and processes > 1 else None,
        # A collective that never completes (a rank hung or gone) ends the run instead of holding every GPU:
        # the stall timeout when one is set, else 30 minutes (the first collectives may wait for a slow start).
        "ddp_timeout": max(600, r.stall_timeout or 1800),
        "dataloader_pin_memory": cuda,
        **_sharding_arguments(r.strategy),
    }


# Fewer validation examples than this score checkpoints with a spread larger than epochs differ by (38 tweets,
# ftkit's 2% of 1,900, cost 3 points of test F1 on WNUT-16: benchmarks/RESULTS.md): the last checkpoint is kept.
MIN_EXAMPLES_TO_CHOOSE = 200


def keeps_best(config: Config, validation_examples: int | None) -> bool:
    """Whether training ends on the checkpoint that scored best on validation (`training.final_checkpoint`)."""
    t = config.training
    if t.early_stopping_patience or t.metric_for_best_model:  # stopping on the metric, or naming it, is choosing by it
        return True
    if t.final_checkpoint != "auto":
        return t.final_checkpoint == "best"
    return validation_examples is None or validation_examples >= MIN_EXAMPLES_TO_CHOOSE


def training_arguments(config: Config, output_dir: Path, args_class: type = TrainingArguments,
                       validation_examples: int | None = None, **method_arguments: Any) -> TrainingArguments:
    """Translate the ftkit schema into Trainer arguments (Trainer's names where they exist).

    ``args_class`` is the trainer's arguments class (a TRL trainer's ``DPOConfig``, a subclass of
    TrainingArguments) and ``method_arguments`` its method's own fields (``beta``), which replace ours.
    ``validation_examples``: the size of the validation split, which decides whether the best checkpoint
    is loaded at the end (`keeps_best`).

    ``training.trainer_args`` comes last: it may replace what the hardware suggests (``optim``,
    ``tf32``, ...) but never a field the schema owns (refused when the config is built). The
    trackers in ``training.report_to`` log beside ftkit's own events (see :func:`tracker_environment`);
    ``ftkit eval``'s scratch Trainer (``output_dir`` named ``EVAL_DIR``) reports to none.
    """
    t = config.training
    cuda = torch.cuda.is_available() and t.device != "cpu"
    if t.device == "cuda" and not torch.cuda.is_available():
        raise FtkitError("training.device is 'cuda' but no CUDA GPU is visible; use device: auto or cpu")
    hardware = hardware_arguments(config, cuda, cuda and torch.cuda.is_bf16_supported(),
                                  torch.cuda.get_device_capability()[0] if cuda else 0, world_size())
    eval_strategy = "steps" if t.eval_steps else "epoch"
    save_steps = t.save_steps or t.eval_steps
    save_strategy = "steps" if save_steps else "epoch"
    load_best = eval_strategy == save_strategy and (not save_steps or save_steps % (t.eval_steps or save_steps) == 0) \
        and keeps_best(config, validation_examples)
    auto_batch = t.batch_size == "auto"
    batch_size = 64 if auto_batch else int(t.batch_size)
    report_to = trackers(t.report_to) if Path(output_dir).name != EVAL_DIR else []
    if report_to:
        check_trackers_installed(report_to)
        tracker_environment(report_to, Path(output_dir))
    arguments = dict(
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
        greater_is_better=higher_is_better(config.best_metric),
        logging_steps=t.logging_steps,
        logging_strategy="steps",
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        seed=t.seed,
        data_seed=t.seed,
        dataloader_num_workers=t.dataloader_num_workers,
        dataloader_persistent_workers=t.dataloader_num_workers > 0,
        **hardware,
        report_to=report_to or "none",
        run_name=config.run_name,
        disable_tqdm=True,
        save_only_model=False,
    )
    arguments.update(method_arguments)
    if t.trainer_args:
        check_trainer_args(t.trainer_args, {f.name for f in dataclasses.fields(args_class) if f.init})
        arguments.update(t.trainer_args)
    try:
        return args_class(**arguments)
    except (ValueError, TypeError) as exc:
        if not t.trainer_args:
            raise
        raise ConfigError(f"transformers refused training.trainer_args {t.trainer_args}: {exc}") from None


def tracker_environment(report_to: list[str], run_dir: Path) -> None:
    """Where this worker's trackers write, set in its environment (transformers' integrations read it).

    TensorBoard: the run's own ``tensorboard/`` folder, so ``tensorboard --logdir RUNS_DIR`` shows every
    run under its id. MLflow: ``$MLFLOW_TRACKING_URI`` when the user set one; else a local file store
    shared by the runs of this store (``RUNS_DIR/mlruns``: ``mlflow ui --backend-store-uri`` that
    folder), which MLflow 3 accepts only with ``MLFLOW_ALLOW_FILE_STORE``. wandb: files in the run
    folder unless ``$WANDB_DIR`` says otherwise.
    """
    if "tensorboard" in report_to:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / TENSORBOARD_DIR)
    if "mlflow" in report_to and not os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ["MLFLOW_TRACKING_URI"] = (run_dir.parent / MLFLOW_DIR).resolve().as_uri()
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    if "wandb" in report_to:
        os.environ.setdefault("WANDB_DIR", str(run_dir))


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

    Packing puts several examples in one row and tells attention where each starts. Only tasks
    whose ``supports_packing`` says so pack (classification heads pool one vector per row), and
    only models that keep packed examples apart: `probe_packing` runs two short examples through
    the loaded model packed and alone and compares the outputs. ``auto`` packs on a GPU only
    (on CPU packed batches train no faster: benchmarks/padding_free.py); ``always`` packs on any
    device and refuses a model the probe says would let packed examples see each other.
    """
    choice = config.training.padding_free
    if choice == "never" or (choice == "auto" and not cuda):
        return False
    task = get_task(config.task)
    if not task.supports_packing:
        if choice == "always":
            raise FtkitError(f"training.padding_free is 'always', but {config.task} cannot pack: packed batches need a "
                             "token-level task (ner, sft). Use padding_free: auto")
        return False
    probe = probe_packing(model)
    if choice == "always" and not probe.apart:
        raise FtkitError(f"training.padding_free is 'always', but {type(model).__name__} {probe.reason}. "
                         "flash-attention keeps them apart (pip install flash-attn, on an Ampere or newer GPU). "
                         "Use padding_free: auto")
    return probe.apart
