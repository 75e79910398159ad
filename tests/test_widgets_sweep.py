"""SweepView shows a sweep's summary: the table of its trials (pruned greyed, the best starred), a scatter of
the metric per searched key (log and categorical axes), compare of a selection, stop, and a refresh
that follows the sweep until it ends. Sweeps are written on disk as a driver and workers write them."""

from __future__ import annotations

import html
import json
import os
import re
import time

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import ftkit.sweeps
from ftkit.config import Config
from ftkit.runs import Run
from ftkit.runstore import RunStore
from ftkit.sweeps import Sweep
from ftkit.sweeps.study import write_spec
from ftkit.notebook.widgets.sweep import SweepView, show_sweep

NAME = "hunt"
KEYS = ["training.learning_rate", "adapter.r", "adapter.kind"]
SPACES = [
    {"key": "training.learning_rate", "low": 1e-5, "high": 1e-3, "log": True, "integer": False, "choices": None},
    {"key": "adapter.r", "low": 4, "high": 32, "log": False, "integer": True, "choices": None},
    {"key": "adapter.kind", "low": None, "high": None, "log": False, "integer": False, "choices": ["lora", "full"]},
]
# (trial number, run name, settings, validation f1, how the run ended; how optuna recorded the trial)
TRIALS = [(0, "hunt-1", (1e-4, 8, "lora"), 0.6, "completed", "complete"),
          (1, "hunt-2", (5e-4, 16, "full"), 0.3, "stopped", "pruned"),
          (2, "hunt-3", (2e-5, 32, "lora"), 0.8, "completed", "complete")]


def make_run(store: RunStore, name: str, settings: tuple, sweep: str = NAME) -> Run:
    lr, r, kind = settings
    config = Config.from_dict({"name": name, "training": {"learning_rate": lr}, "adapter": {"r": r, "kind": kind},
                               "output": {"sweep": sweep}})
    return Run(store.create_run(config), store)


def finish(run: Run, f1: float | None, status: str = "completed") -> None:
    """What a worker writes (as tests/test_sweep.py's helper): two validation scores, a test score, the end."""
    store = run.store
    store.set_status(run.id, "running", pid=os.getpid())
    if f1 is not None:
        for step, value in ((10, f1 / 2), (20, f1)):
            store.append_event(run.id, {"type": "eval", "split": "validation", "step": step, "best_metric_name": "f1",
                                        "metrics": {"f1": value, "loss": 1 - value}})
    store.append_event(run.id, {"type": "eval", "split": "test", "step": 20, "best_metric_name": "f1",
                                "metrics": {"f1": 0.99}})
    store.set_status(run.id, status)


def write_search(sweep: Sweep, trials: list[dict], state: str = "finished") -> None:
    write_spec(sweep.folder, {"name": NAME, "config": Config.from_dict({"name": "base"}).to_dict(), "spaces": SPACES,
                              "trials": 6, "parallel": 2, "pruner": "median", "seed": None, "storage": None,
                              "direction": "maximize", "created": time.time()})
    (sweep.folder / "trials.json").write_text(json.dumps(trials))
    (sweep.folder / "driver.json").write_text(json.dumps({"state": state}))


def trial(number: int, settings: tuple, state: str, run: Run | None, value: float | None = None,
          error: str | None = None) -> dict:
    """A trial as the driver writes it to trials.json; a pruned one with the step it was pruned at."""
    return {"number": number, "state": state, "params": dict(zip(KEYS, settings)), "value": value,
            "run": run.id if run else None, "error": error, "pruned_at": 10 if state == "pruned" else None}


@pytest.fixture
def store(runs_dir) -> RunStore:
    return RunStore(runs_dir)


@pytest.fixture
def search(store) -> tuple[Sweep, dict[str, Run]]:
    """A finished search: two completed trials, one pruned, one that failed before it had a run."""
    sweep = Sweep(NAME, store=store)
    made, trials = {}, []
    for number, name, settings, f1, status, state in TRIALS:
        made[name] = run = make_run(store, name, settings)
        finish(run, f1, status)
        trials.append(trial(number, settings, state, run, f1))
    trials.append(trial(3, (1e-3, 4, "full"), "failed", None, error="CUDA out of memory"))
    write_search(sweep, trials)
    return sweep, made


@pytest.fixture
def live(store, monkeypatch) -> tuple[Sweep, Run, list[dict]]:
    """A search at work: its driver alive, one trial done, one running."""
    monkeypatch.setattr(ftkit.sweeps, "driver_alive", lambda folder: True)
    sweep = Sweep(NAME, store=store)
    done, running = make_run(store, "hunt-1", (1e-4, 8, "lora")), make_run(store, "hunt-2", (5e-4, 16, "full"))
    finish(done, 0.6)
    store.set_status(running.id, "running", pid=os.getpid())
    trials = [trial(0, (1e-4, 8, "lora"), "complete", done, 0.6), trial(1, (5e-4, 16, "full"), "running", running)]
    write_search(sweep, trials, state="searching")
    return sweep, running, trials


