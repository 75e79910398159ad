"""DataPicker: choose a file, folder or hub id and see what is in it before training on it.

Statistics and the preview come from `ftkit.data_stats` and `ftkit.data_preview` (entities highlighted
in a colour per type, or texts with their labels); a `DataError` shows inline with its file and line
instead of a traceback.
"""

from __future__ import annotations

from typing import Any, Callable

import ipywidgets as widgets

from ...tasks import DEFAULT_TASK, TASK_NAMES, get_task
from ...rendering import clipped, escape, format_number
from ...errors import DataError, FtkitError

_BAR_COLOUR = "#60a5fa"


class DataPicker(widgets.VBox):
    """``DataPicker("train.txt", task="ner")``: ``.dataset`` and ``.stats`` after a successful load.

    For sft the preview is each chat as the model sees it (trained tokens highlighted) and the
    statistics count tokens, with the tokenizer of ``model`` (default: the task's default model).
    """

    def __init__(self, value: str = "", task: str = DEFAULT_TASK, preview_size: int = 5, model: str | None = None,
                 **kwargs: Any):
        self.model = model
        self.path = widgets.Text(value=value, description="data", continuous_update=False,
                                 placeholder="a file, a saved datasets folder, or a hub id",
                                 tooltip="Training data: a CoNLL/JSONL/CSV/TSV file, a saved `datasets` folder or a hub id",
                                 layout=widgets.Layout(width="560px"))
        self.task = widgets.Dropdown(options=TASK_NAMES, value=task, description="task", layout=widgets.Layout(width="240px"))
        self.load_button = widgets.Button(description="Load", icon="folder-open")
        self.preview_size = preview_size
        self.error = widgets.HTML(layout=widgets.Layout(display="none"))
        self.stats_view = widgets.HTML()
        self.distribution = widgets.HTML()
        self.preview = widgets.HTML()
        self.dataset: Any = None
        self.stats: Any = None
        self._load_callbacks: list[Callable[["DataPicker"], None]] = []
        self.load_button.on_click(lambda _: self.load())
        self.path.observe(lambda _: self.load(), names="value")
        self.task.observe(lambda _: self.load(), names="value")
        super().__init__([widgets.HBox([self.path, self.task, self.load_button]), self.error, self.stats_view,
                          self.distribution, self.preview], **kwargs)
        if value:
            self.load()

    @property
    def value(self) -> str:
        return self.path.value.strip()

    def on_load(self, callback: Callable[["DataPicker"], None]) -> None:
        """Call ``callback(picker)`` after each successful load."""
        self._load_callbacks.append(callback)

    def load(self) -> bool:
        """Read the data and show statistics, label distribution and preview; False on a data error."""
        from ... import data_preview, data_stats, load_data

        source, task = self.value, self.task.value
        if not source:
            return False
        try:
            tokens = {"model": self.model} if self.model and get_task(task).stats_use_tokenizer else {}
            stats = data_stats(source, task, **tokens)
            dataset = load_data(source, task=task)
            split = "train" if "train" in dataset else next(iter(dataset))
            preview = data_preview(dataset[split], n=self.preview_size, task=task, **tokens)
        except DataError as exc:
            where = f"{exc.path}, line {exc.line}" if exc.path and exc.line else (exc.path or source)
            self._show_error(f"Cannot read {where}: {exc.reason}")
            return False
        except FtkitError as exc:
            self._show_error(str(exc))
            return False
        self.error.layout.display = "none"
        self.dataset, self.stats = dataset, stats
        self.stats_view.value = stats._repr_html_()
        self.distribution.value = label_distribution_html(stats.to_dict(), task)
        self.preview.value = f"<b>first {self.preview_size} of {split}</b>{preview}"
        for callback in self._load_callbacks:
            callback(self)
        return True

    def _show_error(self, message: str) -> None:
        self.dataset = self.stats = None
        for view in (self.stats_view, self.distribution, self.preview):
            view.value = ""
        self.error.value = f'<pre style="color:#dc2626;white-space:pre-wrap">{escape(message)}</pre>'
        self.error.layout.display = None


def label_distribution_html(stats: dict[str, Any], task: str) -> str:
    """Horizontal bars of label counts (entities per type for NER) in the first split, titled in the task's words;
    a long label (an sft answer) is cut, whole in its tooltip."""
    splits = stats.get("splits") or {}
    if not splits:
        return ""
    name = "train" if "train" in splits else next(iter(splits))
    counts = splits[name].get("label_counts") or {}
    if not counts:
        return ""
    largest = max(counts.values()) or 1
    total = sum(counts.values())
    rows = "".join(
        f'<tr><td style="padding-right:8px">{clipped(label)}</td>'
        f'<td><div style="background:{_BAR_COLOUR};height:12px;width:{240 * count / largest:.0f}px"></div></td>'
        f'<td style="padding-left:8px;font-size:12px">{count:,} ({format_number(100 * count / total, 1)}%)</td></tr>'
        for label, count in sorted(counts.items(), key=lambda item: -item[1])
    )
    what = get_task(task).distribution_title
    return f'<div><b>{escape(name)}: {what}</b><table style="border-collapse:collapse">{rows}</table></div>'
