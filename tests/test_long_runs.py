"""A long run stays cheap to read: its writers keep a summary (the events folded up to an offset) and
readers fold only the lines after it; a summary that no longer matches its events is never believed;
progress lines thin out as a run ages."""

from __future__ import annotations

import json
import os

import pytest

from ftkit.config import Config
from ftkit.engine.reporting import MAX_PROGRESS_INTERVAL_S, PROGRESS_INTERVAL_S, EventCallback
from ftkit.runstore import RunStore
from ftkit.runstore import events as events_module
from ftkit.runstore.events import RunState, read_events, read_state
from ftkit.runstore.files import append_line
from ftkit.runstore.layout import EVENTS_FILE, SUMMARY_FILE


def write_long_run(store: RunStore, run_id: str, steps: int = 60) -> None:
    """Every kind of event a run writes, through the store as its processes write them."""
    store.set_status(run_id, "running", pid=os.getpid())
    store.append_event(run_id, {"type": "phase", "phase": "tokenising", "done": 3, "total": 9, "detail": "train"})
    for step in range(1, steps + 1):
        store.append_event(run_id, {"type": "progress", "step": step, "total_steps": steps, "loss": 2.0 / step})
        if step % 5 == 0:
            store.append_event(run_id, {"type": "log", "step": step, "loss": 2.0 / step, "learning_rate": 1e-4,
                                        "values": {"rewards/chosen": step / 10}})
        if step % 20 == 0:
            store.append_event(run_id, {
                "type": "eval", "split": "validation", "step": step, "best_metric_name": "f1",
                "metrics": {"f1": step / 100, "loss": 1.0 / step},
                "answers": [{"prompt": "p", "reference": "r", "generation": "g", "match": False}]})
            store.append_event(run_id, {"type": "checkpoint", "step": step, "checkpoint": f"checkpoint-{step}",
                                        "size": 10, "metrics": {"f1": step / 100}, "kept": [step - 20, step][-2:]})
    store.append_event(run_id, {"type": "export", "id": "e1", "state": "started", "pid": 1, "format": "onnx"})
    store.set_status(run_id, "completed")


def full_fold(folder) -> RunState:
    return RunState.from_events(read_events(folder / EVENTS_FILE))


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs")


@pytest.fixture
def decoded(monkeypatch) -> list[int]:
    """The size of each stretch of events.jsonl parsed from here on (a reader's cost)."""
    sizes: list[int] = []
    real_decode = events_module.decode_events
    monkeypatch.setattr(events_module, "decode_events", lambda data, types=None: sizes.append(len(data))
                        or real_decode(data, types))
    return sizes


def test_a_finished_runs_summary_is_its_whole_fold_and_readers_start_there(store, request):
    run_id = store.create_run(Config(name="long"))
    write_long_run(store, run_id)
    folder = store.run_dir(run_id)
    summary = json.loads((folder / SUMMARY_FILE).read_text())
    assert summary["offset"] == (folder / EVENTS_FILE).stat().st_size  # written at the final status
    assert RunState.from_json(summary["state"]).to_json() == full_fold(folder).to_json()

    decoded = request.getfixturevalue("decoded")
    state, offset = store.read_state(run_id)
    assert decoded == [0] and offset == summary["offset"]  # nothing after the summary: nothing parsed
    assert state.to_json() == full_fold(folder).to_json()
    assert state.curves["rewards/chosen"][-1] == (60, 6.0) and sorted(state.checkpoints) == [40, 60]
    assert state.answered["answers"][0]["generation"] == "g" and state.exports["e1"]["format"] == "onnx"


def test_only_the_lines_after_the_summary_are_read_and_they_fold_on_top_of_it(store, request):
    run_id = store.create_run(Config(name="long"))
    write_long_run(store, run_id)
    folder = store.run_dir(run_id)
    before = (folder / EVENTS_FILE).stat().st_size
    store.append_event(run_id, {"type": "checkpoint_deleted", "step": 40})  # after the run: no new summary
    decoded = request.getfixturevalue("decoded")
    state, _ = read_state(folder)
    assert decoded == [(folder / EVENTS_FILE).stat().st_size - before]
    assert sorted(state.checkpoints) == [60] and state.to_json() == full_fold(folder).to_json()


