"""The side panel's sweep routes (ftkit.server.sweep_routes, `ftkit.sweeps.Sweep.summary`) against a real Jupyter
server: every sweep of the store, one sweep's table (settings, status with pruned trials marked, metric, the best),
a 404 for an unknown sweep, and stopping one. Sweeps are built as their runs and driver leave them, without training."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from ftkit.config import Config
from ftkit.runstore import RunStore
from ftkit.sweeps.study import DRIVER_FILE, TRIALS_FILE, sweep_dir, write_spec

from .test_routes import api  # noqa: F401  (the fixture: GET/POST under /ftkit/api/ as (status, json body))

pytest_plugins = ["pytest_jupyter.jupyter_server"]

SEARCH = "lr-search"
GRID = "r-grid"
LR, R = "training.learning_rate", "adapter.r"
# (trial state in the study, run status, learning rate, r, validation f1): trial 1 was pruned early
SEARCH_TRIALS = [("complete", "completed", 1e-4, 8, 0.8), ("pruned", "stopped", 5e-3, 16, 0.3),
                 ("complete", "completed", 3e-4, 4, 0.6)]
FAILED_TRIAL = {LR: 9e-3, R: 32}  # a trial whose run never started: its setting was refused


def nested(settings: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` as ``{"a": {"b": 1}}``, as a config file writes it."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        *sections, last = key.split(".")
        place = out
        for section in sections:
            place = place.setdefault(section, {})
        place[last] = value
    return out


def config_of(sweep: str, number: int, settings: dict[str, Any]) -> Config:
    """Run ``<sweep>-<number>`` of a LoRA NER sweep at ``settings`` (dotted keys)."""
    data = {"name": f"{sweep}-{number}", "task": "ner", "output": {"sweep": sweep}, **nested(settings)}
    data["adapter"] = {"kind": "lora", **data.get("adapter", {})}
    return Config.from_dict(data)


def sweep_run(store: RunStore, sweep: str, number: int, settings: dict[str, Any], f1: float | None,
              status: str, pid: int = 1) -> str:
    """A run of the sweep as its worker leaves it (tests/test_sweep.py's `finish`): validation scores, then its status."""
    run_id = store.create_run(config_of(sweep, number, settings))
    if status == "queued":
        return run_id
    store.set_status(run_id, "running", pid=pid)
    if f1 is not None:
        for step, value in ((10, f1 / 2), (20, f1)):
            store.append_event(run_id, {"type": "eval", "split": "validation", "step": step, "best_metric_name": "f1",
                                        "metrics": {"f1": value, "loss": 1 - value}})
    if status != "running":
        store.set_status(run_id, status)
    return run_id


def add_search(store: RunStore, name: str = SEARCH, driver_state: str = "finished", trials: int = 5,
               running_pid: int | None = None) -> dict[str, Any]:
    """A finished optuna search as its driver leaves it (`ftkit.sweeps.driver`): its runs, its spec, its trials
    (``trials.json``, as `write_trials` writes it) and its record.

    Trial 1 was pruned (its run stopped), trial 3 failed before its run started; with ``running_pid`` a
    fifth trial's run is still training. Returns the run ids by trial number.
    """
    ids: dict[int, str] = {}
    records = []
    for number, (state, status, lr, r, f1) in enumerate(SEARCH_TRIALS):
        ids[number] = sweep_run(store, name, number + 1, {LR: lr, R: r}, f1, status)
        records.append({"number": number, "state": state, "params": {LR: lr, R: r}, "value": f1, "run": ids[number],
                        "error": None, "pruned_at": 20 if state == "pruned" else None})
    records.append({"number": 3, "state": "failed", "params": FAILED_TRIAL, "value": None, "run": None,
                    "error": "the setting adapter.r=32: too large", "pruned_at": None})
    if running_pid is not None:
        ids[4] = sweep_run(store, name, 5, {LR: 2e-4, R: 8}, None, "running", pid=running_pid)
        records.append({"number": 4, "state": "running", "params": {LR: 2e-4, R: 8}, "value": None, "run": ids[4],
                        "error": None, "pruned_at": None})
    folder = sweep_dir(store.root, name)
    spaces = [{"key": LR, "low": 1e-5, "high": 1e-2, "log": True, "integer": False, "choices": None},
              {"key": R, "low": 4, "high": 32, "log": False, "integer": True, "choices": None}]
    write_spec(folder, {"name": name, "config": config_of(name, 0, {}).to_dict(), "spaces": spaces, "trials": trials,
                        "parallel": 2, "pruner": "median", "seed": 0, "storage": None, "direction": "maximize",
                        "created": time.time() - 600})
    (folder / TRIALS_FILE).write_text(json.dumps(records))
    (folder / DRIVER_FILE).write_text(json.dumps({"state": driver_state}))
    return ids


def add_grid(store: RunStore, name: str = GRID, running_pid: int | None = None) -> dict[int, str]:
    """A grid over adapter.r: r=8 completed, r=16 completed better, r=32 running (with ``running_pid``) or failed."""
    return {1: sweep_run(store, name, 1, {R: 8}, 0.7, "completed"),
            2: sweep_run(store, name, 2, {R: 16}, 0.75, "completed"),
            3: sweep_run(store, name, 3, {R: 32}, None, "running" if running_pid else "failed", pid=running_pid or 1)}


@pytest.fixture
def store_and_ids(tmp_path, sleeper) -> tuple[RunStore, dict[str, Any]]:
    store = RunStore(tmp_path / "runs")
    grid = add_grid(store, running_pid=sleeper.pid)
    search = add_search(store)
    lone = store.create_run(Config.from_dict({"name": "lone", "task": "ner"}))
    return store, {"grid": grid, "search": search, "lone": lone}


@pytest.fixture
def jp_server_config(store_and_ids):
    store, _ = store_and_ids
    return {"ServerApp": {"jpserver_extensions": {"ftkit": True}}, "FtkitApp": {"runs_dir": str(store.root)}}


async def test_lists_every_sweep_of_the_store_oldest_first_and_no_lone_run(api, store_and_ids):
    code, listing = await api("sweeps")
    assert code == 200
    assert [(s["sweep"], s["kind"], s["state"]) for s in listing["sweeps"]] == [
        (GRID, "grid", "grid"), (SEARCH, "search", "finished")]
    grid = listing["sweeps"][0]
    assert grid["keys"] == [R] and grid["metric"] == "validation_f1" and grid["higher_is_better"] is True
    assert [(e["name"], e["status"], e["settings"], e["value"]) for e in grid["runs"]] == [
        (f"{GRID}-1", "completed", {R: 8}, 0.7), (f"{GRID}-2", "completed", {R: 16}, 0.75),
        (f"{GRID}-3", "running", {R: 32}, None)]
    assert grid["best"]["name"] == f"{GRID}-2" and "trials" not in grid


async def test_a_searchs_table_has_each_trial_its_settings_and_metric_the_pruned_one_marked(api, store_and_ids):
    _, ids = store_and_ids
    code, summary = await api("sweeps", SEARCH)
    assert code == 200
    assert {key: summary[key] for key in ("sweep", "kind", "state", "keys", "metric", "trials", "parallel", "pruner",
                                          "storage", "error")} == {
        "sweep": SEARCH, "kind": "search", "state": "finished", "keys": [LR, R], "metric": "validation_f1",
        "trials": 5, "parallel": 2, "pruner": "median", "storage": None, "error": None}
    rows = [(e["id"], e["trial"], e["status"], e["settings"], e["value"]) for e in summary["runs"]]
    assert rows == [(ids["search"][0], 1, "completed", {LR: 1e-4, R: 8}, 0.8),  # counted from 1, as run names
                    (ids["search"][1], 2, "pruned", {LR: 5e-3, R: 16}, 0.3),
                    (ids["search"][2], 3, "completed", {LR: 3e-4, R: 4}, 0.6),
                    (None, 4, "failed", FAILED_TRIAL, None)]
    assert summary["runs"][3]["error"] == "the setting adapter.r=32: too large"
    assert summary["best"]["id"] == ids["search"][0]


async def test_an_unknown_sweep_is_a_json_404_and_the_routes_need_the_token(api, store_and_ids):
    for parts in (("sweeps", "no-such-sweep"), ("sweeps", "no-such-sweep", "stop")):
        code, error = await api(*parts, method="POST" if parts[-1] == "stop" else "GET")
        assert code == 404 and error["code"] == "sweep_not_found" and set(error) == {"code", "message"}
    code, error = await api("sweeps", "..")
    assert code == 404 and error["code"] == "not_found"
    code, _ = await api("sweeps", headers={"Authorization": ""})
    assert code == 403
    code, _ = await api("sweeps", GRID, "stop", method="POST", headers={"Authorization": ""})
    assert code == 403


async def test_a_lone_runs_name_is_no_sweep(api, store_and_ids):
    code, error = await api("sweeps", "lone")
    assert code == 404 and error["code"] == "sweep_not_found"


async def test_stopping_a_grid_asks_its_running_runs_to_stop_and_answers_its_summary(api, store_and_ids):
    store, ids = store_and_ids
    code, summary = await api("sweeps", GRID, "stop", method="POST")
    assert code == 202 and summary["sweep"] == GRID
    assert store.stop_requested(ids["grid"][3])
    assert not store.stop_requested(ids["grid"][1])  # finished: nothing to stop


async def test_stopping_a_sweep_with_nothing_at_work_is_a_conflict_and_changes_nothing(api, store_and_ids):
    store, ids = store_and_ids
    code, error = await api("sweeps", SEARCH, "stop", method="POST")
    assert code == 409 and error["code"] == "sweep_not_active"
    assert "finished" in error["message"]
    assert not any(store.stop_requested(run_id) for run_id in ids["search"].values())


async def test_stopping_a_search_whose_driver_died_stops_its_running_trial(api, store_and_ids, sleeper):
    store, _ = store_and_ids
    ids = add_search(store, "orphan", driver_state="searching", running_pid=sleeper.pid)
    code, summary = await api("sweeps", "orphan")
    assert summary["state"] == "interrupted"  # no driver holds it
    assert next(e["status"] for e in summary["runs"] if e["id"] == ids[4]) == "running"
    code, summary = await api("sweeps", "orphan", "stop", method="POST")
    assert code == 202 and store.stop_requested(ids[4])


async def test_a_sweep_that_cannot_be_read_is_a_409_and_listed_with_its_error(api, store_and_ids):
    store, _ = store_and_ids
    (sweep_dir(store.root, SEARCH) / "sweep.json").write_text('{"name": "lr-search", "spaces": "half written')
    code, error = await api("sweeps", SEARCH)
    assert code == 409 and error["code"] == "sweep_unreadable"
    code, listing = await api("sweeps")
    assert code == 200
    broken = next(s for s in listing["sweeps"] if s["sweep"] == SEARCH)
    assert (broken["state"], broken["runs"], broken["kind"]) == ("unreadable", [], "search") and broken["error"]
    assert next(s for s in listing["sweeps"] if s["sweep"] == GRID)["state"] == "grid"
