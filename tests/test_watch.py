"""The supervisor's watch (`ftkit.process.watch`): a run whose progress marks stop is shown stalled, and clears
once they come again; a stop the worker does not act on becomes SIGTERM, then SIGKILL, of its process group;
a stalled run gets a short grace. Driven with the clock and the marks given, and the signals recorded."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest

from ftkit.config import Config
from ftkit.process import watch as watching
from ftkit.process.watch import KILL_GRACE_S, STALL_MIN_S, STALLED_STOP_GRACE_S, STOP_GRACE_MIN_S, WorkerWatch
from ftkit.runstore import RunStore


@pytest.fixture
def watched(runs_dir, monkeypatch):
    store = RunStore(runs_dir)
    run_id = store.create_run(Config(name="watched"))
    signals = []
    monkeypatch.setattr(watching.os, "killpg", lambda pid, signum: signals.append((pid, signum)))

    def make(stall_timeout=None):
        config = Config.from_dict({"resources": {"stall_timeout": stall_timeout}})
        return WorkerWatch(store, run_id, config, SimpleNamespace(pid=4321)), signals

    make.store, make.run_id = store, run_id
    return make


def phases(store, run_id):
    return [e.get("phase") for e in store.read_events(run_id)[0] if e["type"] == "phase"]


def test_a_run_without_progress_for_its_stall_timeout_shows_as_stalled_until_it_moves_again(watched):
    watch, _ = watched(stall_timeout=30)
    watch.look(marked=100.0, now=100.0)
    watch.look(marked=100.0, now=129.0)
    assert "stalled" not in phases(watched.store, watched.run_id)
    watch.look(marked=100.0, now=131.0)
    assert phases(watched.store, watched.run_id) == ["stalled"] and watch.stalled
    watch.look(marked=100.0, now=200.0)  # said once
    assert phases(watched.store, watched.run_id) == ["stalled"]
    watch.look(marked=201.0, now=201.5)
    assert not watch.stalled  # moving again: its next progress event ends the phase


def test_the_default_stall_timeout_follows_the_runs_own_pauses_and_is_at_least_minutes(watched):
    watch, _ = watched()
    assert watch.stall_limit() == STALL_MIN_S
    for marked in (0.0, 1.0, 61.0, 62.0):  # one pause of 60 s (a checkpoint of a large model)
        watch.look(marked=marked, now=marked)
    assert watch.stall_limit() == 600.0
    before = watched(stall_timeout=None)[0]
    before.look(marked=None, now=10_000.0)  # not training yet (tokenising, loading a model): never stalled
    assert not before.stalled


def test_a_stop_the_worker_ignores_becomes_sigterm_then_sigkill_of_its_process_group(watched):
    watch, signals = watched(stall_timeout=1000)
    watch.look(marked=0.0, now=0.0)
    watched.store.request_stop(watched.run_id)
    watch.look(marked=0.0, now=1.0)
    watch.look(marked=0.0, now=STOP_GRACE_MIN_S)  # a healthy worker: its step and checkpoint first
    assert signals == []
    watch.look(marked=0.0, now=STOP_GRACE_MIN_S + 2)
    assert signals == [(4321, signal.SIGTERM)]
    watch.look(marked=0.0, now=STOP_GRACE_MIN_S + 2 + KILL_GRACE_S + 1)
    watch.look(marked=0.0, now=STOP_GRACE_MIN_S + 2 + KILL_GRACE_S + 60)
    assert signals == [(4321, signal.SIGTERM), (4321, signal.SIGKILL)]
    assert watch.forced_stop.startswith("SIGTERM: it had not stopped") and "SIGKILL" in watch.forced_stop


def test_a_stalled_run_is_ended_soon_after_a_stop_and_a_moving_one_is_left_to_stop_itself(watched):
    stalled, signals = watched(stall_timeout=5)
    stalled.look(marked=0.0, now=10.0)
    watched.store.request_stop(watched.run_id)
    stalled.look(marked=0.0, now=11.0)
    stalled.look(marked=0.0, now=12.0 + STALLED_STOP_GRACE_S)
    assert signals == [(4321, signal.SIGTERM)]
    moving, signals = watched(stall_timeout=1000)
    signals.clear()
    for second in range(0, 400, 2):  # still marking progress (its last steps, its checkpoint): no signal
        moving.look(marked=float(second), now=second + 0.5)
    assert signals == []


def test_a_stuck_collective_ends_with_the_stall_timeout_not_never(tmp_path):
    from ftkit.engine.arguments import training_arguments

    stalled = Config.from_dict({"resources": {"stall_timeout": 900}})
    assert training_arguments(stalled, tmp_path).ddp_timeout == 900
    assert training_arguments(Config(), tmp_path).ddp_timeout == 1800
