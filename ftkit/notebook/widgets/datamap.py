"""DataMap: a run's training examples by how they were learnt, its likely label errors, and a cleaner child run.

A bokeh scatter (jupyter_bokeh, so a selection made in the browser reaches the kernel) of confidence
against variability, coloured by correctness: hovering shows an example, clicking opens it with its
gold and predicted labels (the error browser's rendering), lasso or box selects many. Below it the
likeliest label errors, worst first, filtered by label, and the actions: select the likeliest share,
relabel (a label per example), and retrain without the selection (`Run.retrain`).
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from ...rendering import ensure_bokehjs, escape, format_number

ALL = "all labels"
SHOWN_DETAILS = 10  # examples opened below the plot at once


class DataMap(widgets.VBox):
    """``DataMap.for_run(run)``; ``selected`` holds the chosen examples (their rows in the train split)."""

    def __init__(self, run: Any, frame: Any, page_size: int = 20, **kwargs: Any):
        from bokeh.models import ColumnDataSource
        from jupyter_bokeh import BokehModel

        self.run, self.page_size = run, page_size
        self.frame = frame.sort_values("example").reset_index(drop=True)
        self.relabels: dict[int, str] = {}
        self.child: Any = None
        self.source = ColumnDataSource(_columns(self.frame))
        self.plot = BokehModel(_figure(self.source))
        self.source.selected.on_change("indices", lambda attr, old, new: self._show_selection())
        labels = sorted({name for names in self.frame["labels"] for name in names})
        self.label = widgets.Dropdown(options=[ALL, *labels], value=ALL, description="label")
        self.share = widgets.BoundedFloatText(value=5.0, min=0.1, max=100.0, step=0.5, description="likeliest %",
                                              layout=widgets.Layout(width="180px"))
        self.select_likeliest = widgets.Button(description="Select", tooltip="select the likeliest label errors")
        # A corrected label makes sense where each example has one label that is one of the labels (classification).
        per_example = len(self.frame) > 0 and set(self.frame["gold"]) <= set(labels)
        self.relabel_as = widgets.Dropdown(options=["", *labels], value="", description="relabel as",
                                           layout=widgets.Layout(display=None if per_example else "none"))
        self.retrain_button = widgets.Button(description="Retrain without selected", icon="refresh",
                                             button_style="warning", disabled=True)
        self.details, self.table, self.status = widgets.HTML(), widgets.HTML(), widgets.HTML()
        self.label.observe(lambda _: self._show_table(), names="value")
        self.select_likeliest.on_click(lambda _: self.select(self.likeliest(self.share.value / 100)))
        self.relabel_as.observe(lambda change: self._relabel(change["new"]), names="value")
        self.retrain_button.on_click(lambda _: self.retrain())
        header = widgets.HTML(f"<b>{escape(run.name)}</b>: {len(self.frame)} training examples over "
                              f"{int(self.frame['epochs'].max()) if len(self.frame) else 0} passes. Click a point to "
                              "open it, lasso or box-select many.")
        actions = widgets.HBox([self.share, self.select_likeliest, self.relabel_as, self.retrain_button])
        super().__init__([header, self.plot, self.details, actions, self.status, self.label, self.table], **kwargs)
        self._show_selection()
        self._show_table()

    @classmethod
    def for_run(cls, run: Any, page_size: int = 20) -> "DataMap":
        """The data map of a `Run` (or a run id or name), from the dynamics it recorded so far."""
        from ... import runs

        run = runs.get(run)
        return cls(run, run.data_map(), page_size)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        ensure_bokehjs()
        return super()._repr_mimebundle_(**kwargs)

    # ----- selection ----------------------------------------------------------------------------------------
    @property
    def selected(self) -> list[int]:
        """The selected examples' rows in the train split, in order."""
        return sorted(int(self.frame["example"].iloc[i]) for i in self.source.selected.indices)

    def select(self, examples: Any) -> None:
        """Select these examples (rows in the train split), as a lasso in the plot would."""
        wanted = {int(e) for e in examples}
        self.source.selected.indices = [i for i, e in enumerate(self.frame["example"]) if int(e) in wanted]

    def likeliest(self, share: float) -> list[int]:
        """The ``share`` of examples (of the label filter's) with the lowest issue scores."""
        frame = self._filtered()
        return frame.nsmallest(max(1, round(share * len(frame))), "issue_score")["example"].tolist() if len(frame) else []

    def _relabel(self, label: str) -> None:
        if label:
            self.relabels.update({example: label for example in self.selected})
            self.relabel_as.value = ""
            self._show_selection()

    def _show_selection(self) -> None:
        chosen = self.frame[self.frame["example"].isin(self.selected)]
        excluded = len(set(self.selected) - set(self.relabels))
        self.retrain_button.disabled = not (excluded or self.relabels)
        self.retrain_button.description = (f"Retrain without {excluded}" if excluded else "Retrain") + \
            (f", {len(self.relabels)} relabelled" if self.relabels else "")
        shown = chosen.head(SHOWN_DETAILS)
        self.details.value = "".join(
            f"<div><b>#{row.example}</b> issue score {format_number(row.issue_score, 3)}, confidence "
            f"{format_number(row.confidence, 3)}, variability {format_number(row.variability, 3)}"
            f"{_relabelled(self.relabels.get(int(row.example)))}{row.html}</div>" for row in shown.itertuples()
        ) + (f"<div>… and {len(chosen) - len(shown)} more selected</div>" if len(chosen) > len(shown) else "")

    # ----- the label-issue table ------------------------------------------------------------------------------
    def _filtered(self) -> Any:
        if self.label.value == ALL:
            return self.frame
        return self.frame[self.frame["labels"].map(lambda names: self.label.value in names)]

    def _show_table(self) -> None:
        frame = self._filtered().sort_values(["issue_score", "example"], kind="stable").head(self.page_size)
        rows = "".join(f"<tr><td>{row.example}</td><td>{format_number(row.issue_score, 3)}</td>"
                       f"<td>{escape(row.gold)}</td><td>{escape(row.predicted)}</td>"
                       f"<td style='text-align:left'>{escape(_short(row.text, 120))}</td></tr>"
                       for row in frame.itertuples())
        self.table.value = (f"<div><b>Likeliest label errors</b> ({len(self._filtered())} examples, worst first)</div>"
                            "<table class='ftkit-label-issues' style='font-size:12px'><tr><th>#</th><th>issue score</th>"
                            f"<th>gold</th><th>predicted</th><th>text</th></tr>{rows}</table>")

    # ----- acting ---------------------------------------------------------------------------------------------
    def retrain(self, **overrides: Any) -> Any:
        """Start the child run without the selected examples (those relabelled stay, with their new label)."""
        exclude = [example for example in self.selected if example not in self.relabels]
        self.child = self.run.retrain(exclude=exclude, relabel=dict(self.relabels), **overrides)
        self.status.value = (f"Started <b>{escape(self.child.name)}</b> ({escape(self.child.id)}): "
                             f"{len(exclude)} examples left out, {len(self.relabels)} relabelled. Compare them with "
                             f"<code>ftkit.compare('{escape(self.run.id)}', '{escape(self.child.id)}')</code>.")
        return self.child


