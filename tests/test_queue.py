"""The run queue per device: runs launched while their device is busy wait as queued, start in launch
order, spread over the GPUs; stop and delete work on a waiting run, and a dead waiter blocks no one.

The supervisors are real (`python -m ftkit.process.supervisor`); the worker is a stand-in
(a ``sitecustomize`` on PYTHONPATH takes over `python -m ftkit.engine.worker train` only) that
writes ``start <run> <CUDA_VISIBLE_DEVICES>`` to a journal, marks the run running, works until
$FTKIT_TEST_WORK_S pass or a stop is asked, writes ``end <run>`` and completes (or stops).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ftkit.config import load_config
from ftkit.runstore.queue import WAITING_PHASE, DeviceQueue, cpu_share, devices_needed, visible_devices
from ftkit.errors import ConfigError
from ftkit.runs import Run, start
from ftkit.runstore import RunStore, process_alive

from .conftest import python_hook, wait_for

FAKE_WORKER = '''
import os, sys, time
if "ftkit.engine.worker" in sys.orig_argv and "train" in sys.orig_argv:
    from pathlib import Path
    from ftkit.runstore import RunStore

    run_dir = Path(sys.orig_argv[sys.orig_argv.index("train") + 1])
    store, run_id = RunStore(run_dir.parent), run_dir.name
    with open(os.environ["FTKIT_TEST_JOURNAL"], "a") as journal:
        journal.write(f"start {run_id} {os.environ.get('CUDA_VISIBLE_DEVICES', '-')}\\n")
    store.set_status(run_id, "running", pid=os.getpid())
    deadline = time.monotonic() + float(os.environ.get("FTKIT_TEST_WORK_S", "60"))
    while time.monotonic() < deadline and not store.stop_requested(run_id):
        time.sleep(0.05)
    with open(os.environ["FTKIT_TEST_JOURNAL"], "a") as journal:
        journal.write(f"end {run_id}\\n")
    store.set_status(run_id, "stopped" if store.stop_requested(run_id) else "completed")
    os._exit(0)
'''


@pytest.fixture
def journal(tmp_path, monkeypatch):
    """The fake worker for every run this test starts; returns a reader of its journal lines."""
    python_hook(tmp_path, monkeypatch, "fake-worker", FAKE_WORKER)
    path = tmp_path / "journal.txt"
    path.touch()
    monkeypatch.setenv("FTKIT_TEST_JOURNAL", str(path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return lambda: path.read_text().splitlines()


@pytest.fixture
def config(tmp_path, runs_dir):
    train = tmp_path / "train.conll"
    train.write_text("EU B-ORG\nrejects O\n\n")
    yield {"task": "ner", "model": "never-loaded", "data": {"train": str(train)},
           "training": {"device": "cpu"}, "output": {"dir": str(runs_dir)}}
    store = RunStore(runs_dir)  # a failed test leaves its runs going: stop them, then end their supervisors
    for run in store.list_runs()[0]:
        store.request_stop(run["id"])
    try:
        wait_for(lambda: not supervisors(runs_dir), timeout=10)
    except TimeoutError:
        for pid in supervisors(runs_dir):
            os.kill(pid, signal.SIGKILL)


def supervisors(runs_dir: Path, run_dir: Path | None = None) -> list[int]:
    """Pids of the live supervisors of runs in ``runs_dir`` (of ``run_dir`` alone when given)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"ftkit.process.supervisor" in argv and any(str(run_dir or runs_dir).encode() in part for part in argv):
            if process_alive(int(proc.name)):
                found.append(int(proc.name))
    return found


def phases(run: Run) -> list[dict]:
    return [e for e in run.events()[0] if e["type"] == "phase"]


def statuses(run: Run) -> list[str]:
    return [e["status"] for e in run.events()[0] if e["type"] == "status"]


def waiting(run: Run) -> bool:
    return run.status == "queued" and (run.info()["phase"] or {}).get("name") == WAITING_PHASE