def test_a_live_runs_summary_folds_every_writers_lines_in_order(store, monkeypatch):
    monkeypatch.setattr(events_module, "SUMMARY_INTERVAL_S", 0.0)  # a summary after every line
    run_id = store.create_run(Config(name="live"))
    folder = store.run_dir(run_id)
    store.set_status(run_id, "running", pid=os.getpid())
    for step in range(1, 6):
        store.append_event(run_id, {"type": "log", "step": step, "loss": 1.0 / step})
        # a writer that keeps no summary (another process's, an older ftkit): its lines are folded too
        append_line(folder / EVENTS_FILE, {"t": 0.0, "type": "log", "step": step, "grad_norm": float(step)})
    store.append_event(run_id, {"type": "progress", "step": 5, "total_steps": 10})
    summary = json.loads((folder / SUMMARY_FILE).read_text())
    assert summary["offset"] == (folder / EVENTS_FILE).stat().st_size
    state = RunState.from_json(summary["state"])
    assert state.status == "running" and state.progress["step"] == 5
    assert state.curves["grad_norm"] == [(step, float(step)) for step in range(1, 6)]
    assert state.to_json() == full_fold(folder).to_json()


@pytest.mark.parametrize("damage", ["rewritten", "cut", "garbage", "other version"])
def test_a_summary_that_no_longer_matches_its_events_is_never_believed(store, damage):
    run_id = store.create_run(Config(name="long"))
    write_long_run(store, run_id)
    folder = store.run_dir(run_id)
    events_path, summary_path = folder / EVENTS_FILE, folder / SUMMARY_FILE
    lines = events_path.read_bytes().splitlines(keepends=True)
    if damage == "rewritten":  # replaced by a stream as long, whose last lines differ: the run failed
        lines[-1] = lines[-1].replace(b'"completed"', b'"failed"   ')
        events_path.write_bytes(b"".join(lines))
    elif damage == "cut":
        events_path.write_bytes(b"".join(lines[: len(lines) // 2]))
    elif damage == "garbage":
        summary_path.write_bytes(b"\x00{not json")
    else:
        summary = json.loads(summary_path.read_text())
        summary_path.write_text(json.dumps({**summary, "version": 0, "state": {"status": "failed"}}))
    assert read_state(folder)[0].to_json() == full_fold(folder).to_json()


def test_compare_and_the_monitor_read_curves_from_the_summary(store, request):
    from ftkit.comparison import comparison
    from ftkit.notebook.widgets.monitor import RunMonitor
    from ftkit.runs import Run

    runs = []
    for name in ("first", "second"):
        run_id = store.create_run(Config(name=name))
        write_long_run(store, run_id)
        runs.append(Run(run_id, store))
    decoded = request.getfixturevalue("decoded")
    compared = comparison(runs)
    assert tuple(compared["curves"]["loss"][runs[0].id][-1]) == (60, 2.0 / 60)
    monitor = RunMonitor(runs[0], follow=False)
    assert monitor.curve_sources["loss"].data["step"] == list(range(5, 61, 5))  # drawn whole, once each
    assert monitor.eval_source.data["step"] == [20, 40, 60]
    monitor.close()
    assert set(decoded) == {0}  # neither parsed an event: both started from the summaries


def test_progress_lines_thin_out_as_a_run_ages(store):
    reporter = EventCallback(store, "run", "f1", adapter_only=False)
    start = reporter.started
    assert reporter.progress_interval(start + 10) == PROGRESS_INTERVAL_S  # a young run: twice a second
    assert PROGRESS_INTERVAL_S < reporter.progress_interval(start + 200) < MAX_PROGRESS_INTERVAL_S
    assert reporter.progress_interval(start + 7 * 24 * 3600) == MAX_PROGRESS_INTERVAL_S
    week_of_lines = 7 * 24 * 3600 / MAX_PROGRESS_INTERVAL_S
    assert week_of_lines < 130_000


def test_a_long_curve_compares_thinned_to_its_shape():
    from ftkit.comparison import MAX_CURVE_POINTS, thinned

    points = [(step, 1.0 / step) for step in range(1, 10_001)]
    points[5_000] = (5_001, 9.0)  # a spike
    shown = thinned(points)
    assert len(shown) <= MAX_CURVE_POINTS and shown == sorted(shown)
    assert {points[0], points[-1], (5_001, 9.0)} <= set(shown)
    assert thinned(points[:100]) == points[:100]
