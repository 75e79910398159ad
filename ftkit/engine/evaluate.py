"""The Trainer's evaluation hooks: the task's reduction of logits on the device, and its compute_metrics.

What is scored and how it is reported belongs to the task (``ftkit.tasks``; shared helpers in
``ftkit.tasks.scoring``).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..tasks import get_task


def make_preprocess_logits(task: str) -> Callable[[Any, Any], Any]:
    """The Trainer's ``preprocess_logits_for_metrics``: the task's ``reduce_logits`` where the logits are (on
    the device), so evaluation gathers argmax ids (or classification's probabilities), not vocab-wide floats."""
    reduce_logits = get_task(task).reduce_logits

    def preprocess_logits_for_metrics(logits: Any, labels: Any) -> Any:
        return reduce_logits(logits[0] if isinstance(logits, tuple) else logits)

    return preprocess_logits_for_metrics


def make_compute_metrics(task: str, id2label: Mapping[int, str], mode: str | None = None) -> Callable[[Any], dict] | None:
    """The task's ``compute_metrics`` for the Trainer (None when its loss is the measure); keys are plain
    ("f1"), the Trainer adds "eval_"."""
    return get_task(task).compute_metrics(id2label, mode)
