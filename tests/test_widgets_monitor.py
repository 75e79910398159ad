"""RunMonitor follows a run's event stream: progress, streamed curves, evaluation table, stop, errors, re-attach."""

from __future__ import annotations

import os
import time

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import ftkit.rendering
import ftkit.runs
from ftkit.config import Config
from ftkit.runs import Run
from ftkit.store import RunStore
from ftkit.notebook.widgets import register_run_formatter
from ftkit.notebook.widgets.monitor import RunMonitor, show_run


@pytest.fixture
def store(runs_dir) -> RunStore:
    return RunStore()


@pytest.fixture
def run(store) -> Run:
    run_id = store.create_run(Config(name="monitored"))
    store.set_status(run_id, "running", pid=os.getpid())
    return Run(run_id, store)


def progress(store: RunStore, run: Run, step: int, total: int = 100, loss: float | None = 0.5) -> None:
    store.append_event(run.id, {"type": "progress", "step": step, "total_steps": total, "epoch": step / 50,
                                "samples_per_second": 64.0, "eta_seconds": (total - step) * 0.5, "loss": loss})


def evaluation(store: RunStore, run: Run, step: int, f1: float, split: str = "validation") -> None:
    store.append_event(run.id, {"type": "eval", "split": split, "step": step, "epoch": step / 50,
                                "best_metric_name": "f1",
                                "metrics": {"loss": 0.4, "precision": 0.7, "recall": 0.8, "f1": f1,
                                            "PER_precision": 0.9, "PER_recall": 0.85, "PER_f1": 0.87,
                                            "LOC_precision": 0.6, "LOC_recall": 0.5, "LOC_f1": 0.55}})


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the monitor did not catch up in time"
        time.sleep(0.05)


def test_monitor_shows_progress_curves_and_per_entity_table_from_events(store, run):
    for step in (10, 20, 30):
        progress(store, run, step, loss=1.0 / step)
    evaluation(store, run, 30, f1=0.61)
    monitor = RunMonitor(run, follow=False)

    assert (monitor.progress_bar.value, monitor.progress_bar.max) == (30, 100)
    label = monitor.progress_label.value
    assert "step 30/100" in label and "64.0 samples/s" in label and "ETA 0:35" in label
    assert "running" in monitor.status_badge.value
    assert monitor.loss_source.data["step"] == [10, 20, 30]
    assert monitor.eval_source.data["metric"] == [0.61]
    table = monitor.eval_table.value
    assert "PER P/R/F1" in table and "0.90/0.85/0.87" in table and "LOC P/R/F1" in table


def test_monitor_shows_the_phase_before_the_first_step_then_the_steps(store, run):
    store.append_event(run.id, {"type": "phase", "phase": "starting"})
    monitor = RunMonitor(run, follow=False)
    assert monitor.progress_label.value == "starting"
    store.append_event(run.id, {"type": "phase", "phase": "tokenising", "done": 3000, "total": 12000, "detail": "train"})
    monitor.poll()
    assert monitor.progress_label.value == "tokenising train 3,000/12,000"
    assert (monitor.progress_bar.value, monitor.progress_bar.max) == (3000, 12000)  # the bar counts the phase
    store.append_event(run.id, {"type": "phase", "phase": "tokenising", "done": 200, "total": 200,
                                "detail": "validation", "cached": True})
    store.append_event(run.id, {"type": "phase", "phase": "first step"})
    monitor.poll()
    assert monitor.progress_label.value == "first step"
    progress(store, run, 1)
    monitor.poll()
    assert monitor.progress_label.value.startswith("step 1/100") and monitor.progress_bar.value == 1
    with capture_output() as captured:  # a terminal's summary says the phase too
        store.append_event(run.id, {"type": "status", "status": "queued"})
        store.set_status(run.id, "running", pid=os.getpid())
        store.append_event(run.id, {"type": "phase", "phase": "loading model", "detail": "default"})
        show_run(run, mode="text")
    assert "running — loading model default" in captured.stdout


def test_monitor_streams_only_the_new_points(store, run):
    progress(store, run, 10)
    monitor = RunMonitor(run, follow=False)
    changes = []
    monitor.figure.document.on_change(changes.append)  # what jupyter_bokeh sends to the browser
    progress(store, run, 20, loss=0.3)
    progress(store, run, 30, loss=0.2)
    monitor.poll()
    monitor.poll()  # nothing new: nothing sent
    assert [type(change).__name__ for change in changes] == ["ColumnsStreamedEvent"]
    assert changes[0].model is monitor.loss_source
    assert changes[0].data == {"step": [20, 30], "loss": [0.3, 0.2]}


