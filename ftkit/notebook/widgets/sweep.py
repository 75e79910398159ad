"""SweepView: a sweep's trials as a table and its metric against each searched setting, live while it runs.

Drawn from `ftkit.sweeps.Sweep.summary` (the data ``ftkit sweep``, the CLI's JSON and the panel read):
a header with the sweep's state (``searching 7/12 trials, 2 at a time, median pruner``) and its best
run; a table of its entries (each run, and each trial that failed before it had one), a checkbox to
pick runs, the pruned ones greyed, the best starred; one bokeh scatter per searched key (jupyter_bokeh,
as the data map and the monitor draw), on a log axis where the search space is log and a categorical
one for choices, the pruned points crossed out. "Compare selected" shows `ftkit.compare` of the
picked runs below; "Stop sweep" stops it while it is at work. While the sweep is active a daemon
thread reads the summary again every couple of seconds and updates the table and plots in place (the
sources' data replaced: a sweep is tens of points); it ends with the sweep or when the view is closed.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Mapping

import ipywidgets as widgets

from ...rendering import ensure_bokehjs, escape, format_number, html_table
from ...runstore.events import ACTIVE_STATUSES
from ...sweeps import ACTIVE_STATES, Sweep, get, summary_table
from ..display import status_badge_html
from .bokeh_plot import BokehPlot
from .monitor import monitor_mode

PLOTS_PER_ROW = 3
POINT_STYLES = {  # status -> (colour, marker, size)
    "pruned": ("#9ca3af", "x", 9),
    "best": ("#16a34a", "star", 14),
    "other": ("#2563eb", "circle", 8),
}
BEST_BACKGROUND = "#ecfdf5"
CELL = "padding:2px 8px;white-space:nowrap"


class SweepView(widgets.VBox):
    """``SweepView(sweep)``: header, stop button, trial table with checkboxes, compare button, plots, compare output.

    :attr:`selected` holds the picked runs' ids (:meth:`select` picks them from code), :attr:`figures` the
    scatter of each key. ``follow=False`` builds it without the background thread; :meth:`refresh` reads
    the sweep again (what the tests do).
    """

    def __init__(self, sweep: Sweep, follow: bool = True, poll_interval: float = 2.0, **kwargs: Any):
        from bokeh.layouts import column

        self.sweep = sweep
        self.poll_interval = poll_interval
        self.comparison: Any = None  # the DataFrame of the last compare
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        spec = sweep.spec
        self._spaces = {space["key"]: space for space in spec["spaces"]} if spec else {}
        self.summary: dict[str, Any] = sweep.summary()

        self.header = widgets.HTML()
        self.stop_button = widgets.Button(description="Stop sweep", icon="stop", button_style="warning",
                                          tooltip="Ask no more trials; the running ones save a checkpoint and stop",
                                          layout=widgets.Layout(width="auto"))
        self.stop_button.on_click(lambda _: self.request_stop())
        self.table = widgets.GridBox(layout=widgets.Layout(overflow_x="auto", max_width="100%", align_items="center"))
        self.table.add_class("ftkit-sweep-table")
        self._rows: dict[str, _Row] = {}
        self._header_cells: list[widgets.HTML] = []
        self.compare_button = widgets.Button(description="Compare selected", icon="columns", disabled=True,
                                             tooltip="Compare the runs ticked in the table (two or more)",
                                             layout=widgets.Layout(width="auto"))
        self.compare_button.on_click(lambda _: self.compare_selected())
        self.message = widgets.HTML()
        self.figures: dict[str, Any] = {}
        self.sources: dict[str, Any] = {}
        self._layout = column()
        self.plot_note = widgets.HTML()
        self.compare_output = widgets.Output()
        self._render(self.summary)
        self.plot = BokehPlot(self._layout)
        super().__init__([widgets.HBox([self.header, self.stop_button],
                                       layout=widgets.Layout(align_items="center", gap="8px", flex_flow="row wrap")),
                          self.table, widgets.HBox([self.compare_button, self.message],
                                                   layout=widgets.Layout(align_items="center", gap="8px")),
                          self.plot_note, self.plot, self.compare_output], **kwargs)
        self.add_class("ftkit-sweep")
        if follow and self.active:
            self._thread = threading.Thread(target=self._follow, name=f"ftkit-sweep-{sweep.name}", daemon=True)
            self._thread.start()

    # ----- following ---------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """A search's driver at work, or a run queued or running."""
        return _active(self.summary)

    def refresh(self) -> bool:
        """Read the sweep again and update the view in place; True while it is still active."""
        summary = self.sweep.summary()
        with self._lock:
            self.summary = summary
            self._render(summary)
        return _active(summary)

    def _follow(self) -> None:
        while not self._closed.wait(self.poll_interval):
            try:
                if not self.refresh():
                    return
            except Exception as exc:  # noqa: BLE001 - the store vanished: the view stays as it was
                self.message.value = f'<span style="color:#dc2626">stopped following this sweep: {escape(exc)}</span>'
                return

    def close(self) -> None:
        """Stop following and close the child widgets (and the plot's comm)."""
        self._closed.set()
        for child in (self.header, self.stop_button, self.table, self.compare_button, self.message, self.plot_note,
                      self.plot, self.compare_output, *self._header_cells,
                      *(widget for row in self._rows.values() for widget in row.widgets)):
            child.close()
        super().close()

    # ----- rendering ---------------------------------------------------------------------------------
    def _render(self, summary: Mapping[str, Any]) -> None:
        self.header.value = header_html(summary)
        active = _active(summary)
        stoppable = active and summary["state"] != "stopping"
        self._stopping = self._stopping and active  # a stopped search resumed later can be stopped again
        self.stop_button.layout.display = None if active else "none"
        self.stop_button.disabled = self._stopping or not stoppable
        self.stop_button.description = "Stopping…" if self.stop_button.disabled else "Stop sweep"
        self._render_table(summary)
        self._render_plots(summary)
        self._selection_changed()

    def _render_table(self, summary: Mapping[str, Any]) -> None:
        headers = ["", "trial", "name", "status", *summary["keys"], summary["metric"] or "metric"]
        if [cell.value for cell in self._header_cells] != [_cell(h, bold=True) for h in headers]:
            for cell in self._header_cells:
                cell.close()
            self._header_cells = [widgets.HTML(_cell(h, bold=True)) for h in headers]
        best = summary["best"]
        keys, shown = summary["keys"], []
        for entry in summary["runs"]:
            key = _entry_key(entry)
            row = self._rows.get(key)
            if row is None:
                row = self._rows[key] = _Row(entry, self._selection_changed)
            row.update(entry, keys, best is not None and _entry_key(best) == key)
            shown.append(row)
        for key in set(self._rows) - {_entry_key(entry) for entry in summary["runs"]}:
            for widget in self._rows.pop(key).widgets:
                widget.close()
        children = (*self._header_cells, *(widget for row in shown for widget in row.widgets))
        if tuple(self.table.children) != children:
            self.table.children = children
        self.table.layout.grid_template_columns = " ".join(["auto"] * len(headers))

    def _render_plots(self, summary: Mapping[str, Any]) -> None:
        from bokeh.layouts import row

        keys = summary["keys"]
        if list(self.figures) != list(keys):
            self.figures, self.sources = {}, {}
            for key in keys:
                self.figures[key], self.sources[key] = _figure(key, self._spaces.get(key), summary)
            self._layout.children = [row(*(self.figures[k] for k in keys[i:i + PLOTS_PER_ROW]))
                                     for i in range(0, len(keys), PLOTS_PER_ROW)]
        for key in keys:
            columns = _points(key, summary, self.figures[key])
            if columns != dict(self.sources[key].data):
                self.sources[key].data = columns
        scored = any(entry["value"] is not None for entry in summary["runs"])
        note = ("the sweep varies no setting yet: nothing to plot" if not keys
                else "" if scored else "no run has a validation score yet: the plots fill as runs are evaluated")
        self.plot_note.value = f'<span style="color:#6b7280;font-size:12px">{escape(note)}</span>' if note else ""

    # ----- selecting and comparing -------------------------------------------------------------------
    @property
    def selected(self) -> list[str]:
        """The ids of the runs ticked in the table, in its order."""
        return [row.id for row in list(self._rows.values()) if row.id and row.checkbox.value]

    def select(self, ids: Any) -> None:
        """Tick these runs (ids) and untick the rest, as clicking their boxes would."""
        wanted = set(ids)
        for row in list(self._rows.values()):
            row.checkbox.value = bool(row.id) and row.id in wanted

    def _selection_changed(self, _: Any = None) -> None:
        count = len(self.selected)
        self.compare_button.disabled = count < 2
        self.compare_button.description = f"Compare selected ({count})" if count else "Compare selected"

    def compare_selected(self) -> Any:
        """`ftkit.compare` of the ticked runs, shown below the plots (their curves too, in a notebook);
        the DataFrame, or None with fewer than two picked."""
        from IPython import get_ipython
        from IPython.display import display

        from ... import compare
        from ...errors import FtkitError

        ids = self.selected
        if len(ids) < 2:
            self.message.value = "tick two or more runs to compare them"
            return None
        self.message.value = ""
        in_kernel = getattr(get_ipython(), "kernel", None) is not None
        if in_kernel:
            self.compare_output.clear_output()
        else:
            self.compare_output.outputs = ()
        frame = None
        with self.compare_output:  # in a notebook the curves `compare` displays land in the output
            try:
                frame = compare(*ids, runs_dir=str(self.sweep.store.root))
            except FtkitError as exc:  # a run deleted meanwhile...
                self.message.value = f'<span style="color:#dc2626">{escape(exc)}</span>'
            else:
                if in_kernel:
                    display(frame)
        if frame is not None and not in_kernel:  # nothing captures displays (a script, the tests): written in
            self.compare_output.outputs = ({"output_type": "display_data", "metadata": {},
                                            "data": {"text/plain": frame.to_string(), "text/html": frame.to_html()}},)
        self.comparison = frame
        return frame

    # ----- control -----------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """What the stop button does: `Sweep.stop` (no more trials; the running ones checkpoint and stop)."""
        self.sweep.stop()
        with self._lock:
            self._stopping = True
            self.stop_button.disabled = True
            self.stop_button.description = "Stopping…"

    # ----- display -----------------------------------------------------------------------------------
    def summary_html(self) -> str:
        """The header and the table as static HTML (exports, front ends without widgets)."""
        headers, rows = summary_table(self.summary)
        return f"<div>{header_html(self.summary)}{html_table(headers, rows)}</div>"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        from bokeh.embed import components

        ensure_bokehjs()  # jupyter_bokeh's view draws with the page's BokehJS
        self.plot.send_state("render_bundle")  # a view made now starts from the points drawn so far
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is not None:
            bundle["text/html"] = self.summary_html() + ("".join(components(self._layout)) if self.figures else "")
        return bundle


