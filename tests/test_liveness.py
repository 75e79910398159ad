"""A run's liveness, across machines that share a store, and its one writer at a time.

A supervisor records its host, boot id and pids with their start times, holds the run's life lock
and touches a heartbeat. A reader on its machine checks the pids (a pid given to a later process
does not count); a reader elsewhere (played with FTKIT_HOST_ID) judges by the heartbeat alone.
`resume` is a compare-and-set: of two at once, one starts a supervisor.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from ftkit.config import load_config
from ftkit.errors import RunError
from ftkit.runs import Run, start
from ftkit.runstore import DIED_WITHOUT_REPORTING, RunBusy, RunStore, host_identity, process_start_time
from ftkit.runstore.layout import PROGRESS_MARK_FILE

from .conftest import wait_for

# What a supervisor does with the store before it starts a worker, in a process of its own.
HOLDER = """
import os, sys, time
from ftkit.runstore import RunStore

store = RunStore(sys.argv[1])
store.hold_run(sys.argv[2])
store.set_status(sys.argv[2], "running", pid=os.getpid())
print("holding", flush=True)
time.sleep(600)
"""


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


@pytest.fixture
def held_run(store):
    """A running run whose supervisor (a process of its own, on this machine) beats every 0.25 s."""
    run_id = store.create_run(load_config(name="held"))
    env = {k: v for k, v in os.environ.items() if k != "FTKIT_HOST_ID"}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(store.root), run_id], stdout=subprocess.PIPE,
                              text=True, env={**env, "FTKIT_HEARTBEAT_TIMEOUT": "1"})
    assert holder.stdout.readline().strip() == "holding"
    yield run_id, holder
    holder.kill()
    holder.wait()


def on_another_machine(monkeypatch, timeout: float) -> None:
    monkeypatch.setenv("FTKIT_HOST_ID", "another-machine")
    monkeypatch.setenv("FTKIT_HEARTBEAT_TIMEOUT", str(timeout))


def test_a_supervisor_records_its_machine_and_its_processes_with_their_start_times(store, held_run):
    run_id, holder = held_run
    record = store.read_record(run_id)
    assert record["host"] == socket.gethostname() and record["boot_id"] == host_identity()["boot_id"]
    assert record["supervisor_pid"] == record["pid"] == holder.pid
    assert record["supervisor_pid_started"] == record["pid_started"] == process_start_time(holder.pid)
    assert store.has_supervisor(run_id)
    assert store.status(run_id) == ("running", None)


def test_a_reader_on_another_machine_judges_by_the_heartbeat_and_says_how_long_it_has_been_silent(
        store, held_run, monkeypatch):
    run_id, holder = held_run
    on_another_machine(monkeypatch, 1)
    assert store.status(run_id) == ("running", None)
    os.kill(holder.pid, signal.SIGSTOP)  # the supervisor stalls: its process lives, its heartbeat stops
    try:
        wait_for(lambda: store.status(run_id)[0] == "failed", timeout=10, poll=0.1)
        error = store.status(run_id)[1]
        assert re.fullmatch(rf"no heartbeat for \d+ s from its supervisor or its training process on "
                            rf"{re.escape(socket.gethostname())} "
                            r"\(FTKIT_HEARTBEAT_TIMEOUT is 1 s\): presumed dead", error), error
        assert store.list_runs(status="failed")[1] == 1
        monkeypatch.delenv("FTKIT_HOST_ID")
        assert store.status(run_id) == ("running", None)  # on its own machine, its pids say it lives
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    monkeypatch.setenv("FTKIT_HOST_ID", "another-machine")
    wait_for(lambda: store.status(run_id) == ("running", None), timeout=10, poll=0.1)  # beating again
    assert [e["status"] for e in store.read_events(run_id)[0] if e["type"] == "status"] == ["running"]


def test_a_killed_supervisor_is_gone_at_once_on_its_machine_and_after_the_timeout_elsewhere(store, held_run, monkeypatch):
    run_id, holder = held_run
    holder.kill()
    holder.wait()
    assert store.status(run_id) == ("failed", DIED_WITHOUT_REPORTING)
    on_another_machine(monkeypatch, 3)
    assert store.status(run_id) == ("running", None)  # silent for less than 3 s: not yet judged
    wait_for(lambda: store.status(run_id)[0] == "failed", timeout=10, poll=0.1)
    assert store.status(run_id)[1].startswith("no heartbeat for 3 s from its supervisor")


def test_a_worker_still_training_keeps_its_run_alive_elsewhere_though_its_supervisor_died(store, held_run, monkeypatch):
    """A supervisor killed on its machine, its worker still training: another machine must not resume the run."""
    run_id, holder = held_run
    holder.kill()
    holder.wait()
    on_another_machine(monkeypatch, 2)
    mark = store.run_dir(run_id) / PROGRESS_MARK_FILE
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the worker's progress marks go on
        mark.touch()
        assert store.status(run_id) == ("running", None)
        time.sleep(0.2)
    store.append_event(run_id, {"type": "checkpoint", "step": 4, "checkpoint": "checkpoint-4"})
    mark.touch()
    with pytest.raises(RunBusy, match="is running already"):
        Run(run_id, store).resume()
    wait_for(lambda: store.status(run_id)[0] == "failed", timeout=10, poll=0.1)  # both silent: gone


def test_resume_from_another_machine_is_refused_while_the_run_beats(store, held_run, monkeypatch):
    run_id, _ = held_run
    store.append_event(run_id, {"type": "checkpoint", "step": 4, "checkpoint": "checkpoint-4"})
    on_another_machine(monkeypatch, 5)
    before = store.read_events(run_id)
    with pytest.raises(RunBusy, match="is running already"):
        Run(run_id, store).resume()
    assert store.read_events(run_id) == before


@pytest.mark.spawns
def test_a_second_supervisor_of_a_run_leaves_it_alone(store, held_run):
    run_id, holder = held_run
    before = store.read_events(run_id)
    second = subprocess.run([sys.executable, "-m", "ftkit.process.supervisor", str(store.run_dir(run_id))],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 1 and "already has a supervisor" in second.stderr, second.stderr
    assert store.read_events(run_id) == before and store.read_record(run_id)["supervisor_pid"] == holder.pid


def test_a_pid_the_system_gave_to_a_later_process_does_not_keep_a_run_alive(store, sleeper):
    run_id = store.create_run(load_config(name="reused"))
    store.set_status(run_id, "running", pid=sleeper.pid)
    assert store.status(run_id) == ("running", None)
    path = store.run_dir(run_id) / "run.json"
    record = json.loads(path.read_text())
    record["pid_started"] -= 1  # the run's worker started at another moment: this pid is someone else's now
    path.write_text(json.dumps(record))
    assert store.status(run_id) == ("failed", DIED_WITHOUT_REPORTING)
    assert store.list_runs()[0][0]["status"] == "failed"


def test_after_a_reboot_no_recorded_process_counts(store, sleeper):
    run_id = store.create_run(load_config(name="rebooted"))
    store.set_status(run_id, "running", pid=sleeper.pid)
    store.set_record_fields(run_id, host=host_identity()["host"], boot_id="an-earlier-boot", supervisor_pid=sleeper.pid)
    status, error = store.status(run_id)
    assert status == "failed" and error == f"{host_identity()['host']} has restarted since the run was running: its processes are gone"


def test_a_queued_run_that_no_supervisor_takes_up_fails_after_the_timeout(store, monkeypatch):
    monkeypatch.setenv("FTKIT_HEARTBEAT_TIMEOUT", "0.5")
    run_id = store.create_run(load_config(name="orphan"))
    assert store.status(run_id) == ("queued", None)
    time.sleep(0.6)
    status, error = store.status(run_id)
    assert status == "failed" and re.match(r"queued for \d+ s and no supervisor took it up", error), error
    assert store.list_runs(status="failed")[1] == 1
    assert store.read_events(run_id)[0] == []  # reported, not written


def test_a_bad_heartbeat_timeout_is_a_clear_error(store, monkeypatch):
    run_id = store.create_run(load_config(name="any"))
    monkeypatch.setenv("FTKIT_HEARTBEAT_TIMEOUT", "soon")
    with pytest.raises(RunError, match="FTKIT_HEARTBEAT_TIMEOUT must be a positive number of seconds, not 'soon'"):
        store.status(run_id)


@pytest.mark.slow
def test_a_supervisor_killed_before_its_worker_reports_fails_the_queued_run(tiny_config):
    run = start(tiny_config)
    supervisor = wait_for(lambda: run.store.read_record(run.id).get("supervisor_pid"), timeout=60, poll=0.01)
    os.killpg(supervisor, signal.SIGKILL)  # the supervisor and any worker it started (its process group)
    assert run.store.read_record(run.id)["status"] == "queued", "the worker reported before the kill"
    wait_for(lambda: run.status == "failed", timeout=5, poll=0.05)
    assert run.error == (f"its supervisor (pid {supervisor}) died before the training process reported "
                         "(killed, or out of memory)")


RESUMER = """
import sys, time
from ftkit.runs import Run
from ftkit.runstore import RunBusy, RunStore

