"""Searches in a driver process of their own: trials in parallel through the device queue, pruned through the
normal stop, a search that outlives whoever started it, and a resume that loses no finished trial and starts no
trial twice (with the driver killed). A fake worker stands in for training: it reports a validation score that
the run's learning rate decides, one evaluation a step, and stops when asked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import ftkit.runs
from ftkit.config import load_config
from ftkit.runs import Run
from ftkit.runstore import RunStore
from ftkit.sweeps import Sweep, get, start_sweep
from ftkit.sweeps.driver import Driver
from ftkit.errors import ConfigError, FtkitError
from ftkit.sweeps.study import (DRIVER_LOCK, STORAGE_VARIABLE, hide_password, open_study, read_driver, storage_url,
                                trial_run_name)

from .conftest import python_hook, wait_for

pytestmark = pytest.mark.spawns

# The score peaks at learning rate 1e-3; a run named in FTKIT_TEST_BAD_RUNS scores 0.05 (what a pruner should stop).
FAKE_WORKER = '''
import math, os, sys, time
if "ftkit.engine.worker" in sys.orig_argv and "train" in sys.orig_argv:
    from pathlib import Path
    from ftkit.config import load_config
    from ftkit.runstore import RunStore

    run_dir = Path(sys.orig_argv[sys.orig_argv.index("train") + 1])
    store, run_id = RunStore(run_dir.parent), run_dir.name
    config = load_config(run_dir / "config.yaml")
    with open(os.environ["FTKIT_TEST_JOURNAL"], "a") as journal:
        journal.write(f"start {config.name} {time.time()}\\n")
    store.set_status(run_id, "running", pid=os.getpid())
    bad = config.name.rsplit("-", 1)[-1] in os.environ.get("FTKIT_TEST_BAD_RUNS", "").split(",")
    score = 0.05 if bad else max(0.1, 0.9 - abs(math.log10(config.training.learning_rate or 5e-5) + 3) / 4)
    steps = int(os.environ.get("FTKIT_TEST_STEPS", "4"))
    for step in range(1, steps + 1):
        time.sleep(float(os.environ.get("FTKIT_TEST_STEP_S", "0.2")))
        if store.stop_requested(run_id):
            break
        store.append_event(run_id, {"type": "eval", "split": "validation", "step": step, "best_metric_name": "f1",
                                    "metrics": {"f1": score * (0.5 + step / (2 * steps))}})
    stopped = store.stop_requested(run_id)
    with open(os.environ["FTKIT_TEST_JOURNAL"], "a") as journal:
        journal.write(f"end {config.name} {time.time()}\\n")
    store.set_status(run_id, "stopped" if stopped else "completed")
    os._exit(0)
if "ftkit.sweeps.driver" in sys.orig_argv and os.environ.get("FTKIT_TEST_START_FAILS"):
    import ftkit.runs
    from ftkit.errors import RunError

    def start(config):
        raise RunError(os.environ["FTKIT_TEST_START_FAILS"])

    ftkit.runs.start = start
'''


@pytest.fixture
def journal(tmp_path, monkeypatch):
    """The fake worker for every run (and every driver) this test starts; returns a reader of its journal lines."""
    python_hook(tmp_path, monkeypatch, "fake-worker", FAKE_WORKER)
    path = tmp_path / "journal.txt"
    path.touch()
    monkeypatch.setenv("FTKIT_TEST_JOURNAL", str(path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return lambda: [line.split() for line in path.read_text().splitlines()]


@pytest.fixture
def base(tmp_path, runs_dir):
    train = tmp_path / "train.conll"
    train.write_text("EU B-ORG\nrejects O\n\n")
    config = load_config({"name": "fake", "task": "ner", "model": "never-loaded", "data": {"train": str(train)},
                          "training": {"device": "cpu"}, "resources": {"runs_per_device": 2},
                          "output": {"dir": str(runs_dir)}})
    yield config
    for folder in (runs_dir / ".sweeps").glob("*"):  # a failed test leaves a driver going: end it
        record = read_driver(folder)
        if record.get("pid") and ftkit.runs.process_alive(record["pid"], record.get("pid_started")):
            os.kill(record["pid"], signal.SIGKILL)
    store = RunStore(runs_dir)
    for row in store.list_runs()[0]:
        store.request_stop(row["id"])


SEARCH = {"training.learning_rate": "1e-5:1e-1:log"}


def overlapping(lines: list[list[str]]) -> int:
    """The most runs the journal shows running at one moment."""
    running, most = 0, 0
    for kind, *_ in sorted(lines, key=lambda line: float(line[2])):
        running += 1 if kind == "start" else -1
        most = max(most, running)
    return most


def test_a_search_runs_trials_in_parallel_in_its_own_driver_and_prunes_the_bad_ones(base, journal, monkeypatch):
    monkeypatch.setenv("FTKIT_TEST_BAD_RUNS", "7,8")
    monkeypatch.setenv("FTKIT_TEST_STEPS", "6")
    monkeypatch.setenv("FTKIT_TEST_STEP_S", "0.6")
    sweep = start_sweep(base, search=SEARCH, trials=8, name="lr", parallel=2, pruner="median", seed=0)
    driver = read_driver(sweep.folder)
    wait_for(lambda: read_driver(sweep.folder).get("pid"), timeout=30)
    assert read_driver(sweep.folder)["pid"] != os.getpid()  # not a thread of this process
    sweep.wait(timeout=240)
    summary = sweep.summary()
    assert summary["kind"] == "search" and summary["state"] == "finished"
    assert len(summary["runs"]) == 8 and overlapping(journal()) == 2
    by_name = {entry["name"]: entry for entry in summary["runs"]}
    assert {by_name["lr-7"]["status"], by_name["lr-8"]["status"]} == {"pruned"}
    assert Run(by_name["lr-8"]["id"], sweep.store).status == "stopped"  # through the normal stop
    assert all(by_name[f"lr-{i}"]["status"] in ("completed", "pruned") for i in range(1, 7))
    assert summary["best"]["value"] == max(entry["value"] for entry in summary["runs"] if entry["status"] == "completed")
    pruned = [t["state"] for t in sweep.trials()].count("pruned")
    assert pruned == [entry["status"] for entry in summary["runs"]].count("pruned") >= 2
    assert driver == {} or driver.get("state") in ("starting", "searching")


def test_a_search_outlives_the_process_that_started_it(base, journal, tmp_path):
    script = (f"import time; from ftkit.config import load_config; from ftkit.sweeps import start_sweep\n"
              f"start_sweep(load_config({base.to_dict()!r}), search={SEARCH!r}, trials=3, name='orphan', "
              f"parallel=1, seed=1)\nprint('started', flush=True)\ntime.sleep(600)\n")
    kernel = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert kernel.stdout.readline().strip() == "started"
    wait_for(lambda: journal(), timeout=60)
    kernel.kill()  # the kernel dies in the middle of the search
    kernel.wait()
    sweep = get("orphan", base.runs_dir)
    sweep.wait(timeout=120)
    assert sweep.state == "finished"
    assert [entry["status"] for entry in sweep.summary()["runs"]] == ["completed"] * 3
    assert overlapping(journal()) == 1  # --parallel 1: one trial after another


def test_resuming_a_search_whose_driver_was_killed_loses_no_trial_and_starts_none_twice(base, journal, monkeypatch):
    monkeypatch.setenv("FTKIT_TEST_STEPS", "5")
    monkeypatch.setenv("FTKIT_TEST_STEP_S", "0.8")
    sweep = start_sweep(base, search=SEARCH, trials=5, name="killed", parallel=2, pruner="none", seed=2)
    wait_for(lambda: any(t["state"] == "complete" for t in sweep.trials()), timeout=120)
    running = [t["number"] for t in sweep.trials() if t["state"] == "running"]
    os.kill(read_driver(sweep.folder)["pid"], signal.SIGKILL)  # the fault: the driver dies mid-search
    wait_for(lambda: sweep.state == "interrupted", timeout=30)
    finished_before = {t["number"]: t["value"] for t in sweep.trials() if t["state"] == "complete"}
    assert running  # trials in flight when it died: their runs go on without it
    sweep.resume()
    sweep.wait(timeout=240)
    assert sweep.state == "finished"
    started = [line[1] for line in journal() if line[0] == "start"]
    assert sorted(started) == [f"killed-{i}" for i in range(1, 6)]  # every trial's run started once
    trials = {t["number"]: t for t in sweep.trials()}
    assert len(trials) == 5 and all(t["state"] == "complete" for t in trials.values())
    assert all(trials[number]["value"] == value for number, value in finished_before.items())


def test_a_stopped_search_stops_its_trials_and_resumes_to_the_end(base, journal, monkeypatch):
    monkeypatch.setenv("FTKIT_TEST_STEPS", "20")
    sweep = start_sweep(base, search=SEARCH, trials=3, name="halted", parallel=1, pruner="none", seed=3)
    wait_for(lambda: journal(), timeout=60)
    sweep.stop()
    wait_for(lambda: sweep.state == "stopped", timeout=60)
    assert [entry["status"] for entry in sweep.summary()["runs"]] == ["stopped"]
    monkeypatch.setenv("FTKIT_TEST_STEPS", "2")
    sweep.resume().wait(timeout=120)
    assert sweep.state == "finished" and len(sweep.trials()) == 3


def test_a_driver_that_died_before_writing_down_its_run_finds_the_run_by_name(base, monkeypatch):
    """The fault injected in-process: a trial left running with no run id written, its run already started."""
    started = []
    monkeypatch.setattr(ftkit.runs, "start", lambda config: started.append(config) or pytest.fail("started twice"))
    sweep = Sweep("orphaned", store=RunStore(base.runs_dir))
    from ftkit.sweeps.study import spaces_record, write_spec
    from ftkit.sweeps.spaces import parse_search, setting_config

    spec = {"name": "orphaned", "config": base.to_dict(), "spaces": spaces_record(parse_search(SEARCH, base)),
            "trials": 1, "parallel": 1, "pruner": "none", "seed": 0, "storage": None, "direction": "maximize",
            "created": time.time()}
    write_spec(sweep.folder, spec)
    trial = open_study(sweep.folder, spec).ask()
    trial.suggest_float("training.learning_rate", 1e-5, 1e-1, log=True)
    store = RunStore(base.runs_dir)
    run_id = store.create_run(setting_config(base, {}, "orphaned", trial.number + 1))
    assert store.read_record(run_id)["name"] == trial_run_name("orphaned", trial.number)
    driver = Driver(sweep.folder)
    driver.take_up_unfinished()
    assert [flight.run.id for flight in driver.flights.values()] == [run_id] and not started


def test_a_failed_search_reaches_the_caller_of_wait_and_resumes_without_losing_its_trial(base, journal, monkeypatch):
    monkeypatch.setenv("FTKIT_TEST_START_FAILS", "no space left on device")  # the fault: runs.start raises in the driver
    sweep = start_sweep(base, search=SEARCH, trials=2, name="broken", pruner="none")
    with pytest.raises(FtkitError, match="the search failed: RunError: no space left on device"):
        sweep.wait(timeout=60)
    assert sweep.state == "failed" and sweep.summary()["error"] == "RunError: no space left on device"
    monkeypatch.delenv("FTKIT_TEST_START_FAILS")
    sweep.resume().wait(timeout=120)
    assert [t["state"] for t in sweep.trials()] == ["complete", "complete"]  # the first trial got its run after all


def test_one_driver_per_search(base, journal, monkeypatch):
    monkeypatch.setenv("FTKIT_TEST_STEPS", "20")
    sweep = start_sweep(base, search=SEARCH, trials=1, name="single", pruner="none")
    wait_for(lambda: read_driver(sweep.folder).get("pid"), timeout=30)
    second = subprocess.run([sys.executable, "-m", "ftkit.sweeps.driver", str(sweep.folder)], capture_output=True,
                            text=True, timeout=60)
    assert second.returncode == 1 and DRIVER_LOCK in second.stderr
    with pytest.raises(Exception, match="at work already"):
        sweep.resume()
    sweep.stop()
    sweep.wait(timeout=60)


def test_a_search_study_may_live_in_an_rdb_shared_between_machines(base, journal, tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path / 'study.db'}"
    sweep = start_sweep(base, search=SEARCH, trials=2, name="rdb", storage=url, pruner="none", seed=0).wait(timeout=120)
    study = optuna.load_study(study_name="rdb", storage=url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"] and sweep.spec["storage"] == url
    assert not (sweep.folder / "study.journal").exists()


def test_an_rdb_password_is_never_written_down_and_must_be_given_again(monkeypatch):
    url = "postgresql://me:s3cret@db.example:5432/optuna"
    written = hide_password(url)
    assert written == "postgresql://me:***@db.example:5432/optuna"
    spec = {"name": "shared", "storage": written}
    monkeypatch.delenv(STORAGE_VARIABLE, raising=False)
    with pytest.raises(ConfigError, match="give the URL again"):
        storage_url(spec)
    monkeypatch.setenv(STORAGE_VARIABLE, url)  # what the driver inherits from `start` or `resume --storage URL`
    assert storage_url(spec) == url


def test_hyperband_prunes_on_request(base, journal, monkeypatch):
    monkeypatch.setenv("FTKIT_TEST_BAD_RUNS", "3,4,5,6")
    sweep = start_sweep(base, search=SEARCH, trials=6, name="hb", parallel=2, pruner="hyperband", seed=0)
    sweep.wait(timeout=180)
    assert sweep.state == "finished" and sweep.spec["pruner"] == "hyperband"
    assert {entry["status"] for entry in sweep.summary()["runs"]} <= {"completed", "pruned"}


def test_the_cli_starts_follows_shows_stops_and_resumes_a_search(base, journal, tmp_path, capsys, monkeypatch):
    from ftkit.cli import main

    config = tmp_path / "base.yaml"
    config.write_text(base.to_yaml())
    search = ["--search", "training.learning_rate=1e-5:1e-1:log"]
    assert main(["sweep", str(config), "--optuna", "2", *search, "--parallel", "2", "--name", "cli", "--follow"]) == 0
    out = capsys.readouterr().out
    assert "cli-1: completed" in out and "cli-2: completed" in out and "best: cli-" in out
    assert main(["sweep", "--show", "cli", "--json"]) == 0
    assert [entry["status"] for entry in json.loads(capsys.readouterr().out)["runs"]] == ["completed"] * 2
    monkeypatch.setenv("FTKIT_TEST_STEPS", "50")
    assert main(["sweep", str(config), "--optuna", "3", *search, "--name", "halt"]) == 0
    assert "`ftkit sweep --show halt`" in capsys.readouterr().out
    wait_for(lambda: journal()[-1][:2] == ["start", "halt-1"], timeout=60)
    assert main(["sweep", "--stop", "halt"]) == 0
    wait_for(lambda: get("halt").state == "stopped", timeout=60)
    monkeypatch.setenv("FTKIT_TEST_STEPS", "2")
    assert main(["sweep", "--resume", "halt", "--follow"]) == 0
    assert "search: finished" in capsys.readouterr().out
    assert main(["sweep", "--show", "nope"]) == 2 and "no sweep 'nope'" in capsys.readouterr().err
