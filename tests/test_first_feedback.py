"""Feedback from the first second: a run reports its phases before the first step, the supervisor's
"starting" lands at once, and a second launch on the same data reuses the tokenised cache.

Two launches of a tiny run share one runs folder (module fixture), so the test pays for two worker
start-ups in all.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import ftkit
from ftkit.runstore.events import PHASES
from ftkit.runstore.layout import CACHE_DIR

from .conftest import write_conll

FIRST_FEEDBACK_S = 2.0


def _launch(config: dict) -> dict:
    called = time.time()
    run = ftkit.train(config)
    returned = time.time()
    run.wait(timeout=300)
    events, _ = run.events()
    return {"run": run, "called": called, "returned": returned, "events": events}


@pytest.fixture(scope="module")
def launches(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("first-feedback")
    runs = folder / "runs"
    config = {
        "name": "phases", "task": "ner", "model": str(tiny_model_dir),
        "data": {"train": str(write_conll(folder / "train.txt", 48, 1)),
                 "validation": str(write_conll(folder / "valid.txt", 8, 2))},
        "training": {"max_steps": 2, "batch_size": 8, "max_seq_length": 32, "logging_steps": 1},
        "output": {"dir": str(runs)},
    }
    first = _launch(config)
    cache = {f: f.stat().st_mtime_ns for f in (runs / CACHE_DIR / "tokenized").glob("*.arrow")}
    second = _launch(config)
    return first, second, cache, runs


def _phases(events: list[dict]) -> list[dict]:
    return [e for e in events if e["type"] == "phase"]


@pytest.mark.spawns
def test_a_run_reports_its_phases_in_order_before_the_first_step(launches):
    first, _, _, _ = launches
    run, events = first["run"], first["events"]
    assert run.status == "completed", run.log_tail()
    assert events[0]["type"] == "phase" and events[0]["phase"] == "starting"  # the supervisor's, before the worker
    names = [e["phase"] for e in _phases(events)]
    in_order = [name for i, name in enumerate(names) if i == 0 or names[i - 1] != name]
    assert tuple(in_order) == PHASES[1:]  # alone in its store, it never waited for its device
    first_step = next(i for i, e in enumerate(events) if e["type"] == "progress" and e["step"] >= 1)
    assert all(i < first_step for i, e in enumerate(events) if e["type"] == "phase")
    for phase in ("reading data", "tokenising"):  # their counts reach their totals
        counted = [e for e in _phases(events) if e["phase"] == phase]
        assert counted and counted[-1]["done"] == counted[-1]["total"] > 0, counted
    tokenised = {e["detail"]: e for e in _phases(events) if e["phase"] == "tokenising"}
    assert set(tokenised) == {"train", "validation"}
    assert all(e["done"] == e["total"] and not e.get("cached") for e in tokenised.values())
    assert run.info()["phase"] is None  # over once it trained


@pytest.mark.spawns
def test_the_first_event_lands_within_two_seconds_of_the_launch(launches):
    for launch in launches[:2]:
        # The supervisor's, which imports no torch: "starting", or "waiting for device" while the
        # previous run's worker is still exiting (it holds the device until it has).
        first = launch["events"][0]
        assert first["phase"] == PHASES[0] or (first["phase"] == "starting" and "detail" not in first), first
        assert first["t"] - launch["returned"] < FIRST_FEEDBACK_S, first["t"] - launch["called"]


@pytest.mark.spawns
def test_a_second_launch_reuses_the_tokenised_cache(launches):
    first, second, cache, runs = launches
    assert second["run"].status == "completed", second["run"].log_tail()
    # train and validation, written by the first launch (beside the validation split's sort order)
    assert {f.name.split("-")[0] for f in cache} >= {"train", "validation"}
    tokenised = [e for e in _phases(second["events"]) if e["phase"] == "tokenising"]
    assert tokenised and all(e.get("cached") and e["done"] == e["total"] for e in tokenised), tokenised
    after = {f: f.stat().st_mtime_ns for f in (runs / CACHE_DIR / "tokenized").glob("*.arrow")}
    assert after == cache  # the same files, not written again


def test_a_second_read_of_the_same_files_comes_from_the_data_cache(tmp_path):
    from ftkit.config import DataConfig
    from ftkit.tasks.loading import load_splits

    train = write_conll(tmp_path / "train.txt", 30, 1)
    config = DataConfig(train=str(train), validation=str(write_conll(tmp_path / "valid.txt", 6, 2)))
    heard: list[tuple] = []
    first = load_splits(config, "ner", on_progress=lambda *a: heard.append(a), cache_dir=tmp_path / "cache")
    assert heard == [(0, 2, "train.txt"), (1, 2, "valid.txt"), (2, 2, "")]
    heard.clear()
    second = load_splits(config, "ner", on_progress=lambda *a: heard.append(a), cache_dir=tmp_path / "cache")
    assert heard == [(1, 1, "(cached)")]
    assert {s: d.to_dict() for s, d in second.items()} == {s: d.to_dict() for s, d in first.items()}
    train.write_text(train.read_text().replace("Paris", "Lyon"))  # new content: read again, a new entry
    heard.clear()
    third = load_splits(config, "ner", on_progress=lambda *a: heard.append(a), cache_dir=tmp_path / "cache")
    assert heard[-1] == (2, 2, "") and "Lyon" in str(third["train"]["tokens"][:])
    assert len(list((tmp_path / "cache").iterdir())) == 2