class _Row:
    """One entry's widgets in the table: its checkbox and a cell per column."""

    def __init__(self, entry: Mapping[str, Any], on_tick: Any):
        self.id = entry["id"]
        self.checkbox = widgets.Checkbox(value=False, indent=False, disabled=not entry["id"],
                                         layout=widgets.Layout(width="28px"))
        self.checkbox.observe(on_tick, names="value")
        self.cells: list[widgets.HTML] = []

    @property
    def widgets(self) -> list[Any]:
        return [self.checkbox, *self.cells]

    def update(self, entry: Mapping[str, Any], keys: list[str], best: bool) -> None:
        status = entry["status"]
        badge = status_badge_html(status) if status != "pruned" else (
            '<span class="ftkit-status ftkit-status-pruned" style="border:1px solid #9ca3af;color:#6b7280;'
            'border-radius:9px;padding:0 7px;font-size:11px;font-style:italic">✂ pruned</span>')
        name = entry["name"] or "(no run)"
        values = [escape(entry["trial"]) if entry["trial"] is not None else "-",
                  ("★ " if best else "") + escape(name), badge,
                  *(escape(_setting_text(entry["settings"].get(key))) for key in keys),
                  escape(format_number(entry["value"]))]
        style = CELL + (";font-weight:600;background:" + BEST_BACKGROUND if best else "") + (
            ";color:#9ca3af;text-decoration:line-through" if status == "pruned" else "")
        texts = [f'<div style="{style}"{_title(entry, i)}>{value}</div>' for i, value in enumerate(values)]
        while len(self.cells) < len(texts):
            self.cells.append(widgets.HTML())
        for cell in self.cells[len(texts):]:
            cell.close()
        del self.cells[len(texts):]
        for cell, text in zip(self.cells, texts):
            cell.value = text
        for widget in self.widgets:
            for kind, on in (("best", best), ("pruned", status == "pruned")):
                if on and f"ftkit-sweep-{kind}" not in widget._dom_classes:
                    widget.add_class(f"ftkit-sweep-{kind}")
                elif not on and f"ftkit-sweep-{kind}" in widget._dom_classes:
                    widget.remove_class(f"ftkit-sweep-{kind}")


