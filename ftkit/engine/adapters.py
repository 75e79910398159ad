"""What is trained (full / head / lora) and how trained checkpoints come back for inference.

A LoRA checkpoint holds only the adapter and the trained head (``modules_to_save``); reloading it
rebuilds the base model from ``base_model_name_or_path`` and restores both, so predictions match
the model that was trained. The label names travel in the checkpoint's ``config.json``.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, FtkitError
from ..tasks import all_tasks, get_task, task_for_architectures, task_for_peft_type
from .models import build_model, default_lora_targets, head_module_names, load_tokenizer, model_class, quiet_loading

# peft 0.21 still calls transformers' deprecated `is_gradient_checkpointing`; users can do nothing about it.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

    from ..config import AdapterConfig
    from ..tasks.base import Task

ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
MODEL_CONFIG_FILE = "config.json"
_logger = logging.getLogger("ftkit")


def apply_adapter(model: "PreTrainedModel", adapter: "AdapterConfig", task: str) -> Any:
    """Make the parts ``adapter.kind`` names trainable; for lora, wrap the model with peft."""
    if adapter.kind == "full":
        model.requires_grad_(True)
        return model
    task_ = get_task(task)
    if adapter.kind == "head" and not task_.new_head:
        raise ConfigError(f"adapter 'head' trains only a new task head, and {task} has none (its LM head is "
                          "pretrained, tied to the embeddings in small models): use adapter.kind lora or full")
    heads = head_module_names(model) if task_.new_head else []
    if not heads and task_.new_head:
        raise FtkitError(f"cannot find the task head of {type(model).__name__}; use adapter full")
    if adapter.kind == "head":
        model.requires_grad_(False)
        for name in heads:
            model.get_submodule(name).requires_grad_(True)
        return model
    if adapter.kind == "lora":
        return _apply_lora(model, adapter, task, heads)
    raise ConfigError(f"unknown adapter '{adapter.kind}': use full, head or lora")


def _apply_lora(model: "PreTrainedModel", adapter: "AdapterConfig", task: str, heads: list[str]) -> Any:
    from peft import get_peft_model

    config = lora_config(model, adapter, task, heads)
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise ConfigError(f"LoRA target modules {config.target_modules} do not fit {type(model).__name__} ({exc}). "
                          f"Its linear layers are named: {', '.join(_linear_layer_names(model)[:12])}") from None


def lora_config(model: "PreTrainedModel", adapter: "AdapterConfig", task: "str | Task",
                heads: list[str] | None = None) -> Any:
    """peft's LoraConfig for ``adapter`` on ``model``: the task's (else the architecture's) target modules."""
    from peft import LoraConfig

    model_type = model.config.model_type
    task_ = get_task(task)
    targets = adapter.target_modules or task_.lora_target_modules or default_lora_targets(model_type)
    if not targets:
        raise ConfigError(f"no default LoRA target modules for model type '{model_type}': set adapter.target_modules "
                          f"to some of its linear layers ({', '.join(_linear_layer_names(model)[:12])})")
    return LoraConfig(task_type=task_.peft_task_type, r=adapter.r, lora_alpha=adapter.alpha,
                      lora_dropout=adapter.dropout,
                      target_modules=targets if isinstance(targets, str) else list(targets),  # "all-linear"
                      modules_to_save=list(heads or []) or None)


def is_peft_model(model: Any) -> bool:
    """Whether peft already wraps ``model`` (a LoRA model)."""
    from peft import PeftModel

    return isinstance(model, PeftModel)


def _linear_layer_names(model: Any) -> list[str]:
    import torch

    names = {name.split(".")[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    return sorted(names)


def parameter_counts(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = total = 0
    for parameter in model.parameters():
        total += parameter.numel()
        if parameter.requires_grad:
            trainable += parameter.numel()
    return trainable, total


def describe_parameters(model: Any) -> str:
    """E.g. "trainable 148,992 / 22,862,208 (0.65%)"."""
    trainable, total = parameter_counts(model)
    return f"trainable {trainable:,} / {total:,} ({100 * trainable / max(total, 1):.2f}%)"


# ----- checkpoints -------------------------------------------------------------------------------


def adapter_only(checkpoint_dir: str | Path) -> bool:
    """True for a LoRA checkpoint (adapter weights and head only, base model elsewhere)."""
    return (Path(checkpoint_dir) / ADAPTER_CONFIG_FILE).is_file()


def save_checkpoint(model: Any, tokenizer: Any, out_dir: str | Path) -> Path:
    """Save weights (the adapter and head for LoRA), the config with the label names, and the tokenizer.

    ``PeftModel.save_pretrained`` (and so the Trainer) writes no ``config.json`` for a LoRA model;
    this writes the base config too, so the label names survive a reload.
    """
    out_dir = Path(out_dir)
    with quiet_loading():
        model.save_pretrained(out_dir)
    save_label_config(model, out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def save_label_config(model: Any, folder: str | Path) -> None:
    """Add the base config (the label names) to a LoRA checkpoint's folder; other checkpoints have theirs.

    peft writes no ``config.json``: without it a LoRA checkpoint reloads with generic LABEL_<i>
    names, and NER entities cannot be read from its predictions. The Trainer's checkpoints get it
    inside their temporary folder (FtkitTrainer._save_checkpoint), so it is there before the
    rename that makes the folder a checkpoint.
    """
    if adapter_only(folder):
        getattr(model, "module", model).config.save_pretrained(folder)  # unwrap DistributedDataParallel


def load_for_inference(checkpoint_dir: str | Path) -> tuple[Any, "PreTrainedTokenizerFast"]:
    """A trained model (in eval mode) and its tokenizer from a full or LoRA checkpoint folder."""
    folder = Path(checkpoint_dir).expanduser()
    if not folder.is_dir():
        raise FtkitError(f"checkpoint folder {folder} does not exist")
    if adapter_only(folder):
        model, task = _load_lora(folder)
    elif (folder / MODEL_CONFIG_FILE).is_file():
        model, task = _load_full(folder)
    else:
        raise FtkitError(f"{folder} is not a checkpoint: it has neither {MODEL_CONFIG_FILE} nor {ADAPTER_CONFIG_FILE}")
    # The checkpoint's own tokenizer: for sft it carries the chat template the model was trained with.
    tokenizer = load_tokenizer(str(folder) if _has_tokenizer(folder) else model.config.name_or_path, task)
    model.eval()
    return model, tokenizer


def _load_full(folder: Path) -> tuple["PreTrainedModel", str]:
    task = task_of(json.loads((folder / MODEL_CONFIG_FILE).read_text()).get("architectures") or [], folder)
    with quiet_loading():
        try:
            model, info = model_class(task).from_pretrained(str(folder), output_loading_info=True)
        except (OSError, ValueError) as exc:
            raise FtkitError(f"could not load checkpoint {folder}: {str(exc).splitlines()[0][:300]}") from None
    if info["missing_keys"]:
        raise FtkitError(f"checkpoint {folder} lacks weights for {', '.join(sorted(info['missing_keys'])[:5])}: "
                         "it is incomplete or was saved from a different architecture")
    return model, task


def _load_lora(folder: Path) -> tuple[Any, str]:
    from peft import PeftModel

    adapter_config = json.loads((folder / ADAPTER_CONFIG_FILE).read_text())
    task = task_for_peft_type(adapter_config.get("task_type"))
    base = adapter_config.get("base_model_name_or_path")
    if task is None or not base:
        types = "/".join(t.peft_task_type for t in all_tasks())
        raise FtkitError(f"{folder / ADAPTER_CONFIG_FILE} lacks a task_type ({types}) or base_model_name_or_path")
    if Path(base).is_absolute() and not Path(base).exists():
        raise FtkitError(f"the base model {base} of LoRA checkpoint {folder} no longer exists: put it back, or "
                         "merge checkpoints while it exists (ftkit.adapters.merge_checkpoint) to make them standalone")
    model = build_model(base, task.name, _checkpoint_labels(folder) if task.label_column is not None else [])
    return PeftModel.from_pretrained(model, str(folder)), task.name


def _checkpoint_labels(folder: Path) -> list[str]:
    """Label names from the checkpoint's config.json, else as many generic names as the saved head has outputs."""
    config_file = folder / MODEL_CONFIG_FILE
    if config_file.is_file():
        id2label = json.loads(config_file.read_text()).get("id2label") or {}
        if id2label:
            return [id2label[key] for key in sorted(id2label, key=int)]
    from safetensors import safe_open

    with safe_open(str(folder / ADAPTER_WEIGHTS_FILE), "pt") as weights:
        outputs = [weights.get_slice(key).get_shape()[0] for key in weights.keys()
                   if key.endswith(("classifier.weight", "score.weight", "out_proj.weight"))]
    if not outputs:
        raise FtkitError(f"{folder} holds no trained classification head, so its labels are unknown; "
                         "it was not saved with modules_to_save")
    _logger.warning("%s has no config.json with label names; using LABEL_0..LABEL_%d", folder, outputs[-1] - 1)
    return [f"LABEL_{i}" for i in range(outputs[-1])]


def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file()


def task_of(architectures: list[str], where: Any = "model") -> str:
    """The name of the task whose model class a config's ``architectures`` entry names."""
    task = task_for_architectures(architectures)
    if task is None:
        kinds = " or ".join(f"*{t.architecture_suffix}" for t in all_tasks())
        raise FtkitError(f"{where} is not a {kinds} model (architectures: {architectures or 'none'})")
    return task.name


def merge_checkpoint(checkpoint_dir: str | Path, out_dir: str | Path) -> Path:
    """A standalone model folder (weights, config, tokenizer) that transformers loads directly.

    LoRA weights are merged into the base model; a full checkpoint is re-saved without its
    optimizer and trainer state.
    """
    model, tokenizer = load_for_inference(checkpoint_dir)
    if adapter_only(checkpoint_dir):
        model = model.merge_and_unload()
    out_dir = Path(out_dir)
    with quiet_loading():
        model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
