"""What ftkit hands to transformers' Trainer as the user wrote it: ``training.trainer_args`` and
``training.report_to``.

``training.trainer_args`` passes any `TrainingArguments` field that ftkit's schema does not own
(``max_grad_norm``, ``gradient_checkpointing``, ``optim``, ``label_smoothing_factor``, ...);
``training.report_to`` names experiment trackers that receive the Trainer's logs beside ftkit's own
events. Three checks, each where it is cheapest:

- :data:`OWNED` (no import): keys the schema already sets are refused when a config is built,
  naming the schema key to use instead.
- :func:`check_launch` (when a run starts, in the launching process): every other key must be a
  real `TrainingArguments` field ("did you mean"), and every tracker's package must be installed
  (the error names the pip install). The field names are read from transformers' source
  (:func:`trainer_argument_names`), so the CLI, the kernel and the server never import torch for it.
- The worker checks again against ``dataclasses.fields(TrainingArguments)`` itself, before training.

Plain Python: imports only ``ftkit.errors``, so ``ftkit.config`` can use it.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import ConfigError

# TrainingArguments fields that ftkit sets from its own schema (engine/arguments.py): what to set instead.
OWNED: dict[str, str] = {
    "output_dir": "set output.dir instead (each run trains in its own folder there)",
    "num_train_epochs": "set training.epochs instead",
    "max_steps": "set training.max_steps instead",
    "learning_rate": "set training.learning_rate instead",
    "per_device_train_batch_size": "set training.batch_size instead",
    "auto_find_batch_size": "set training.batch_size: auto instead",
    "per_device_eval_batch_size": "set training.eval_batch_size instead",
    "gradient_accumulation_steps": "set training.gradient_accumulation_steps instead",
    "warmup_steps": "set training.warmup instead",
    "weight_decay": "set training.weight_decay instead",
    "lr_scheduler_type": "set training.lr_scheduler instead",
    "eval_strategy": "set training.eval_steps instead (empty: once per epoch)",
    "eval_steps": "set training.eval_steps instead",
    "save_strategy": "set training.save_steps instead (empty: once per epoch)",
    "save_steps": "set training.save_steps instead",
    "save_total_limit": "set training.save_total_limit instead",
    "load_best_model_at_end": "ftkit keeps the best checkpoint by training.metric_for_best_model",
    "metric_for_best_model": "set training.metric_for_best_model instead",
    "greater_is_better": "it follows training.metric_for_best_model (lower is better for losses)",
    "logging_steps": "set training.logging_steps instead",
    "logging_strategy": "set training.logging_steps instead",
    "train_sampling_strategy": "set training.group_by_length instead",
    "seed": "set training.seed instead",
    "data_seed": "set training.seed instead",
    "dataloader_num_workers": "set training.dataloader_num_workers instead",
    "dataloader_persistent_workers": "set training.dataloader_num_workers instead",
    "use_cpu": "set training.device instead",
    "bf16": "set resources.mixed_precision instead",
    "fp16": "set resources.mixed_precision instead",
    "torch_compile": "set resources.compile instead",
    "fsdp": "set resources.strategy instead",
    "deepspeed": "set resources.strategy instead",
    "report_to": "set training.report_to instead",
    "run_name": "set name instead",
    "disable_tqdm": "ftkit reports progress through its own events",
    "save_only_model": "ftkit keeps optimizer state in checkpoints so that a run can resume",
    "resume_from_checkpoint": "use `ftkit resume RUN` (Run.resume()) instead",
    "local_rank": "set by torchrun; use the resources section",
    # The hub: a token is never stored in a run, and the Trainer's push would upload the whole run folder.
    "push_to_hub": "use `ftkit push RUN REPO`: it uploads the model's files only, privately by default",
    "hub_token": "a run never stores a token: log in with `hf auth login` or set HF_TOKEN",
    "hub_model_id": "use `ftkit push RUN REPO`",
    "hub_strategy": "use `ftkit push RUN REPO`",
    "hub_private_repo": "use `ftkit push RUN REPO` (private unless --public)",
    "hub_always_push": "use `ftkit push RUN REPO`",
    "hub_revision": "use `ftkit push RUN REPO`",
}

# training.report_to names -> (modules any one of which will do, the pip install that provides one).
TRACKERS: dict[str, tuple[tuple[str, ...], str]] = {
    "tensorboard": (("tensorboard", "tensorboardX"), "pip install tensorboard"),
    "mlflow": (("mlflow",), "pip install mlflow-skinny"),
    "wandb": (("wandb",), "pip install wandb"),
}
NO_TRACKER = "none"  # what Hugging Face users write for no tracker; the same as an empty list


def check_owned(trainer_args: Mapping[str, Any]) -> None:
    """Refuse keys that ftkit's schema sets, naming the schema key (no import needed)."""
    for key in trainer_args:
        if not isinstance(key, str):
            raise ConfigError(f"'training.trainer_args' keys must be TrainingArguments field names; got {key!r}")
        if key in OWNED:
            raise ConfigError(f"'training.trainer_args.{key}' is ftkit's to set: {OWNED[key]}")