def show_sweep(sweep: Sweep | str, runs_dir: Any = None) -> SweepView:
    """Display a `Sweep` (or a sweep's name) as its live view; in a terminal, print its table instead."""
    from IPython.display import HTML, display

    sweep = sweep if isinstance(sweep, Sweep) else get(sweep, runs_dir)
    mode = monitor_mode()
    view = SweepView(sweep, follow=mode == "widget")
    if mode == "widget":
        display(view)
    elif mode == "html":
        display(HTML(view.summary_html()))
    else:
        print(summary_text(view.summary))
    return view


# ----- text ----------------------------------------------------------------------------------------------


def state_text(summary: Mapping[str, Any]) -> str:
    """``searching 7/12 trials, 2 at a time, median pruner``; a grid's ``grid of 4 runs``; then the statuses."""
    entries = summary["runs"]
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    tally = ", ".join(f"{count} {status}" for status, count in counts.items())
    if summary["kind"] != "search":
        return f"grid of {len(entries)} runs" + (f": {tally}" if tally else "")
    pruner = "no pruner" if summary.get("pruner") == "none" else f"{summary.get('pruner')} pruner"
    text = (f"{summary['state']} {len(entries)}/{summary.get('trials')} trials, "
            f"{summary.get('parallel')} at a time, {pruner}")
    return text + (f" ({tally})" if tally else "")


