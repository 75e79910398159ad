"""RunMonitor: a live view of one run, fed by the run's event stream.

The monitor starts from the run's events folded so far (its summary and the lines after it,
`ftkit.runstore.events.read_state`), then follows ``events.jsonl`` from a daemon thread, so other
cells keep running while the worker trains and a monitor made after a kernel restart shows the
whole history at once, however long the run. The events are folded by `ftkit.runstore.events.RunState`, the same fold the store's
index and the CLI use; the curves are the values log events carry at their steps, whatever their
names. All widget and plot changes go through :meth:`RunMonitor.apply_events` under a lock: the
follower thread is the only writer of the plot data, comm messages leave through ipykernel's
thread-safe IOPub channel, and a curve with new points gets its columns whole (thinned past 2,000
points), which every view of the plot applies the same however often it hears it; the figure is
never re-rendered. A curve beyond the loss and optimizer plots gets
its line, and its group its figure, when its first point comes: the added models cross as one
document patch.

Without a widget front end (a plain terminal, or ``FTKIT_MONITOR=html`` for exports) a run shows
as a static summary instead; see :func:`show_run`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Any, Iterable

import ipywidgets as widgets
from bokeh.core.properties import value
from bokeh.layouts import column
from bokeh.models import BasicTickFormatter, ColumnDataSource, DataRange1d, Legend, LegendItem, LinearAxis, Range1d
from bokeh.plotting import figure

from ...comparison import thinned
from ...config import Config
from ...runstore.events import CURVES, FINAL_STATUSES, phase_text, shown_status
from ...runstore.layout import LOG_FILE, SELECTION_SPLIT, higher_is_better
from ...rendering import ensure_bokehjs, escape
from .answers import answers_html
from .bokeh_plot import BokehPlot
from ..display import (checkpoints_text, eval_table_html, outcome_text, progress_text, run_summary_html,
                       run_summary_text, status_badge_html)
from ...runs import Run, get

BAR_STYLES = {"queued": "", "running": "info", "completed": "success", "failed": "danger", "stopped": "warning"}
MONITOR_MODES = ("widget", "html", "text")
TOOLS = "pan,wheel_zoom,box_zoom,reset,save"
# As wide as the output (the legends stand beside the frames, so the frames shrink, not the legends).
SIZE = {"sizing_mode": "stretch_width", "min_width": 420}
# The lines of a group's figure, in the order its curves came; a validation curve is dashed in its training colour.
GROUP_COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#64748b")
# Validation scores of generated answers (shares of the examples): the "answers" figure, on a 0-1 scale.
ANSWER_SCORES = ("exact_match", "label_accuracy", "rouge_l")


class RunMonitor(widgets.VBox):
    """Status badge, progress, live curves, evaluation table, latest generated answers, stop button (a
    result line once the run ends), errors.

    The curves are what the run logged, at the steps it logged them: training loss with the validation
    loss and metric above, learning rate and gradient norm below, then a figure per group of any other
    curve (``rewards/chosen`` and ``rewards/margins`` in "rewards", each with its validation curve
    dashed; a name without "/" is a group of its own; exact match and the other validation scores of
    generated answers in "answers"). Until the first point a line says why there is none.

    ``follow=False`` builds the monitor without the background thread; call :meth:`poll` to
    apply whatever the run has written since the last call (what the tests do).
    """

    def __init__(self, run: Run | str, follow: bool = True, poll_interval: float = 0.5, **kwargs: Any):
        self.run = get(run)  # a Run keeps its own store; an id or name is looked up
        self.poll_interval = poll_interval
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._state, self._offset = self.run.store.read_state(self.run.id)  # a long run's summary, then what is new
        self._last_liveness_check = 0.0
        self._display_handle: Any = None
        config = _config_of(self.run)
        self._metric_name = config.best_metric if config else "f1"
        self._logging_steps = config.training.logging_steps if config else None

        self.title = widgets.HTML(f"<b>{escape(self.run.name)}</b> <code>{escape(self.run.id)}</code>")
        self.status_badge = widgets.HTML(status_badge_html(self._state.status))
        self.stop_button = widgets.Button(description="Stop", icon="stop", button_style="warning",
                                          tooltip="Save a checkpoint and stop the run",
                                          layout=widgets.Layout(width="auto"))
        self.stop_button.on_click(lambda _: self.request_stop())
        self.outcome = widgets.HTML(layout=widgets.Layout(display="none"))
        self.outcome.add_class("ftkit-outcome")
        self.progress_bar = widgets.IntProgress(min=0, max=1, value=0, layout=widgets.Layout(width="320px"))
        self.progress_label = widgets.HTML(progress_text({}))
        self.figure, self.optimizer_figure, self.curve_sources, self.eval_source = self._build_figures()
        self.group_figures: dict[str, Any] = {}  # "rewards" -> its figure, made at the group's first point
        self._group_members: dict[str, list[str]] = {}  # the curves of each group (split left off): their colours
        self._figures = column(self.figure, self.optimizer_figure, sizing_mode="stretch_width")
        self.plot = BokehPlot(self._figures, layout=widgets.Layout(display="none"))
        self.plot_note = widgets.HTML()
        self.plot_note.add_class("ftkit-plot-note")
        self.eval_table = widgets.HTML(layout=widgets.Layout(max_width="100%"))
        self.answers = widgets.HTML(layout=widgets.Layout(max_width="100%"))
        self.error_box = widgets.HTML(layout=widgets.Layout(display="none"))
        super().__init__(
            [widgets.HBox([self.title, self.status_badge, self.stop_button, self.outcome],
                          layout=widgets.Layout(align_items="center", gap="8px", flex_flow="row wrap")),
             widgets.HBox([self.progress_bar, self.progress_label], layout=widgets.Layout(align_items="center", gap="8px")),
             self.plot_note, self.plot, self.eval_table, self.answers, self.error_box],
            **kwargs,
        )
        self.add_class("ftkit-monitor")
        self._draw_fold()
        self.poll()
        if follow and not self.finished:
            self._thread = threading.Thread(target=self._follow, name=f"ftkit-monitor-{self.run.id}", daemon=True)
            self._thread.start()

    # ----- the plots ---------------------------------------------------------------------------
    def _build_figures(self) -> tuple[Any, Any, dict[str, Any], Any]:
        curve_sources = {name: ColumnDataSource({"step": [], "value": []}, name=f"ftkit-{name}") for name in CURVES}
        eval_source = ColumnDataSource({"step": [], "metric": [], "eval_loss": []})
        losses = figure(height=240, x_axis_label="step", y_axis_label="loss", tools=TOOLS, toolbar_location="above",
                        name="ftkit-losses", **SIZE)
        train = losses.line("step", "value", source=curve_sources["loss"], color="#2563eb", line_width=2)
        train_points = losses.scatter("step", "value", source=curve_sources["loss"], color="#2563eb", size=4)
        valid = losses.line("step", "eval_loss", source=eval_source, color="#9333ea", line_dash="dashed", line_width=2)
        valid_points = losses.scatter("step", "eval_loss", source=eval_source, color="#9333ea", size=5)
        losses.y_range.renderers = [train, valid]  # the loss axis scales to losses only
        # The ranked metric when it is a score, on a 0-1 axis of its own; shown once the run's evaluations
        # name it (`_show_metric`): a loss-like one (an SFT run's loss) is the validation loss line already.
        losses.extra_y_ranges = {"metric": Range1d(0, 1.02)}
        self.metric_axis = LinearAxis(y_range_name="metric", visible=False)
        losses.add_layout(self.metric_axis, "right")
        self.metric_item = LegendItem(visible=False, renderers=[
            losses.line("step", "metric", source=eval_source, color="#16a34a", line_width=2, y_range_name="metric"),
            losses.scatter("step", "metric", source=eval_source, color="#16a34a", size=6, y_range_name="metric")])
        # Beside the frame, never over the data (added after the metric axis, so it stands right of it).
        legend = _legend([("train loss", [train, train_points]), ("validation loss", [valid, valid_points])])
        legend.items.append(self.metric_item)
        losses.add_layout(legend, "right")
        self._show_metric()

        optimizer = figure(height=150, x_range=losses.x_range, x_axis_label="step", y_axis_label="learning rate",
                           tools=TOOLS, toolbar_location=None, name="ftkit-optimizer", **SIZE)
        optimizer.yaxis.formatter = BasicTickFormatter(precision=1)  # 2.0e-5, not 2.000e-5
        rate = optimizer.line("step", "value", source=curve_sources["learning_rate"], color="#ea580c", line_width=2)
        norm = optimizer.line("step", "value", source=curve_sources["grad_norm"], color="#64748b", line_width=1.5,
                              y_range_name="grad_norm")
        optimizer.extra_y_ranges = {"grad_norm": DataRange1d(renderers=[norm])}
        optimizer.y_range.renderers = [rate]
        optimizer.add_layout(LinearAxis(y_range_name="grad_norm", axis_label="gradient norm"), "right")
        optimizer.add_layout(_legend([("learning rate", [rate]), ("gradient norm", [norm])]), "right")
        return losses, optimizer, curve_sources, eval_source

    def _show_metric(self) -> None:
        """The metric line and axis for a score the run ranks by, labelled with its name; none for a loss."""
        score, label = higher_is_better(self._metric_name), f"validation {self._metric_name}"
        self.metric_axis.update(visible=score, axis_label=label)
        self.metric_item.update(visible=score, label=value(label))
        for renderer in self.metric_item.renderers:
            renderer.visible = score

    def _new_lines(self, names: Iterable[str]) -> list[str]:
        """The curves among ``names`` (and their validation partners) that want a line of their own and
        have none: every training curve beyond the loss and optimizer plots, and a validation curve of
        the same value as one (``validation_entropy``), of a group (``validation_rewards/chosen``) or of
        answers (``validation_exact_match``, unless the run ranks by it). Other scores stay in the table."""
        curves, evaluated, prefix = self._state.curves, set(self._state.logged.metric_names), f"{SELECTION_SPLIT}_"
        drawn = {*self.curve_sources, *self._eval_curves()}
        lines = []
        for name in names:
            if name not in evaluated:
                lines += [name, prefix + name] if curves.get(prefix + name) else [name]  # an evaluation came first
            elif name.startswith(prefix):
                metric = name.removeprefix(prefix)
                if "/" in metric or metric in ANSWER_SCORES or (curves.get(metric) and metric not in evaluated):
                    lines.append(name)
        return [name for name in dict.fromkeys(lines) if name not in drawn]

    def _add_line(self, name: str) -> None:
        """Draw ``name`` whole from the fold in its group's figure, made now if it is the group's first."""
        validation, metric = self._metric_of(name)
        group, _, label = ("answers", "", metric) if metric in ANSWER_SCORES else metric.partition("/")
        plot = self.group_figures.get(group)
        if plot is None:  # shown once this batch's lines are in (`_apply_events`): one patch to the browser
            scale = {"y_range": Range1d(0, 1.02)} if group == "answers" else {}  # shares: the whole scale
            plot = self.group_figures[group] = figure(
                height=150, x_range=self.figure.x_range, x_axis_label="step", y_axis_label=group, tools=TOOLS,
                toolbar_location=None, name=f"ftkit-{group}", **scale, **SIZE)
            plot.add_layout(_legend([]), "right")
        members = self._group_members.setdefault(group, [])
        if metric not in members:
            members.append(metric)
        colour = GROUP_COLOURS[members.index(metric) % len(GROUP_COLOURS)]
        source = self.curve_sources[name] = ColumnDataSource(self._columns(name), name=f"ftkit-{name}")
        renderers = [plot.line("step", "value", source=source, color=colour, line_width=2,
                               line_dash="dashed" if validation else "solid")]
        if validation:  # evaluations are few: mark each one
            renderers.append(plot.scatter("step", "value", source=source, color=colour, size=5))
        label = label or metric
        legend = plot.select_one(Legend)
        item = LegendItem(label=f"validation {label}" if validation else label, renderers=renderers, name=name)

        def place(entry: LegendItem) -> tuple[int, bool]:  # the curves in the order they came, each validation below
            below, of = self._metric_of(entry.name)
            return members.index(of), below

        legend.items = sorted([*legend.items, item], key=place)
        plot.height = max(150, 60 + 22 * len(legend.items))  # tall enough for its legend: the rest would be cut off

    def _metric_of(self, name: str) -> tuple[bool, str]:
        """Whether a curve is a validation curve, and the value it is of (``validation_rewards/chosen``:
        ``rewards/chosen``)."""
        validation = name in self._state.logged.metric_names
        return validation, name.removeprefix(f"{SELECTION_SPLIT}_") if validation else name

    def _columns(self, name: str) -> dict[str, list]:
        """A curve's columns drawn whole from the fold (a week-long run's thinned to its shape, `thinned`)."""
        points = thinned(self._state.curves.get(name) or [])
        return {"step": [step for step, _ in points], "value": [value for _, value in points]}

    def _plot_note_text(self) -> str:
        """Why the plots are still empty: what the run is doing, and when the first point comes."""
        state, every = self._state, self._logging_steps
        first = f"the first training loss is logged at step {every}" if every else "no training loss is logged yet"
        if state.finished:
            return (f"No curves: the run {state.status} before it logged a training loss"
                    + (f" (logged every {every} steps)." if every else "."))
        doing = phase_text(state.phase_info)
        if doing:
            return f"No curves yet ({doing}); {first}."
        if state.status == "queued":
            return f"No curves yet: the run has not started; {first}."
        return f"No curves yet: training has started; {first}."

    # ----- following ---------------------------------------------------------------------------
    @property
    def status(self) -> str:
        return self._state.status

    @property
    def finished(self) -> bool:
        return self._state.finished

    def poll(self) -> bool:
        """Apply the events written since the last poll; True once the run has ended."""
        with self._lock:
            events, self._offset = self.run.events(self._offset)
            self.apply_events(events)
            if not self.finished and time.monotonic() - self._last_liveness_check > 2:
                self._last_liveness_check = time.monotonic()
                status, error = self.run.store.status(self.run.id)
                if status in FINAL_STATUSES:
                    events, self._offset = self.run.events(self._offset)
                    self.apply_events(events)
                if status in FINAL_STATUSES and not self.finished:
                    # Its processes are gone without a final event: shown as failed here; the
                    # supervisor (or a resume) records it, a reader never writes.
                    self.apply_events([{"type": "status", "status": status, "error": error}])
            if not self.finished and self.run.store.stop_requested(self.run.id):
                self._show_stopping()  # asked from the panel, the CLI or another monitor
            return self.finished

    def _follow(self) -> None:
        while not self._closed.is_set():
            try:
                if self.poll():
                    self._refresh_static_fallback()
                    return
            except Exception as exc:  # the run folder was deleted, the disk vanished...
                self._show_error(f"stopped following this run: {exc}")
                return
            self._closed.wait(self.poll_interval)

    def apply_events(self, events: Iterable[dict[str, Any]]) -> None:
        """Fold events into the monitor's state, then update each widget once."""
        with self._lock:
            self._apply_events(events)

    def _apply_events(self, events: Iterable[dict[str, Any]]) -> None:
        changed: dict[str, None] = {}  # the curves with new points (or rewound by a resumed attempt), in order
        evaluated = False
        for event in events:
            update = self._state.apply(event)
            changed.update(dict.fromkeys([*update.curve_points, *update.rewound_curves]))
            if update.evaluation is not None:
                evaluated = True
                self._metric_name = update.evaluation.get("best_metric_name") or self._metric_name
        self._draw(list(changed), evaluated)

    def _draw_fold(self) -> None:
        """Draw what the fold already holds (read from the run's summary): every curve."""
        if self._state.evaluations:
            self._metric_name = self._state.evaluations[-1].get("best_metric_name") or self._metric_name
        self._draw([name for name, points in self._state.curves.items() if points], bool(self._state.evaluations))

    def _draw(self, changed: list[str], evaluated: bool) -> None:
        """Draw the ``changed`` curves whole from the fold (a new line, and its group's figure, when it
        has none). Whole columns, never streamed increments: a plot shown twice (the output refreshed,
        a page reloaded) hears each message once per view, and a stream would add its points twice."""
        added = self._new_lines(changed)
        for name in added:
            self._add_line(name)
        shown = [plot for plot in self.group_figures.values() if plot not in self._figures.children]
        if shown:
            self._figures.children.extend(shown)
        for name in changed:
            if name not in added and name in self.curve_sources:
                self.curve_sources[name].data = self._columns(name)
        if set(changed) & set(self._eval_curves()):
            self.eval_source.data = self._eval_columns()
        if evaluated:
            self._show_metric()
            self.eval_table.value = eval_table_html(self._state.evaluations)
            self.answers.value = answers_html(self._state.answered)
        self._render_status()

    def _eval_curves(self) -> tuple[str, str]:
        """The fold's curves the validation plot draws: the ranked metric and the loss."""
        return f"{SELECTION_SPLIT}_{self._metric_name}", f"{SELECTION_SPLIT}_loss"

    def _eval_columns(self) -> dict[str, list]:
        """The validation plot's columns drawn whole from the fold."""
        metric, loss = (dict(self._state.curves.get(name, [])) for name in self._eval_curves())
        steps = sorted(set(metric) | set(loss))
        return {"step": steps, "metric": [metric.get(step, math.nan) for step in steps],
                "eval_loss": [loss.get(step, math.nan) for step in steps]}

    def _render_status(self) -> None:
        state = self._state
        status, progress, phase = state.status, state.progress, state.phase_info
        self.status_badge.value = status_badge_html(shown_status(status, phase))
        total, done = progress.get("total_steps") or 0, progress.get("step") or 0
        if phase is not None and phase.get("total"):  # before the first step: the phase's own count (tokenising n/N)
            total, done = phase["total"], phase.get("done") or 0
        with self.progress_bar.hold_sync():
            self.progress_bar.max = max(total, done, 1)
            self.progress_bar.value = done
            self.progress_bar.bar_style = BAR_STYLES.get(status, "")
        last_checkpoint = state.last_checkpoint
        suffix = f" · {checkpoints_text(last_checkpoint, state.best_checkpoint)}" if last_checkpoint is not None else ""
        self.progress_label.value = escape(progress_text(progress, phase) + suffix)
        plotted = bool(self.curve_sources["loss"].data["step"] or self.eval_source.data["step"] or self.group_figures)
        # a trainer that logs no learning rate nor gradient norm gets no empty optimizer plot
        self.optimizer_figure.visible = any(self.curve_sources[name].data["step"]
                                            for name in ("learning_rate", "grad_norm"))
        self.plot.layout.display = None if plotted else "none"
        note = "" if plotted else escape(self._plot_note_text())
        self.plot_note.value = f'<span style="color:#6b7280;font-size:12px">{note}</span>' if note else ""
        if self.finished:
            self._show_outcome()
        if status == "failed":
            self._show_error(state.error or "the run failed", self.run.log_tail(30))

    def _show_outcome(self) -> None:
        """The result line in place of the Stop button: nothing is left to stop."""
        state = self._state
        losses = state.curves["loss"]
        progress = {**state.progress, "loss": losses[-1][1]} if losses else state.progress  # the last logged loss
        duration = state.ended - state.started if state.ended and state.started else None
        text = outcome_text(state.status, progress, duration, state.best_metric, state.last_checkpoint,
                            state.best_checkpoint)
        self.outcome.value = f'<span style="font-size:12px">{escape(text)}</span>'
        self.outcome.layout.display = None
        self.stop_button.layout.display = "none"

    def _show_stopping(self) -> None:
        self.stop_button.disabled = True
        self.stop_button.description = "Stopping…"

    def _show_error(self, message: str, log_tail: str = "") -> None:
        tail = (f'<details open><summary>last lines of {LOG_FILE}</summary><pre style="font-size:11px;max-height:240px;'
                f'overflow:auto">{escape(log_tail)}</pre></details>') if log_tail else ""
        self.error_box.value = f'<pre style="color:#dc2626;white-space:pre-wrap">{escape(message)}</pre>{tail}'
        self.error_box.layout.display = None

    # ----- control -----------------------------------------------------------------------------
    def request_stop(self) -> None:
        """What the stop button does: the worker checkpoints and stops after its current step."""
        self.run.stop()
        with self._lock:  # the follower thread may be updating the same widgets
            self._show_stopping()

    def close(self) -> None:
        """Stop following and close every child widget (and the plot's comm)."""
        self._closed.set()
        for child in (self.title, self.status_badge, self.stop_button, self.outcome, self.progress_bar,
                      self.progress_label, self.plot_note, self.plot, self.eval_table, self.error_box, *self.children):
            child.close()
        super().close()

    # ----- display -----------------------------------------------------------------------------
    def show(self) -> "RunMonitor":
        """Display with a handle, so the static fallback is refreshed once the run ends."""
        from IPython.display import display

        self._display_handle = display(self, display_id=True)
        return self

    def _refresh_static_fallback(self) -> None:
        if self._display_handle is not None:
            self._display_handle.update(self)

    def summary_html(self) -> str:
        return _summary_html(self.run) + self.answers.value

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        # Front ends without the widget manager (nbconvert, GitHub) fall back to this picture.
        ensure_bokehjs()
        self.plot.send_state("render_bundle")  # points streamed before this view existed
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is not None:
            bundle["text/html"] = self.summary_html()
        return bundle