def cell_text(widget) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", widget.value)).strip()


def table(view: SweepView) -> list[list]:
    """The table as it reads: the header, then each row's checkbox (ticked, or None when it cannot be) and cells."""
    columns = len(view._header_cells)
    children = list(view.table.children)
    rows = [[cell_text(cell) for cell in children[:columns]]]
    for start in range(columns, len(children), columns):
        box, *cells = children[start:start + columns]
        rows.append([None if box.disabled else box.value, *map(cell_text, cells)])
    return rows


def classes_of_row(view: SweepView, name: str) -> set[str]:
    row = next(row for row in view._rows.values() if any(cell_text(cell).endswith(name) for cell in row.cells))
    return {cls for widget in row.widgets for cls in widget._dom_classes}


# ----- the table -----------------------------------------------------------------------------------------


def test_the_table_has_a_row_per_trial_with_its_settings_and_score(search):
    sweep, _ = search
    view = SweepView(sweep, follow=False)
    assert table(view) == [
        ["", "trial", "name", "status", *KEYS, "validation_f1"],
        [False, "1", "hunt-1", "completed", "0.0001", "8", "lora", "0.6000"],
        [False, "2", "hunt-2", "✂ pruned", "0.0005", "16", "full", "0.3000"],
        [False, "3", "★ hunt-3", "completed", "2e-05", "32", "lora", "0.8000"],
        [None, "4", "(no run)", "failed", "0.001", "4", "full", ""]]
    failed = list(view._rows.values())[-1]
    assert 'title="CUDA out of memory"' in failed.cells[2].value  # the error on hover over its status


def test_pruned_rows_are_greyed_and_the_best_row_starred(search):
    view = SweepView(search[0], follow=False)
    assert "ftkit-sweep-pruned" in classes_of_row(view, "hunt-2")
    assert "line-through" in list(view._rows.values())[1].cells[1].value
    assert "ftkit-sweep-best" in classes_of_row(view, "hunt-3")
    assert {"ftkit-sweep-best", "ftkit-sweep-pruned"}.isdisjoint(classes_of_row(view, "hunt-1"))


def test_the_header_says_where_the_search_stands_and_names_the_best_run(search):
    view = SweepView(search[0], follow=False)
    assert cell_text(view.header) == ("sweep hunt · finished 4/6 trials, 2 at a time, median pruner "
                                      "(2 completed, 1 pruned, 1 failed) · best: ★ hunt-3 (validation_f1 0.8000)")
    assert view.stop_button.layout.display == "none" and not view.active


# ----- the plots -----------------------------------------------------------------------------------------


def test_one_scatter_per_searched_key_on_the_axis_its_space_asks_for(search):
    from bokeh.models import FactorRange, HoverTool, LinearScale, LogScale

    view = SweepView(search[0], follow=False)
    assert list(view.figures) == KEYS
    assert isinstance(view.figures["training.learning_rate"].x_scale, LogScale)
    assert isinstance(view.figures["adapter.r"].x_scale, LinearScale)
    assert list(view.figures["adapter.kind"].x_range.factors) == ["lora", "full"]
    assert isinstance(view.figures["adapter.kind"].x_range, FactorRange)
    points = view.sources["training.learning_rate"].data
    assert list(points["x"]) == [1e-4, 5e-4, 2e-5] and list(points["value"]) == [0.6, 0.3, 0.8]  # unscored: left out
    assert list(points["name"]) == ["hunt-1", "hunt-2", "hunt-3"]
    assert list(points["marker"]) == ["circle", "x", "star"]  # pruned crossed out, the best a star
    assert points["colour"][0] != points["colour"][1] != points["colour"][2]
    assert list(view.sources["adapter.kind"].data["x"]) == ["lora", "full", "lora"]
    tooltips = dict(view.figures["adapter.r"].select_one(HoverTool).tooltips)
    assert tooltips["run"] == "@name" and tooltips["validation_f1"].startswith("@value")


def test_a_grid_plots_its_differing_keys_numbers_on_a_number_axis(store):
    from bokeh.models import FactorRange, LinearScale

    for i, settings in enumerate([(1e-4, 8, "lora"), (2e-4, 8, "full")], 1):
        finish(make_run(store, f"grid-{i}", settings, sweep="grid"), 0.5 + i / 10)
    view = SweepView(Sweep("grid", store=store), follow=False)
    assert list(view.figures) == view.summary["keys"]
    assert set(view.figures) == {"training.learning_rate", "adapter.kind"}
    assert isinstance(view.figures["training.learning_rate"].x_scale, LinearScale)
    assert isinstance(view.figures["adapter.kind"].x_range, FactorRange)
    assert cell_text(view.header).startswith("sweep grid · grid of 2 runs: 2 completed · best: ★ grid-2")


# ----- compare and stop ----------------------------------------------------------------------------------