# ----- which devices, and how many a run takes ----------------------------------------------------


@pytest.mark.parametrize("visible, expected", [
    ("0,1", ["cuda:0", "cuda:1"]),
    ("GPU-5e1f,GPU-77aa", ["cuda:GPU-5e1f", "cuda:GPU-77aa"]),
    ("2,-1,3", ["cuda:2"]),  # CUDA stops at the first invalid entry
    ("", ["cpu"]),
    ("-1", ["cpu"]),
])
def test_the_visible_gpus_are_read_from_cuda_visible_devices_without_torch(visible, expected, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert visible_devices(load_config()) == expected


def test_a_cpu_run_queues_on_the_cpu_whatever_gpus_there_are(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert visible_devices(load_config(training={"device": "cpu"})) == ["cpu"]


def test_a_run_takes_one_gpu_per_training_process_and_auto_takes_them_all():
    gpus = ["cuda:0", "cuda:1", "cuda:2"]
    assert devices_needed(load_config(), gpus) == 1
    assert devices_needed(load_config(resources={"devices": 2}), gpus) == 2
    assert devices_needed(load_config(resources={"devices": "auto"}), gpus) == 3
    assert devices_needed(load_config(resources={"devices": 4}), ["cpu"]) == 1  # processes on CPU share it


def test_runs_per_device_is_a_resources_field_and_refuses_negatives():
    assert load_config().resources.runs_per_device == 1
    assert load_config(overrides=["resources.runs_per_device=0"]).resources.runs_per_device == 0
    with pytest.raises(ConfigError, match="'resources.runs_per_device' must be 0 \\(no queue\\) or a positive integer"):
        load_config(resources={"runs_per_device": -1})


# ----- slots: how runs share and spread over devices ---------------------------------------------


def test_on_two_gpus_three_one_gpu_runs_take_one_each_and_the_third_waits(tmp_path):
    queue, gpus = DeviceQueue(tmp_path), ["cuda:0", "cuda:1"]
    first, second = queue.take_slots(gpus, 1, 1), queue.take_slots(gpus, 1, 1)
    assert (first.devices, second.devices) == (["cuda:0"], ["cuda:1"])
    assert queue.take_slots(gpus, 1, 1) is None
    assert second.worker_env()["CUDA_VISIBLE_DEVICES"] == "1"
    for handle in first.handles:  # the first run ends
        handle.close()
    assert queue.take_slots(gpus, 1, 1).devices == ["cuda:0"]


def test_a_two_gpu_run_waits_until_both_gpus_are_free_and_holds_nothing_meanwhile(tmp_path):
    queue, gpus = DeviceQueue(tmp_path), ["cuda:0", "cuda:1"]
    one = queue.take_slots(gpus, 1, 1)
    assert queue.take_slots(gpus, 2, 1) is None
    other = queue.take_slots(gpus, 1, 1)
    assert other.devices == ["cuda:1"]  # the waiting two-GPU run kept nothing
    for handle in one.handles:
        handle.close()
    assert queue.take_slots(gpus, 2, 1) is None  # cuda:1 is still in use
    assert DeviceQueue(tmp_path / "other").take_slots(gpus, 2, 1).worker_env()["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_runs_sharing_the_cpu_each_take_their_share_of_its_cores_as_they_come_and_go(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    queue = DeviceQueue(tmp_path)
    first = queue.take_slots(["cpu"], 1, 2)
    assert first.worker_env()["OMP_NUM_THREADS"] == "8" and cpu_share(tmp_path, 2) == 8  # alone: every core
    second = queue.take_slots(["cpu"], 1, 2)
    assert second.worker_env()["OMP_NUM_THREADS"] == "4" and cpu_share(tmp_path, 2) == 4  # two: half each
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # fewer asked for already: kept
    assert second.worker_env()["OMP_NUM_THREADS"] == "2"
    for handle in first.handles:  # the first run ends: the other may take every core again
        handle.close()
    assert cpu_share(tmp_path, 2) == 8
    assert DeviceQueue(tmp_path / "alone").take_slots(["cpu"], 1, 1).worker_env() is None  # no sharing: untouched


def test_a_training_run_follows_its_share_of_the_cpu(tmp_path, monkeypatch):
    import torch

    from ftkit.engine.training import CpuShare

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    before = torch.get_num_threads()
    queue, share = DeviceQueue(tmp_path), CpuShare(tmp_path, 2)
    held = [queue.take_slots(["cpu"], 1, 2) for _ in range(2)]
    try:
        share.on_step_end(None, None, None)
        assert torch.get_num_threads() == 1
        for handle in held[1].handles:
            handle.close()
        share.on_step_end(None, None, None)
        assert torch.get_num_threads() == 1  # looked at every few seconds, not every step
        share.next_check = 0.0
        share.on_step_end(None, None, None)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_machines_that_share_a_store_each_queue_for_their_own_gpus(tmp_path, monkeypatch):
    gpus = ["cuda:0"]
    monkeypatch.setenv("FTKIT_HOST_ID", "node-a")
    on_a = DeviceQueue(tmp_path).take_slots(gpus, 1, 1)
    assert on_a is not None and DeviceQueue(tmp_path).take_slots(gpus, 1, 1) is None  # node-a's cuda:0 is taken
    monkeypatch.setenv("FTKIT_HOST_ID", "node-b")
    on_b = DeviceQueue(tmp_path).take_slots(gpus, 1, 1)
    assert on_b is not None and on_b.devices == ["cuda:0"]  # node-b's own cuda:0, not behind node-a's
    assert {path.parent.name for path in (tmp_path / ".devices").rglob("*.lock")} == {"node-a", "node-b"}


def test_with_two_runs_per_device_runs_go_to_the_least_loaded_gpu_first(tmp_path):
    queue, gpus = DeviceQueue(tmp_path), ["cuda:0", "cuda:1"]
    held = [queue.take_slots(gpus, 1, 2) for _ in range(4)]  # kept: a hold dropped is a run ended
    assert [hold.devices for hold in held] == [["cuda:0"], ["cuda:1"], ["cuda:0"], ["cuda:1"]]
    assert queue.take_slots(gpus, 1, 2) is None


# ----- tickets: the order of the line ------------------------------------------------------------


def test_tickets_count_the_live_waiters_ahead_that_want_the_same_devices(tmp_path):
    queue = DeviceQueue(tmp_path)
    first, other, dead, me = (queue.take_ticket(name) for name in ("first", "other", "dead", "me"))
    for ticket, devices in ((first, ["cuda:0"]), (other, ["cpu"]), (dead, ["cuda:0", "cuda:1"]), (me, ["cuda:1", "cuda:0"])):
        ticket.announce(devices)
    assert queue.ahead_of(first) == 0 and queue.ahead_of(other) == 0  # nobody wanting the cpu before it
    assert queue.ahead_of(me) == 2
    dead.handle.close()  # its waiter died: nobody holds the ticket any more
    assert queue.ahead_of(me) == 1 and not dead.path.exists()
    first.leave()
    assert queue.ahead_of(me) == 0


def test_a_waiter_that_has_not_said_what_it_wants_is_waited_for(tmp_path):
    queue = DeviceQueue(tmp_path)
    silent, me = queue.take_ticket("silent"), queue.take_ticket("me")
    me.announce(["cpu"])
    assert queue.ahead_of(me) == 1
    silent.leave()
    assert queue.ahead_of(me) == 0


# ----- the queue with real supervisors ------------------------------------------------------------


@pytest.mark.spawns
def test_runs_launched_at_once_wait_as_queued_and_start_one_at_a_time_in_launch_order(config, journal, monkeypatch):
    monkeypatch.setenv("FTKIT_TEST_WORK_S", "1")
    runs = [start({**config, "name": f"queued-{i}"}) for i in range(3)]
    wait_for(lambda: runs[0].status == "running", timeout=30)
    wait_for(lambda: waiting(runs[1]) and waiting(runs[2]), timeout=30)
    for run in runs:
        run.wait(timeout=60)
    ids = [run.id for run in runs]
    assert journal() == [line for run_id in ids for line in (f"start {run_id} -", f"end {run_id}")]
    for run in runs:
        assert statuses(run) == ["running", "completed"], run.log_tail()
    ahead = [e["ahead"] for e in phases(runs[2]) if e["phase"] == WAITING_PHASE]
    assert ahead[0] >= 1 and ahead == sorted(ahead, reverse=True) and ahead[-1] == 0
    assert phases(runs[2])[-1]["phase"] == "starting"  # the supervisor's, once the device was free
    assert not list((Path(config["output"]["dir"]) / ".devices" / "queue").glob("*.ticket"))


@pytest.mark.spawns
def test_on_two_gpus_runs_spread_over_them_and_the_third_gets_the_first_one_freed(config, journal, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    config["training"]["device"] = "auto"
    runs = [start({**config, "name": f"gpu-{i}"}) for i in range(3)]
    wait_for(lambda: runs[0].status == runs[1].status == "running", timeout=30)
    wait_for(lambda: waiting(runs[2]) and runs[2].info()["phase"]["detail"] == "(cuda:0, cuda:1 in use)", timeout=30)
    assert sorted(journal()) == sorted([f"start {runs[0].id} 0", f"start {runs[1].id} 1"])
    runs[1].stop(wait=True, timeout=30)
    wait_for(lambda: runs[2].status == "running", timeout=30)
    assert journal()[-1] == f"start {runs[2].id} 1"
    for run in (runs[0], runs[2]):
        run.stop(wait=True, timeout=30)


@pytest.mark.spawns
def test_stopping_a_queued_run_records_it_stopped_without_ever_starting_a_worker(config, journal):
    busy = start({**config, "name": "busy"})
    queued = start({**config, "name": "queued"})
    wait_for(lambda: busy.status == "running" and waiting(queued), timeout=30)
    queued.stop(wait=True, timeout=30)
    assert statuses(queued) == ["stopped"]
    assert busy.status == "running" and journal() == [f"start {busy.id} -"]
    wait_for(lambda: not supervisors(queued.store.root, queued.dir), timeout=10)
    busy.stop(wait=True, timeout=30)


@pytest.mark.spawns
def test_deleting_a_queued_run_ends_its_waiting_supervisor_quietly(config, journal):
    busy = start({**config, "name": "busy"})
    store = RunStore(config["output"]["dir"])
    run_id = store.create_run(load_config(config))  # its supervisor started by hand, to read how it ends
    supervisor = subprocess.Popen([sys.executable, "-m", "ftkit.process.supervisor", str(store.run_dir(run_id))],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: busy.status == "running" and waiting(Run(run_id, store)), timeout=30)
    store.delete_run(run_id)
    output, _ = supervisor.communicate(timeout=30)
    assert (supervisor.returncode, output) == (0, "")
    assert not list((store.root / ".devices" / "queue").glob(f"*-{run_id}.ticket"))
    assert journal() == [f"start {busy.id} -"]
    busy.stop(wait=True, timeout=30)


@pytest.mark.spawns
def test_a_waiter_killed_with_sigkill_does_not_block_the_runs_behind_it(config, journal):
    busy = start({**config, "name": "busy"})
    killed = start({**config, "name": "killed"})
    behind = start({**config, "name": "behind"})
    wait_for(lambda: busy.status == "running" and waiting(killed) and waiting(behind), timeout=30)
    (pid,) = supervisors(killed.store.root, killed.dir)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not process_alive(pid), timeout=10)
    busy.stop(wait=True, timeout=30)
    wait_for(lambda: behind.status == "running", timeout=30)
    assert journal() == [f"start {busy.id} -", f"end {busy.id}", f"start {behind.id} -"]
    behind.stop(wait=True, timeout=30)