def best_text(summary: Mapping[str, Any]) -> str:
    best = summary["best"]
    if not best:
        return "no run has a validation score yet"
    return f"best: {best['name'] or best['id']} ({summary['metric']} {format_number(best['value'])})"


def header_html(summary: Mapping[str, Any]) -> str:
    state = f"<b>sweep {escape(summary['sweep'])}</b> · {escape(state_text(summary))} · "
    best = summary["best"]
    verdict = (f"best: <b>★ {escape(best['name'] or best['id'])}</b> ({escape(summary['metric'])} "
               f"{format_number(best['value'])})") if best else escape(best_text(summary))
    notes = []
    if summary.get("error"):
        notes.append(f'<div style="color:#dc2626">the search failed: {escape(summary["error"])}</div>')
    if summary["state"] == "interrupted":
        notes.append(f"<div>its driver died before the search ended: <code>ftkit sweep --resume "
                     f"{escape(summary['sweep'])}</code> continues it</div>")
    return f'<div class="ftkit-sweep-header">{state}{verdict}{"".join(notes)}</div>'


def summary_text(summary: Mapping[str, Any]) -> str:
    headers, rows = summary_table(summary)
    cells = [headers, *([_setting_text(cell) for cell in row] for row in rows)]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
    return "\n".join([f"sweep {summary['sweep']}: {state_text(summary)}; {best_text(summary)}", *lines])


# ----- plots ---------------------------------------------------------------------------------------------


