"""A few examples as HTML: entities highlighted per type (NER) or texts with their label chips.

How a row is drawn is the task's (``Task.preview_html``); this module finds the rows and holds
the colours and styles every task's preview shares.
"""

from __future__ import annotations

from typing import Any

from . import DEFAULT_TASK, get_task
from .base import Task

PALETTE = ("#ffd6a5", "#caffbf", "#9bf6ff", "#bdb2ff", "#ffc6ff", "#fdffb6", "#a0c4ff", "#ffadad")
CHIP_STYLE = "font-size:0.7em;font-weight:bold;padding:0 4px;margin-left:3px;border-radius:3px;background:rgba(0,0,0,0.12)"
MARK_STYLE = "padding:1px 3px;border-radius:4px;background:{colour}"


def colour_of(label: str, labels: list[str]) -> str:
    """The palette colour of ``label`` among the sorted ``labels`` (stable for one label set)."""
    return PALETTE[sorted(labels).index(label) % len(PALETTE)] if label in labels else PALETTE[0]


def preview_html(dataset: Any, n: int = 5, task: str | Task = DEFAULT_TASK, *, tokenizer: Any = None,
                 max_length: int | None = None, train_on: str | None = None, **column_options: Any) -> str:
    """The first ``n`` examples of a Dataset (or the train split of a DatasetDict) as HTML.

    Canonical rows are shown as they are; anything else goes through ``load_source`` first, with
    ``column_options`` (``prompt_template=``, ``chosen_column=``, ... as for `ftkit.data_stats`): of a file,
    only its first ``n`` rows are read, however big it is.

    Text is HTML-escaped; each entity type (or class label) gets one colour and a chip with its name.
    A task that shows rows as the model sees them (SFT: the rendered chat with the trained tokens
    highlighted) needs its ``tokenizer`` (``ftkit.data_preview`` loads that of ``model=``).
    """
    task = get_task(task)
    canonical = set(task.columns)
    columns = getattr(dataset, "column_names", None)
    if isinstance(columns, dict):  # a DatasetDict: {split: [columns]}
        columns = next(iter(columns.values()), [])
    if not canonical <= set(columns or ()):  # raw rows, a path, a DataFrame ...
        from .loading import load_source

        dataset = load_source(dataset, task, convert_tags=False, head=n, **column_options)
    if isinstance(dataset, dict):  # a DatasetDict: preview the training data
        dataset = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
    rows = dataset.select(range(min(n, len(dataset))))
    if task.stats_use_tokenizer:
        from .stats import needs_tokenizer, token_options

        body = task.token_preview_html(rows, needs_tokenizer(task, tokenizer), token_options(max_length, train_on))
    else:
        body = task.preview_html(rows)
    return f'<div class="ftkit-preview" style="line-height:1.9">{body}</div>'