def test_stop_button_asks_the_worker_to_stop(run):
    monitor = RunMonitor(run, follow=False)
    monitor.stop_button.click()
    assert (run.dir / "STOP").exists()
    assert monitor.stop_button.disabled


def test_failed_run_shows_its_error_and_the_log_tail(store, run):
    (run.dir / "train.log").write_text("loading data\nTraceback ...\nRuntimeError: out of memory\n")
    store.set_status(run.id, "failed", error="RuntimeError: out of memory")
    monitor = RunMonitor(run, follow=False)
    assert monitor.finished and "failed" in monitor.status_badge.value
    assert monitor.error_box.layout.display != "none"
    assert "RuntimeError: out of memory" in monitor.error_box.value and "loading data" in monitor.error_box.value
    assert monitor.stop_button.disabled
    assert monitor.progress_bar.bar_style == "danger"


def test_monitor_follows_events_written_while_it_is_shown(store, run):
    monitor = RunMonitor(run, poll_interval=0.05)
    try:
        progress(store, run, 40)
        wait_until(lambda: monitor.progress_bar.value == 40)
        evaluation(store, run, 40, f1=0.7)
        store.set_status(run.id, "completed")
        wait_until(lambda: monitor.finished)
        assert monitor.eval_source.data["step"] == [40]
        assert monitor.progress_bar.bar_style == "success"
        monitor._thread.join(timeout=5)
        assert not monitor._thread.is_alive()  # the follower ends with the run
    finally:
        monitor.close()


def test_a_new_monitor_on_a_running_run_replays_its_history(store, run):
    """After a kernel restart, `ftkit.runs.get(ID)` and a fresh monitor show everything so far."""
    for step in (10, 20):
        progress(store, run, step)
    evaluation(store, run, 20, f1=0.5)
    reattached = ftkit.runs.get(run.id)
    monitor = RunMonitor(reattached, poll_interval=0.05)
    try:
        assert monitor.loss_source.data["step"] == [10, 20]
        assert monitor.eval_source.data["metric"] == [0.5]
        progress(store, run, 30)
        wait_until(lambda: monitor.loss_source.data["step"] == [10, 20, 30])
    finally:
        monitor.close()


def test_monitor_marks_a_run_whose_worker_died_as_failed(store, runs_dir):
    run_id = store.create_run(Config(name="orphan"))
    store.set_status(run_id, "running", pid=2**22 + 12345)  # no such process
    monitor = RunMonitor(Run(run_id, store), follow=False)
    assert monitor.poll()
    assert monitor.status == "failed" and "died" in monitor.error_box.value


def test_displaying_a_run_shows_its_live_monitor(run, monkeypatch):
    monkeypatch.setenv("FTKIT_MONITOR", "widget")
    monkeypatch.setattr(ftkit.rendering, "_bokehjs_loaded", False)
    shell = InteractiveShell.instance()
    assert register_run_formatter(shell)
    with capture_output() as captured:
        shell.display_formatter.format(run)  # what display(run) and a cell ending in `run` do
    loader, monitor = captured.outputs  # BokehJS from the installed package, then the monitor
    assert "application/vnd.bokehjs_load.v0+json" in loader.data
    bundle = monitor.data
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "monitored" in bundle["text/html"]  # the static picture for front ends without widgets


def test_without_a_widget_front_end_a_run_shows_a_summary(store, run):
    progress(store, run, 50)
    with capture_output() as captured:
        show_run(run, mode="text")
    assert f"monitored ({run.id}): running — step 50/100" in captured.stdout
    store.set_status(run.id, "completed")
    with capture_output() as captured:
        show_run(run, mode="html")
    assert "completed" in captured.outputs[0].data["text/html"]


def test_a_view_created_later_starts_from_the_points_streamed_so_far(store, run):
    monitor = RunMonitor(run, follow=False)
    progress(store, run, 10, loss=0.123456)
    monitor.poll()
    state = monitor.plot.get_state()  # what a reloaded page or a second display receives
    assert "0.123456" in state["render_bundle"]