run = Run(sys.argv[2], RunStore(sys.argv[1]))
while time.time() < float(sys.argv[3]):  # both callers go at the same moment
    time.sleep(0.001)
try:
    run.resume()
    print("resumed")
except RunBusy as exc:
    print(exc)
"""


@pytest.mark.slow
def test_two_resumes_in_two_processes_start_one_supervisor(store, tmp_path):
    run_id = store.create_run(load_config(name="twice", model=str(tmp_path / "no-such-model")))
    (store.run_dir(run_id) / "checkpoint-4").mkdir()
    store.append_event(run_id, {"type": "checkpoint", "step": 4, "checkpoint": "checkpoint-4"})
    store.set_status(run_id, "failed", error="killed")
    go = str(time.time() + 3)
    callers = [subprocess.Popen([sys.executable, "-c", RESUMER, str(store.root), run_id, go], stdout=subprocess.PIPE,
                                text=True) for _ in range(2)]
    answers = [caller.communicate(timeout=60)[0].strip() for caller in callers]
    assert answers.count("resumed") == 1, answers
    refused = next(answer for answer in answers if answer != "resumed")
    assert re.fullmatch(rf"run {run_id} is (queued|running) already: another resume \(or its first launch\) started it",
                        refused), answers
    run = Run(run_id, store).wait(timeout=120)  # the worker finds no model: the one attempt fails
    statuses = [e["status"] for e in store.read_events(run_id)[0] if e["type"] == "status"]
    assert statuses[:2] == ["failed", "queued"] and statuses.count("queued") == 1, statuses
    assert run.status == "failed"
