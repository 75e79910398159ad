"""CompareCurves: the training loss of several runs overlaid, beside their main validation metric.

Drawn from `ftkit.comparison.comparison`, the data the side panel's compare view plots, and in its
order: ``primary`` (decided there once) puts the training loss and the metric that picks each run's
best checkpoint first (``validation_f1`` for NER, ``validation_loss`` for SFT). Each point is drawn where
it was logged (``log`` and ``eval`` events), one colour per run in both figures, the legend beside the
plots so it never covers a curve (click a run there to hide it). The rest of the curves are behind the
"more curves" toggle, as in the panel: it offers every other curve a run reports (a per-entity score,
``rewards/margins`` of a DPO run, the learning rate...) for the second figure, and turned off it shows
the main metric again. While a compared run is queued or running, a daemon thread reads the comparison
again every few seconds and streams only the new points (``ColumnDataSource.stream``), as the run
monitor does; a curve a run starts to report then joins the choices.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping, Sequence

import ipywidgets as widgets

from ...comparison import LOSS_CURVE, comparison
from ...runstore.events import ACTIVE_STATUSES
from ...rendering import ensure_bokehjs
from ...runs import Run
from .bokeh_plot import BokehPlot
from .monitor import monitor_mode

OPTIMIZER_CURVES = ("grad_norm", "learning_rate")  # offered last, as the panel draws them


class CompareCurves(widgets.VBox):
    """Two figures side by side, sharing their step axis: training loss, and the main validation metric
    (:attr:`main_metric`) or, with :attr:`more` on, the curve picked in :attr:`curve_picker`
    (:attr:`metric` names the one shown).

    ``follow=False`` builds it without the background thread; :meth:`refresh` streams what the runs
    have logged since (what the tests do).
    """

    def __init__(self, runs: Sequence[Run], data: Mapping[str, Any] | None = None, follow: bool = True,
                 poll_interval: float = 2.0, **kwargs: Any):
        from bokeh.layouts import row

        self._closed = threading.Event()
        self.runs = list(runs)
        data = data or comparison(self.runs)
        self.main_metric = self.metric = data["primary"][1]  # the first run's, on validation
        self.poll_interval = poll_interval
        self._lock = threading.RLock()
        self.loss_figure, self.loss_sources = _figure(data, LOSS_CURVE, "training loss")
        self.metric_figure, self.metric_sources = _figure(data, self.metric, _title(self.metric))
        self.metric_figure.x_range = self.loss_figure.x_range
        self._curves = data["curves"]
        self._choosing = False  # True while the choices change: the picker jumps to its first one meanwhile
        self.curve_picker = widgets.Dropdown(description="right plot", options=_choices(data, self.metric),
                                             value=self.metric, style={"description_width": "initial"},
                                             layout=widgets.Layout(display="none"))
        self.curve_picker.observe(self._show_curve, "value")
        self.more = widgets.ToggleButton(description="more curves", tooltip="Pick another curve for the right plot")
        self.more.observe(self._toggle_more, "value")
        self.plot = BokehPlot(row(self.loss_figure, self.metric_figure))
        super().__init__([widgets.HBox([self.more, self.curve_picker]), self.plot], **kwargs)
        self.active = _active(data)
        if follow and self.active:
            threading.Thread(target=self._follow, name="ftkit-compare", daemon=True).start()

    def refresh(self) -> bool:
        """Stream the points logged since the last refresh; True while a compared run is still active."""
        data = comparison(self.runs)
        with self._lock:
            self._curves = data["curves"]
            for curve, sources in ((LOSS_CURVE, self.loss_sources), (self.metric, self.metric_sources)):
                for run_id, source in sources.items():
                    _extend(source, data["curves"].get(curve, {}).get(run_id, []))
            choices = _choices(data, self.metric)
            if list(self.curve_picker.options) != choices:
                self._choosing = True
                try:
                    self.curve_picker.options = choices
                    self.curve_picker.value = self.metric
                finally:
                    self._choosing = False
        self.active = _active(data)
        return self.active

    def _toggle_more(self, change: Mapping[str, Any]) -> None:
        """Show the picker; hidden again, the right plot goes back to the main metric."""
        self.curve_picker.layout.display = None if change["new"] else "none"
        if not change["new"]:
            self.curve_picker.value = self.main_metric

    def _show_curve(self, change: Mapping[str, Any]) -> None:
        """Redraw the second figure with the picked curve, from the points last read."""
        with self._lock:
            if self._choosing:
                return
            self.metric = change["new"]
            self.metric_figure.title.text = _title(self.metric)
            for run_id, source in self.metric_sources.items():
                source.data = _columns(self._curves.get(self.metric, {}).get(run_id, []))

    def _follow(self) -> None:
        while not self._closed.wait(self.poll_interval):
            try:
                if not self.refresh():
                    return
            except Exception:  # noqa: BLE001 - a run deleted while shown: the curves stay as they are
                return

    def close(self) -> None:
        self._closed.set()
        self.plot.close()
        super().close()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        from bokeh.embed import components

        ensure_bokehjs()  # jupyter_bokeh's view draws with the page's BokehJS
        self.plot.send_state("render_bundle")  # a view made now starts from the points streamed so far
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is not None:  # front ends without widgets (nbconvert, FTKIT_MONITOR=html) draw this picture
            bundle["text/html"] = "".join(components(self.plot._model))
        return bundle


def show_comparison(runs: Sequence[Run], data: Mapping[str, Any]) -> CompareCurves | None:
    """Display the overlaid curves where widgets render (following active runs); nothing in a terminal."""
    from IPython.display import display

    mode = monitor_mode()
    if mode == "text":
        return None
    curves = CompareCurves(runs, data, follow=mode == "widget")
    display(curves)
    return curves


def _figure(data: Mapping[str, Any], curve: str, title: str) -> tuple[Any, dict[str, Any]]:
    from bokeh.models import ColumnDataSource, Legend, LegendItem
    from bokeh.palettes import Category10_10, Category20_20
    from bokeh.plotting import figure

    fig = figure(height=300, width=470, title=title, x_axis_label="step", tools="pan,wheel_zoom,box_zoom,reset,save",
                 toolbar_location="above")
    palette = Category10_10 if len(data["runs"]) <= 10 else Category20_20
    names = [run["name"] for run in data["runs"]]
    sources, items = {}, []
    for i, run in enumerate(data["runs"]):
        source = ColumnDataSource(_columns(data["curves"].get(curve, {}).get(run["id"], [])))
        colour = palette[i % len(palette)]
        renderers = [fig.line("step", "value", source=source, color=colour, line_width=2)]
        if curve != LOSS_CURVE:  # evaluations are few: mark each one
            renderers.append(fig.scatter("step", "value", source=source, color=colour, size=5))
        label = run["name"] if names.count(run["name"]) == 1 else f"{run['name']} ({run['id']})"
        items.append(LegendItem(label=label, renderers=renderers))
        sources[run["id"]] = source
    fig.add_layout(Legend(items=items, click_policy="hide", label_text_font_size="11px"), "right")
    return fig, sources


def _extend(source: Any, points: Sequence[Sequence[float]]) -> None:
    """Stream the points past those ``source`` holds; a curve a resumed run rewrote is replaced whole."""
    known = source.data["step"]
    if len(points) < len(known) or (known and points[len(known) - 1][0] != known[-1]):
        source.data = _columns(points)
    elif len(points) > len(known):
        source.stream(_columns(points[len(known):]))


def _columns(points: Sequence[Sequence[float]]) -> dict[str, list[float]]:
    return {"step": [p[0] for p in points], "value": [p[1] for p in points]}


def _title(curve: str) -> str:
    """``validation_f1`` -> "validation f1", ``learning_rate`` -> "learning rate"."""
    return curve.replace("_", " ", 1)


def _choices(data: Mapping[str, Any], shown: str) -> list[str]:
    """Every curve but the loss (the first figure's), with the main metric and the one ``shown`` even
    before their first points: the primary ones first, then the evaluations in the metrics table's
    order, any other by name, the optimizer's last (the panel's order)."""
    primary, evaluations = data["primary"], [metric["name"] for metric in data["metrics"]]

    def rank(name: str) -> tuple[int, int, str]:
        if name in primary:
            return 0, primary.index(name), name
        if name in evaluations:
            return 1, evaluations.index(name), name
        if name in OPTIMIZER_CURVES:
            return 3, OPTIMIZER_CURVES.index(name), name
        return 2, 0, name

    return sorted({*data["curves"], primary[1], shown} - {LOSS_CURVE}, key=rank)


def _active(data: Mapping[str, Any]) -> bool:
    return any(run["status"] in ACTIVE_STATUSES for run in data["runs"])