def _config_of(run: Run) -> Config | None:
    try:
        return run.config
    except Exception:  # an unreadable config must not keep the monitor from showing
        return None


def _legend(items: list[tuple[str, list[Any]]]) -> Any:
    return Legend(items=items, location="top_left", click_policy="hide", label_text_font_size="11px",
                  border_line_alpha=0, padding=4, spacing=2)


# ----- choosing a view --------------------------------------------------------------------------------


def monitor_mode() -> str:
    """``widget`` in a Jupyter kernel, ``text`` in a terminal; ``FTKIT_MONITOR`` overrides."""
    forced = os.environ.get("FTKIT_MONITOR", "").strip().lower()
    if forced in MONITOR_MODES:
        return forced
    from IPython import get_ipython

    shell = get_ipython()
    return "widget" if shell is not None and type(shell).__name__ == "ZMQInteractiveShell" else "text"


def show_run(run: Run, mode: str | None = None) -> RunMonitor | None:
    """Display ``run`` as a live monitor, a self-updating HTML summary, or a text summary."""
    from IPython.display import HTML, display

    mode = mode or monitor_mode()
    if mode == "widget":
        return RunMonitor(run).show()
    if mode == "html":
        handle = display(HTML(_summary_html(run)), display_id=True)
        if not run.done:
            threading.Thread(target=_follow_static, args=(run, handle), daemon=True,
                             name=f"ftkit-summary-{run.id}").start()
        return None
    print(run_summary_text(run.info(), run.log_tail(10) if run.status == "failed" else ""))
    return None


def _summary_html(run: Run) -> str:
    return run_summary_html(run.info(), run.log_tail(30) if run.status == "failed" else "")


def _follow_static(run: Run, handle: Any, interval: float = 1.0) -> None:
    """transformers-notebook style: redraw the same output in place until the run ends."""
    from IPython.display import HTML

    while True:
        time.sleep(interval)
        done = run.done
        handle.update(HTML(_summary_html(run)))
        if done:
            return
