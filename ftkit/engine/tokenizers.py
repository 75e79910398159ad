"""The tokenizer a task's data statistics and preview count with (SFT: token lengths, the rendered chat).

The tasks layer never loads a model; ``ftkit.data_stats`` / ``ftkit.data_preview`` (and the notebook's
DataPicker and ``%ftkit data``) load the tokenizer here and pass it in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..tasks.base import Task

_TOKENIZERS: dict[tuple[str, str], Any] = {}


def task_tokenizer(task: "str | Task", model: str | None = None) -> Any:
    """The tokenizer (with its chat template) of ``model``, or of the task's default model; loaded once.

    The engine's model resolution, so that `model: default-causal` means the same model in a preview as in training.
    """
    from ..tasks import get_task
    from .models import load_tokenizer, resolve_model_source

    task = get_task(task)
    source = resolve_model_source(model or "default", task.name)
    key = (source, task.name)
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = load_tokenizer(source, task.name)
    return _TOKENIZERS[key]


def tokenizer_for(task: "str | Task", model: str | None = None, tokenizer: Any = None) -> Any:
    """``tokenizer`` as given, else that of ``model`` when ``task`` counts in tokens, else None (no model loaded)."""
    from ..tasks import get_task

    if tokenizer is not None or not get_task(task).stats_use_tokenizer:
        return tokenizer
    return task_tokenizer(task, model)