def _columns(frame: Any) -> dict[str, list]:
    from bokeh.palettes import RdYlGn11

    palette = list(reversed(RdYlGn11))  # red: never right, green: always right
    return {"variability": frame["variability"].tolist(), "confidence": frame["confidence"].tolist(),
            "correctness": frame["correctness"].tolist(), "example": frame["example"].tolist(),
            "text": [_short(text, 160) for text in frame["text"]], "gold": [str(g) for g in frame["gold"]],
            "predicted": ["" if p is None else str(p) for p in frame["predicted"]],
            "issue_score": frame["issue_score"].tolist(),
            "colour": [palette[min(10, int(c * 11))] for c in frame["correctness"]]}


def _figure(source: Any) -> Any:
    from bokeh.models import HoverTool
    from bokeh.plotting import figure

    plot = figure(width=640, height=420, x_axis_label="variability", y_axis_label="confidence",
                  tools="pan,wheel_zoom,box_select,lasso_select,tap,reset", active_drag="lasso_select",
                  title="Data map: each training example, coloured by correctness (red: never right)")
    plot.scatter("variability", "confidence", source=source, size=6, color="colour", alpha=0.7,
                 selection_color="black", nonselection_alpha=0.25)
    plot.add_tools(HoverTool(tooltips=[("#", "@example"), ("text", "@text"), ("gold", "@gold"),
                                       ("predicted", "@predicted"), ("issue score", "@issue_score{0.000}")]))
    return plot


def _short(text: Any, limit: int) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _relabelled(label: str | None) -> str:
    return "" if label is None else f", <b>relabelled {escape(label)}</b>"


__all__ = ["DataMap"]
