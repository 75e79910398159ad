"""ErrorBrowser: where a run's model goes wrong, read from its saved predictions (no model is loaded).

The report is `ftkit.runs.error_report`'s; how one example is drawn and which (kind, type) filters
find it are the task's (``Task.error_example_html``, ``Task.error_facets``), so NER sentences show
their gold and predicted entities highlighted as in the data preview.
"""

from __future__ import annotations

from typing import Any, Mapping

import ipywidgets as widgets

from ...rendering import escape, format_number, html_table
from ...tasks import get_task

ALL = "all"


class ErrorBrowser(widgets.VBox):
    """``ErrorBrowser.for_run(run)``: the summary, the per-label table and the confusion matrix, then the examples
    worst first, narrowed by the ``kind`` and ``type`` dropdowns (``type`` hidden where the task has none)."""

    def __init__(self, report: Mapping[str, Any], page_size: int = 20, **kwargs: Any):
        self.report, self.page_size, self.shown = report, page_size, page_size
        self.task = get_task(report["task"])
        self._facets = [self.task.error_facets(example) for example in report["examples"]]
        kinds = sorted({kind for facets in self._facets for kind, _ in facets})
        types = sorted({label for facets in self._facets for _, label in facets if label is not None})
        self.kind = widgets.Dropdown(options=[ALL, *kinds], value=ALL, description="kind")
        self.type = widgets.Dropdown(options=[ALL, *types], value=ALL, description="type",
                                     layout=widgets.Layout(display=None if types else "none"))
        self.more = widgets.Button(description="Show more", icon="chevron-down")
        self.count = widgets.HTML()
        self.examples = widgets.HTML()
        self.kind.observe(lambda _: self._refresh(reset=True), names="value")
        self.type.observe(lambda _: self._refresh(reset=True), names="value")
        self.more.on_click(lambda _: self._refresh(reset=False))
        super().__init__([widgets.HTML(overview_html(report)), widgets.HBox([self.kind, self.type, self.count]),
                          self.examples, self.more], **kwargs)
        self._refresh(reset=True)

    @classmethod
    def for_run(cls, run: Any, split: str = "test", page_size: int = 20) -> "ErrorBrowser":
        """The browser of a `Run` (or a run id or name) over every example of ``split``."""
        from ... import runs

        return cls(runs.get(run).error_report(split, limit=None), page_size)

    @property
    def matching(self) -> list[dict[str, Any]]:
        """The report's examples the dropdowns select, worst first."""
        kind, type_ = self.kind.value, self.type.value
        return [example for example, facets in zip(self.report["examples"], self._facets)
                if (kind == ALL and type_ == ALL)
                or any(kind in (ALL, k) and type_ in (ALL, t) for k, t in facets)]

    def _refresh(self, reset: bool) -> None:
        self.shown = self.page_size if reset else self.shown + self.page_size
        matching = self.matching
        labels = (self.report.get("confusion") or {}).get("labels", [])
        shown = matching[:self.shown]
        pages = "".join(self.task.error_example_html(example, labels) for example in shown)
        self.examples.value = pages or "<i>no example matches these filters</i>"
        self.count.value = f"showing {len(shown)} of {len(matching)} {escape(self.task.example_noun)}"
        self.more.layout.display = None if len(shown) < len(matching) else "none"


def overview_html(report: Mapping[str, Any]) -> str:
    """The summary counts, then the per-label table and the confusion matrix (sft has no matrix, and its
    table is its examples, which the browser lists)."""
    summary = " · ".join(f"{escape(key.replace('_', ' '))} <b>{format_number(value)}</b>"
                         for key, value in report["summary"].items())
    where = f"{escape(report['task'])} run {escape(report['run'])}, {escape(report['split'])} split"
    parts = [f"<div>{where}: {summary}</div>"]
    confusion = report.get("confusion")
    if confusion:
        table = report["table"]
        rows = [[format_number(cell, 3) if isinstance(cell, float) else cell for cell in row] for row in table["rows"]]
        parts.append(f"<div><b>{escape(table['title'])}</b>{html_table(table['columns'], rows)}</div>")
        matrix = [[label, *counts] for label, counts in zip(confusion["labels"], confusion["matrix"])]
        parts.append(f"<div><b>{escape(confusion['title'])}</b>{html_table(['', *confusion['labels']], matrix)}</div>")
    return "".join(parts)
