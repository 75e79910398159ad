"""The Trainer's evaluation hooks: argmax on the device, and the task's compute_metrics.

What is scored and how it is reported belongs to the task (``ftkit.tasks``; shared helpers in
``ftkit.tasks.scoring``).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..tasks import get_task


def preprocess_logits_for_metrics(logits: Any, labels: Any) -> Any:
    """Argmax where the logits are (on the device), so evaluation gathers ints, not vocab-wide floats."""
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(dim=-1)


def make_compute_metrics(task: str, id2label: Mapping[int, str], mode: str | None = None) -> Callable[[Any], dict] | None:
    """The task's ``compute_metrics`` for the Trainer (None when its loss is the measure); keys are plain
    ("f1"), the Trainer adds "eval_"."""
    return get_task(task).compute_metrics(id2label, mode)