def test_compare_selected_shows_the_comparison_of_the_ticked_runs(search, monkeypatch):
    monkeypatch.setenv("FTKIT_MONITOR", "text")
    sweep, made = search
    view = SweepView(sweep, follow=False)
    assert view.compare_button.disabled
    view.select([made["hunt-1"].id])
    assert view.compare_button.disabled and view.compare_selected() is None
    assert "two or more" in view.message.value
    view.select([made["hunt-1"].id, made["hunt-3"].id])
    assert view.selected == [made["hunt-1"].id, made["hunt-3"].id]
    assert not view.compare_button.disabled and view.compare_button.description == "Compare selected (2)"
    view.compare_button.click()
    assert list(view.comparison["name"]) == ["hunt-1", "hunt-3"]
    (shown,) = view.compare_output.outputs
    for name in ("hunt-1", "hunt-3"):
        assert name in shown["data"]["text/plain"] and name in shown["data"]["text/html"]
    assert "hunt-2" not in shown["data"]["text/plain"]


def test_a_failed_trial_without_a_run_cannot_be_ticked(search):
    view = SweepView(search[0], follow=False)
    view.select([row.id for row in view._rows.values()] + ["trial:3"])
    assert len(view.selected) == 3 and None not in view.selected


def test_the_stop_button_stops_the_search(live):
    sweep, _, _ = live
    view = SweepView(sweep, follow=False)
    assert view.active and view.stop_button.layout.display is None and not view.stop_button.disabled
    assert cell_text(view.header).startswith("sweep hunt · searching 2/6 trials, 2 at a time, median pruner")
    view.stop_button.click()
    assert (sweep.folder / "STOP").exists()  # what Sweep.stop asks a live driver
    assert view.stop_button.disabled and view.stop_button.description == "Stopping…"
    view.refresh()
    assert view.stop_button.disabled  # still stopping until the driver says otherwise


def test_stop_calls_the_sweeps_stop(search, monkeypatch):
    sweep, _ = search
    calls = []
    monkeypatch.setattr(sweep, "stop", lambda: calls.append("stop"))
    SweepView(sweep, follow=False).request_stop()
    assert calls == ["stop"]


# ----- refreshing ----------------------------------------------------------------------------------------


def complete_the_search(sweep: Sweep, running: Run, trials: list[dict]) -> None:
    finish(running, 0.9)
    trials[1].update(state="complete", value=0.9)
    (sweep.folder / "trials.json").write_text(json.dumps(trials))
    (sweep.folder / "driver.json").write_text(json.dumps({"state": "finished"}))


def test_refresh_updates_the_table_and_plots_in_place(live):
    sweep, running, trials = live
    view = SweepView(sweep, follow=False)
    figure, source, row = view.figures["adapter.r"], view.sources["adapter.r"], view._rows[running.id]
    assert table(view)[2][3] == "running" and list(source.data["x"]) == [8.0]
    complete_the_search(sweep, running, trials)
    assert view.refresh() is False
    assert view.figures["adapter.r"] is figure and view.sources["adapter.r"] is source and view._rows[running.id] is row
    assert table(view)[2][2:4] == ["★ hunt-2", "completed"]
    assert list(source.data["x"]) == [8.0, 16.0] and list(source.data["marker"]) == ["circle", "star"]
    assert view.stop_button.layout.display == "none"


def test_the_view_follows_the_sweep_and_stops_polling_once_it_ends(live):
    sweep, running, trials = live
    view = SweepView(sweep, poll_interval=0.05)
    assert view._thread is not None and view._thread.is_alive()
    complete_the_search(sweep, running, trials)
    view._thread.join(timeout=10)
    assert not view._thread.is_alive()
    assert "finished 2/6 trials" in cell_text(view.header) and "best: ★ hunt-2" in cell_text(view.header)


def test_closing_the_view_stops_its_polling(live):
    view = SweepView(live[0], poll_interval=0.05)
    view.close()
    view._thread.join(timeout=5)
    assert not view._thread.is_alive()


def test_a_finished_sweep_is_never_polled(search):
    assert SweepView(search[0])._thread is None


# ----- show_sweep ----------------------------------------------------------------------------------------


def test_show_sweep_prints_the_table_in_a_terminal(search, monkeypatch, capsys):
    monkeypatch.setenv("FTKIT_MONITOR", "text")
    view = show_sweep(search[0])
    assert isinstance(view, SweepView) and view._thread is None
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("sweep hunt: finished 4/6 trials")
    assert out[0].endswith("best: hunt-3 (validation_f1 0.8000)")
    assert any("hunt-2" in line and "pruned" in line for line in out)


def test_show_sweep_takes_a_name_and_displays_the_summary_as_html_without_widgets(search, monkeypatch):
    monkeypatch.setenv("FTKIT_MONITOR", "html")
    InteractiveShell.instance()
    with capture_output() as captured:
        view = show_sweep(NAME, runs_dir=str(search[0].store.root))
    assert view.sweep.name == NAME
    shown = captured.outputs[0].data["text/html"]
    assert "sweep hunt" in shown and "hunt-3" in shown and "pruned" in shown
