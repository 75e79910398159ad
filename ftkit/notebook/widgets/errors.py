"""ErrorBrowser: where a run's model goes wrong, read from its saved predictions (no model is loaded).

The report is `ftkit.runs.error_report`'s; how one example is drawn and which (kind, type) filters
find it are the task's (``Task.error_example_html``, ``Task.error_facets``), so NER sentences show
their gold and predicted entities highlighted as in the data preview. It opens on the examples with
errors, as the panel's errors view does, and counts them in the panel's words ("showing 2 of 5
sentences with errors": those the filters keep, of all with errors); kinds read as people say them
("wrong type"), stored as the report has them.
"""

from __future__ import annotations

from typing import Any, Mapping

import ipywidgets as widgets

from ...rendering import escape, format_number, html_table, words
from ...tasks import get_task

ALL = "all"
ERRORS = "errors"  # the kind filter's default: every kind but the right ones
RIGHT_KINDS = ("correct", "match")  # report kinds that are no error: ner's correct entities, sft's matching answers


class ErrorBrowser(widgets.VBox):
    """``ErrorBrowser.for_run(run)``: the summary, the per-label table and the confusion matrix, then the examples
    with errors worst first, narrowed by the ``kind`` and ``type`` dropdowns (``type`` hidden where the task has
    none); the kind "all <examples>" lists the right ones too."""

    def __init__(self, report: Mapping[str, Any], page_size: int = 20, **kwargs: Any):
        self.report, self.page_size, self.shown = report, page_size, page_size
        self.task = get_task(report["task"])
        self._facets = [self.task.error_facets(example) for example in report["examples"]]
        kinds = sorted({kind for facets in self._facets for kind, _ in facets})
        types = sorted({label for facets in self._facets for _, label in facets if label is not None})
        self.kind = widgets.Dropdown(options=[("every error", ERRORS), (f"all {self.task.example_noun}", ALL),
                                              *((words(kind), kind) for kind in kinds)], value=ERRORS, description="kind")
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

        def chosen(facet_kind: str) -> bool:
            return kind in (ALL, facet_kind) or (kind == ERRORS and facet_kind not in RIGHT_KINDS)

        return [example for example, facets in zip(self.report["examples"], self._facets)
                if (kind == ALL and type_ == ALL) or any(chosen(k) and type_ in (ALL, t) for k, t in facets)]

    def _refresh(self, reset: bool) -> None:
        self.shown = self.page_size if reset else self.shown + self.page_size
        matching = self.matching
        labels = (self.report.get("confusion") or {}).get("labels", [])
        shown = matching[:self.shown]
        pages = "".join(self.task.error_example_html(example, labels) for example in shown)
        self.examples.value = pages or "<i>no example matches these filters</i>"
        # Of what: the examples with errors while an error is looked for (the panel's count), else all of them.
        if self.kind.value in (ALL, *RIGHT_KINDS):
            pool, which = len(self._facets), ""
        else:
            pool, which = sum(any(k not in RIGHT_KINDS for k, _ in facets) for facets in self._facets), " with errors"
        self.count.value = f"showing {len(shown)} of {pool} {escape(self.task.example_noun)}{which}"
        self.more.layout.display = None if len(shown) < len(matching) else "none"


def overview_html(report: Mapping[str, Any]) -> str:
    """The summary counts, then the per-label table and the confusion matrix (sft has no matrix, and its
    table is its examples, which the browser lists)."""
    summary = " · ".join(f"{escape(words(key))} <b>{format_number(value)}</b>"
                         for key, value in report["summary"].items())
    where = f"{escape(report['task'])} run {escape(report['run'])}, {escape(report['split'])} split"
    parts = [f"<div>{where}: {summary}</div>"]
    confusion = report.get("confusion")
    if confusion:
        table = report["table"]
        rows = [[format_number(cell, 3) if isinstance(cell, float) else cell for cell in row] for row in table["rows"]]
        parts.append(f"<div><b>{escape(table['title'])}</b>{html_table(map(words, table['columns']), rows)}</div>")
        matrix = [[label, *counts] for label, counts in zip(confusion["labels"], confusion["matrix"])]
        parts.append(f"<div><b>{escape(confusion['title'])}</b>{html_table(['', *confusion['labels']], matrix)}</div>")
    return "".join(parts)