def _figure(key: str, space: Mapping[str, Any] | None, summary: Mapping[str, Any]) -> tuple[Any, Any]:
    """One key's scatter of the metric: a log axis for a log space, categorical for choices (or a grid's
    values that are not all numbers), a plain number axis otherwise."""
    from bokeh.models import ColumnDataSource, FactorRange, HoverTool
    from bokeh.plotting import figure

    metric = summary["metric"] or "metric"
    values = [entry["settings"].get(key) for entry in summary["runs"]]
    if space is not None:
        categorical = space.get("choices") is not None
        log = bool(space.get("log"))
        factors = [_setting_text(choice) for choice in space["choices"]] if categorical else []
    else:  # a grid: its values
        numbers = [value for value in values if _is_number(value)]
        categorical = len(numbers) < len([value for value in values if value is not None])
        log = not categorical and bool(numbers) and min(numbers) > 0 and max(numbers) / min(numbers) >= 20
        factors = list(dict.fromkeys(_setting_text(value) for value in values)) if categorical else []
    options: dict[str, Any] = {"x_range": FactorRange(*factors)} if categorical else (
        {"x_axis_type": "log"} if log else {})
    plot = figure(width=340, height=260, title=key, x_axis_label=key, y_axis_label=metric,
                  tools="pan,wheel_zoom,box_zoom,reset,save", toolbar_location="above", name=f"ftkit-sweep-{key}",
                  **options)
    source = ColumnDataSource(_empty_columns())
    plot.scatter("x", "value", source=source, color="colour", marker="marker", size="size", alpha=0.85)
    plot.add_tools(HoverTool(tooltips=[("run", "@name"), ("trial", "@trial"), (key, "@label"),
                                       (metric, "@value{0.0000}"), ("status", "@status")]))
    return plot, source


def _points(key: str, summary: Mapping[str, Any], plot: Any) -> dict[str, list]:
    """The entries with a score and a value for ``key`` the axis can place, styled by status."""
    from bokeh.models import FactorRange

    categorical = isinstance(plot.x_range, FactorRange)
    log = plot.x_scale.__class__.__name__ == "LogScale"
    best = summary["best"]
    columns = _empty_columns()
    for entry in summary["runs"]:
        setting, value = entry["settings"].get(key), entry["value"]
        if value is None or setting is None:
            continue
        label = _setting_text(setting)
        if categorical:
            if label not in plot.x_range.factors:
                plot.x_range.factors = [*plot.x_range.factors, label]
            x: Any = label
        elif not _is_number(setting) or (log and setting <= 0):
            continue
        else:
            x = float(setting)
        kind = ("pruned" if entry["status"] == "pruned"
                else "best" if best is not None and _entry_key(best) == _entry_key(entry) else "other")
        colour, marker, size = POINT_STYLES[kind]
        for column, cell in (("x", x), ("value", value), ("label", label), ("name", entry["name"] or "(no run)"),
                             ("trial", "-" if entry["trial"] is None else str(entry["trial"])),
                             ("status", entry["status"]), ("colour", colour), ("marker", marker), ("size", size)):
            columns[column].append(cell)
    return columns


def _empty_columns() -> dict[str, list]:
    return {column: [] for column in ("x", "value", "label", "name", "trial", "status", "colour", "marker", "size")}


# ----- small helpers -------------------------------------------------------------------------------------


def _active(summary: Mapping[str, Any]) -> bool:
    return summary["state"] in ACTIVE_STATES or any(entry["status"] in ACTIVE_STATUSES for entry in summary["runs"])


def _entry_key(entry: Mapping[str, Any]) -> str:
    return entry["id"] or f"trial:{entry['trial']}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _setting_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]"
    return "" if value is None else str(value)


def _cell(text: Any, bold: bool = False) -> str:
    return f'<div style="{CELL}{";font-weight:600" if bold else ""}">{escape(text)}</div>'


def _title(entry: Mapping[str, Any], column: int) -> str:
    """The error of a failed entry on hover over its status."""
    return f' title="{escape(entry["error"])}"' if column == 2 and entry.get("error") else ""


__all__ = ["SweepView", "show_sweep"]