def check_tracker_names(report_to: Iterable[str]) -> None:
    for name in report_to:
        if name not in TRACKERS and name != NO_TRACKER:
            raise ConfigError(f"'training.report_to' names unknown tracker '{name}': use "
                              f"{', '.join(TRACKERS)} (or none).{_suggest(name, TRACKERS)}")


def trackers(report_to: Iterable[str] | None) -> list[str]:
    """The trackers to report to, without ``none``."""
    return [name for name in report_to or () if name != NO_TRACKER]


def check_trackers_installed(report_to: Iterable[str] | None) -> None:
    """A ConfigError naming the pip install for the first tracker whose package is missing."""
    for name in trackers(report_to):
        modules, install = TRACKERS[name]
        if not any(_installed(module) for module in modules):
            raise ConfigError(f"'training.report_to' includes {name}, but the {modules[0]} package is not installed: "
                              f"{install} (or pip install 'ftkit[trackers]' for tensorboard and mlflow)")


def check_trainer_args(trainer_args: Mapping[str, Any] | None, names: Iterable[str]) -> None:
    """Every key must be one of ``names`` (TrainingArguments' fields) and not one ftkit owns."""
    trainer_args = trainer_args or {}
    check_owned(trainer_args)
    names = set(names)
    for key in trainer_args:
        if key not in names:
            raise ConfigError(f"'training.trainer_args.{key}' is not a transformers TrainingArguments field."
                              f"{_suggest(key, names - OWNED.keys())}")


def check_launch(config: Any) -> None:
    """What can only be checked on the machine that starts a run: installed trackers, real field names."""
    t = config.training
    check_trackers_installed(t.report_to)
    if t.trainer_args:
        check_trainer_args(t.trainer_args, trainer_argument_names())


@functools.cache
def trainer_argument_names() -> frozenset[str]:
    """The fields of the installed transformers' `TrainingArguments`, read from its source.

    Importing `TrainingArguments` imports torch (seconds); the class is a flat dataclass, so its
    annotated class attributes are its fields. Where the source cannot be read that way, the class
    is imported after all.
    """
    spec = importlib.util.find_spec("transformers")
    if spec is not None and spec.origin:
        source = Path(spec.origin).parent / "training_args.py"
        try:
            tree = ast.parse(source.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            tree = None
        for node in getattr(tree, "body", ()):
            if isinstance(node, ast.ClassDef) and node.name == "TrainingArguments":
                names = {item.target.id for item in node.body if isinstance(item, ast.AnnAssign)
                         and isinstance(item.target, ast.Name) and "ClassVar" not in ast.unparse(item.annotation)}
                if len(names) > 50 and "output_dir" in names:
                    return frozenset(names)
    import dataclasses

    from transformers import TrainingArguments

    return frozenset(f.name for f in dataclasses.fields(TrainingArguments))


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
