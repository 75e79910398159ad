"""Faults during training lose nothing: kill -9, a kernel restart, a crash mid-save, a full disk, four runs at once.

Faults are injected into the real worker process: a ``sitecustomize`` module (written to a temp
folder and put on PYTHONPATH) patches the Trainer inside ``python -m ftkit.engine.worker train`` only,
to slow steps down, to SIGKILL the worker half way through writing a checkpoint, or to fill the run
store's disk (a real small file system: a tmpfs or a loop image) at a chosen moment.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import ftkit
from ftkit.engine.adapters import load_for_inference
from ftkit.config import load_config
from ftkit.runs import start
from ftkit.runstore import DiskFull, RunStore, process_alive

from .conftest import python_hook, wait_for

pytestmark = pytest.mark.slow

FAULT_HOOK = '''
"""Fault injection for ftkit's reliability tests; active only in `python -m ftkit.engine.worker train`."""
import os, signal, sys, time

faults = dict(item.split("=", 1) for item in os.environ.get("FTKIT_TEST_FAULTS", "").split(",") if item)
if faults and "ftkit.engine.worker" in sys.orig_argv and "train" in sys.orig_argv:
    import transformers

    if "step_delay" in faults:
        step = transformers.Trainer.training_step

        def slow_step(self, *args, **kwargs):
            time.sleep(float(faults["step_delay"]))
            return step(self, *args, **kwargs)

        transformers.Trainer.training_step = slow_step
    if "hang_at_step" in faults:  # a deadlock (a data loader, a collective): step n never ends
        hung_step = transformers.Trainer.training_step

        def hang(self, *args, **kwargs):
            if self.state.global_step + 1 == int(faults["hang_at_step"]):
                if faults.get("ignore_term"):
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
                while True:
                    time.sleep(1)
            return hung_step(self, *args, **kwargs)

        transformers.Trainer.training_step = hang
    if "kill_in_save" in faults:  # SIGKILL during the n-th checkpoint save, after the weights are written
        save_optimizer = transformers.Trainer._save_optimizer_and_scheduler
        saves = []

        def dying_save(self, output_dir):
            saves.append(output_dir)
            if len(saves) == int(faults["kill_in_save"]):
                with open(faults["mark"], "w") as mark:
                    mark.write(output_dir)
                os.kill(os.getpid(), signal.SIGKILL)
            return save_optimizer(self, output_dir)

        transformers.Trainer._save_optimizer_and_scheduler = dying_save
    if "fill_disk" in faults:  # the disk of the run store fills up: at step n, or just before predictions are saved
        def fill_disk():
            fd = os.open(os.path.join(faults["disk"], "filler"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            try:
                while True:
                    os.write(fd, bytes(4096))
            except OSError:
                pass
            finally:
                os.close(fd)

        if faults["fill_disk"] == "predictions":
            from ftkit.tasks.ner import NerTask  # the task of the run this fault is injected into

            save_predictions = NerTask.save_predictions

            def save_on_a_full_disk(self, *args, **kwargs):
                fill_disk()
                return save_predictions(self, *args, **kwargs)

            NerTask.save_predictions = save_on_a_full_disk
        else:
            train_step = transformers.Trainer.training_step

            def step_then_fill(self, *args, **kwargs):
                if self.state.global_step + 1 == int(faults["fill_disk"]):
                    fill_disk()
                return train_step(self, *args, **kwargs)

            transformers.Trainer.training_step = step_then_fill
'''


@pytest.fixture
def inject(tmp_path, monkeypatch):
    """inject(step_delay=0.05, kill_in_save=2): faults for the next worker started from this test."""
    python_hook(tmp_path, monkeypatch, "fault-hook", FAULT_HOOK)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    def set_faults(**faults):
        if faults:
            monkeypatch.setenv("FTKIT_TEST_FAULTS", ",".join(f"{k}={v}" for k, v in faults.items()))
        else:
            monkeypatch.delenv("FTKIT_TEST_FAULTS", raising=False)

    return set_faults


def assert_store_readable_and_index_matches_events(store: RunStore, run_id: str, tmp_path: Path) -> None:
    """The index says what the run's folder says: a rebuild from the folder alone gives the same detail."""
    runs, _ = store.list_runs()
    assert run_id in [r["id"] for r in runs]
    live = store.get(run_id)
    copy = Path(tempfile.mkdtemp(prefix="rebuilt-", dir=tmp_path))
    shutil.copytree(store.root / run_id, copy / run_id, ignore=shutil.ignore_patterns("checkpoint-*", ".cache"))
    rebuilt = RunStore(copy).get(run_id)
    for key in ("status", "error", "progress", "metrics", "best_metric", "config"):
        assert rebuilt[key] == live[key], key
    assert [c["step"] for c in rebuilt["checkpoints"]] == [c["step"] for c in live["checkpoints"]]


def checkpoint_folders(run_dir: Path) -> list[str]:
    """Checkpoint folders on disk, whole or partial, by step."""
    found = [p.name for p in run_dir.iterdir() if p.is_dir() and "checkpoint-" in p.name]
    return sorted(found, key=lambda name: int(name.rsplit("-", 1)[1]))


def test_resume_after_kill_9_continues_from_the_last_checkpoint_to_the_same_final_step(tiny_config, inject, tmp_path):
    inject(step_delay=0.05)
    tiny_config["training"].update(epochs=1, max_steps=60, batch_size=2, save_steps=10, eval_steps=1000)
    run = start(tiny_config)
    wait_for(lambda: run.checkpoints and run.progress["step"] >= run.checkpoints[-1]["step"] + 3, timeout=180)
    last_checkpoint = run.checkpoints[-1]["step"]
    os.kill(run.info()["pid"], signal.SIGKILL)
    killed = time.monotonic()
    # Run.status reads run.json and Run.error the index, which follows it by a moment: wait for both.
    wait_for(lambda: run.status == "failed" and "killed by signal 9" in (run.error or ""), timeout=5, poll=0.05)
    assert time.monotonic() - killed < 5
    assert_store_readable_and_index_matches_events(run.store, run.id, tmp_path)

    inject()  # the resumed worker runs at full speed
    run.resume().wait(timeout=240)
    assert run.status == "completed", run.log_tail()
    assert run.progress["step"] == 60
    events, _ = run.events()
    resumed = [e["message"] for e in events if "resuming from" in (e.get("message") or "")]
    assert resumed == [f"resuming from {run.dir / f'checkpoint-{last_checkpoint}'}"]
    assert [e["status"] for e in events if e["type"] == "status"] == ["running", "failed", "queued", "running", "completed"]
    assert_store_readable_and_index_matches_events(run.store, run.id, tmp_path)


def test_a_hung_worker_shows_as_stalled_stop_ends_it_and_the_next_run_on_its_device_starts(tiny_config, inject):
    inject(hang_at_step=3, ignore_term=1)  # a deadlock that even ignores SIGTERM
    tiny_config["training"].update(epochs=1, max_steps=40, batch_size=2, save_steps=1000, eval_steps=1000)
    tiny_config["resources"] = {"stall_timeout": 4, "runs_per_device": 1, "devices": 1}
    tiny_config["training"]["device"] = "cpu"
    hung = start(tiny_config)
    wait_for(lambda: (hung.info()["phase"] or {}).get("name") == "stalled", timeout=120)
    assert hung.status == "running" and hung.progress["step"] == 2
    inject()
    queued = start({**tiny_config, "name": "next"})  # waits for the cpu the hung run holds
    time.sleep(2)
    assert queued.status == "queued"
    worker = hung.info()["pid"]
    hung.stop()
    hung.wait(timeout=60)  # stop always ends a run: SIGTERM ignored, then SIGKILL
    assert hung.status == "stopped" and "SIGTERM" in hung.error and "SIGKILL" in hung.error
    assert not process_alive(worker)
    queued.wait(timeout=240)  # its device slot was released
    assert queued.status == "completed"


def test_a_crash_while_writing_a_checkpoint_never_leaves_a_half_checkpoint(tiny_config, inject, tmp_path):
    mark = tmp_path / "killed-while-writing"
    inject(kill_in_save=2, mark=mark)
    tiny_config["training"].update(epochs=1, max_steps=30, batch_size=2, save_steps=10, eval_steps=1000)
    run = start(tiny_config)
    wait_for(lambda: run.status == "failed" and "killed by signal 9" in (run.error or ""), timeout=180)
    half_written = Path(mark.read_text())
    assert half_written.name == ".tmp-checkpoint-20"  # weights written, optimizer state not yet
    assert (half_written / "model.safetensors").exists() and not (half_written / "optimizer.pt").exists()
    assert not (run.dir / "checkpoint-20").exists()  # only a whole checkpoint ever gets its name
    assert [c["step"] for c in run.checkpoints] == [10]
    model, _ = load_for_inference(run.checkpoints[-1]["path"])  # the previous one still loads
    assert model.config.id2label[0] == "O"
    assert [c["step"] for c in RunStore(run.store.root).checkpoints(run.id)] == [10]

    inject()
    run.resume().wait(timeout=240)
    assert run.status == "completed", run.log_tail()
    assert run.progress["step"] == 30
    assert checkpoint_folders(run.dir) == ["checkpoint-20", "checkpoint-30"]  # the stale partial is gone


def _succeeds(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True).returncode == 0
    except OSError:  # no such command
        return False


def mount_small_disk(folder: Path, scratch: Path) -> str | None:
    """Mount a real 2 MiB file system on ``folder``: a tmpfs, else an ext4 image on a loop device (both
    need root); returns which, or None when neither can be had here."""
    image = str(scratch / "small-disk.img")
    attempts = {
        "tmpfs": [["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)]],
        "loop-mounted ext4 image": [["truncate", "-s", "2M", image], ["mkfs.ext4", "-q", "-F", "-m", "0", image],
                                    ["mount", "-o", "loop", image, str(folder)]],
    }
    return next((kind for kind, commands in attempts.items() if all(_succeeds(c) for c in commands)), None)


@pytest.fixture
def small_disk(tmp_path, request):
    """A real 2 MiB file system for the run store (the test output names which); where none can be
    mounted, the test is skipped, saying why: a full disk is never imitated by raising its error."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    kind = mount_small_disk(folder, tmp_path)
    if kind is None:
        pytest.skip("no small file system to fill: mounting a tmpfs or a loop image needs root (CAP_SYS_ADMIN)")
    request.node.user_properties.append(("small disk", f"a 2 MiB {kind}"))  # listed at the end (conftest.py)
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Write a file in ``folder`` until its disk refuses another page; delete it to give the space back."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(fd, bytes(4096))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_fails_every_store_write_with_ftkits_message_and_keeps_what_was_written(small_disk):
    store = RunStore(small_disk / "runs")
    run_id = store.create_run(load_config(name="full"))
    store.set_status(run_id, "running", pid=os.getpid())
    store.append_event(run_id, {"type": "progress", "step": 1, "total_steps": 10, "loss": 2.0})
    folder = store.run_dir(run_id)
    events, record, detail = (folder / "events.jsonl").read_bytes(), (folder / "run.json").read_bytes(), store.get(run_id)
    filler = fill(small_disk)

    with pytest.raises(DiskFull, match=rf"^no space left on device while writing events.jsonl in {folder} "):
        store.append_event(run_id, {"type": "log", "message": "x" * 8192})  # more than a page: a new one is needed
    assert (folder / "events.jsonl").read_bytes() == events  # the part that fitted is taken back
    with pytest.raises(DiskFull, match=rf"^no space left on device while writing run.json in {folder} "):
        store.set_record_fields(run_id, note="y" * 8192)
    assert (folder / "run.json").read_bytes() == record and not list(folder.glob(".run.json.*"))
    with pytest.raises(DiskFull, match=rf"^no space left on device while writing index.sqlite in {store.root} "):
        store.append_event(run_id, {"type": "progress", "step": 2, "total_steps": 10})  # fits in events.jsonl's last page
    with pytest.raises(DiskFull, match="^no space left on device while writing a new run in "):
        store.create_run(load_config(name="another"))
    assert [p.name for p in store.root.iterdir() if p.is_dir()] == [run_id]
    with pytest.raises(DiskFull, match="^no space left on device while writing index.sqlite"):
        store.get(run_id)  # even a reader: SQLite makes its shared-memory file again on each first open

    store.set_status(run_id, "failed", error="the disk is full")  # the run's reserve makes room for its end
    assert store.status(run_id) == ("failed", "the disk is full")
    filler.unlink()
    after = store.get(run_id)
    assert after["status"] == "failed" and after["progress"] == detail["progress"]
    assert store.rebuild_index() == 1 and store.get(run_id)["status"] == "failed"
    assert store.get(run_id)["progress"]["step"] == 2  # it reached events.jsonl, the truth, before the index failed


def events_whole(run) -> None:
    """Every line of the run's events.jsonl is a whole event: nothing torn by the full disk."""
    lines = (run.dir / "events.jsonl").read_bytes().splitlines()
    assert lines and all(isinstance(json.loads(line), dict) for line in lines)


def test_a_disk_that_fills_while_training_fails_the_run_with_ftkits_message(tiny_config, inject, small_disk, tmp_path):
    inject(step_delay=0.02, fill_disk=6, disk=small_disk)
    tiny_config["output"]["dir"] = str(small_disk)
    tiny_config["training"].update(epochs=1, max_steps=400, batch_size=2, logging_steps=1, save_steps=1000,
                                   eval_steps=1000)
    run = start(tiny_config)
    run.wait(timeout=240)
    assert run.status == "failed", run.log_tail()
    assert re.match(rf"no space left on device while writing (events\.jsonl in {run.dir}|index\.sqlite in {small_disk}) ",
                    run.error), run.error
    events_whole(run)
    (small_disk / "filler").unlink()
    assert_store_readable_and_index_matches_events(run.store, run.id, tmp_path)


def test_a_full_disk_when_predictions_are_saved_fails_the_run_and_leaves_no_half_file(tiny_config, inject, small_disk):
    inject(fill_disk="predictions", disk=small_disk)
    tiny_config["output"]["dir"] = str(small_disk)
    tiny_config["training"].update(epochs=1, max_steps=4, batch_size=8, save_steps=1000, eval_steps=1000)
    run = start(tiny_config)
    run.wait(timeout=240)
    assert run.status == "failed", run.log_tail()
    assert run.error.startswith(f"no space left on device while writing test.jsonl in {run.dir / 'predictions'} "), run.error
    assert not (run.dir / "predictions" / "test.jsonl").exists()
    assert run.metrics["test"], "the test evaluation before the predictions is kept"
    events_whole(run)


def test_a_full_disk_fails_the_run_with_a_clear_error_and_keeps_earlier_checkpoints(tiny_config, inject, small_disk):
    inject()
    tiny_config["output"]["dir"] = str(small_disk)
    tiny_config["training"].update(epochs=1, max_steps=400, batch_size=2, save_steps=4, eval_steps=1000,
                                   save_total_limit=None)
    run = start(tiny_config)
    run.wait(timeout=240)
    assert run.status == "failed", run.log_tail()
    assert "no space left" in run.error.lower(), run.error
    checkpoints = run.checkpoints
    assert checkpoints, "some checkpoints fit before the disk filled up"
    assert checkpoint_folders(run.dir) == [f"checkpoint-{c['step']}" for c in checkpoints]  # no partial left
    for checkpoint in checkpoints:
        load_for_inference(checkpoint["path"])
        assert (Path(checkpoint["path"]) / "optimizer.pt").exists()
    events, _ = run.events()
    assert events[-1]["type"] == "status" and events[-1]["status"] == "failed"


def test_four_runs_at_once_with_a_reader_lose_no_events_and_never_lock_the_database(tiny_config, inject, tmp_path):
    inject()
    tiny_config["training"].update(epochs=1, max_steps=12, batch_size=4, save_steps=4, eval_steps=6,
                                   logging_steps=1)
    tiny_config["resources"] = {"runs_per_device": 0}  # no queue: the four must write the store at the same time
    store = RunStore(tiny_config["output"]["dir"])
    reader_errors: list[BaseException] = []
    finished = threading.Event()

    def server_reading_the_store() -> None:
        offsets: dict[str, int] = {}
        while not finished.is_set():
            try:
                for summary in store.list_runs()[0]:
                    store.get(summary["id"])
                    _, offsets[summary["id"]] = store.read_events(summary["id"], offsets.get(summary["id"], 0))
                store.change_token()
            except BaseException as exc:  # noqa: BLE001 - any reader failure is the test's finding
                reader_errors.append(exc)
            time.sleep(0.02)

    reader = threading.Thread(target=server_reading_the_store)
    reader.start()
    try:
        runs = [start({**tiny_config, "name": f"parallel-{i}"}) for i in range(4)]
        for run in runs:
            run.wait(timeout=300)
    finally:
        finished.set()
        reader.join()
    assert reader_errors == []
    for run in runs:
        assert run.status == "completed", run.log_tail()
        assert "database is locked" not in (run.dir / "train.log").read_text()
        events, _ = run.events()
        assert [e["status"] for e in events if e["type"] == "status"] == ["running", "completed"]
        steps = [e["step"] for e in events if e["type"] == "log" and "loss" in e]
        assert steps == list(range(1, 13))  # logging_steps=1: every step's loss, none lost
        assert [e["step"] for e in events if e["type"] == "checkpoint"] == [4, 8, 12]
        assert [e["split"] for e in events if e["type"] == "eval"] == ["validation", "validation", "test"]
        assert_store_readable_and_index_matches_events(store, run.id, tmp_path)


def test_a_kernel_restart_leaves_the_run_training_and_the_new_kernel_reattaches(tiny_config, inject, runs_dir):
    from jupyter_client.manager import KernelManager

    inject(step_delay=0.1)
    tiny_config["training"].update(epochs=1, max_steps=40, batch_size=2, save_steps=1000, eval_steps=1000)
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env={**os.environ})
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        run_id = kernel_value(client, f"import ftkit\nrun = ftkit.train({tiny_config!r})", "run.id")
        run = ftkit.runs.get(run_id)
        wait_for(lambda: run.status == "running" and run.progress["step"] >= 2, timeout=120)
        worker = run.info()["pid"]

        manager.restart_kernel(now=True)
        client.wait_for_ready(timeout=60)
        assert process_alive(worker), "the worker must outlive the kernel"
        status, step = kernel_value(client, f"import ftkit\nagain = ftkit.runs.get({run_id!r})",
                                    "[again.status, again.progress['step']]")
        assert status == "running" and step >= 2
        final = kernel_value(client, "again.wait(240)", "[again.status, again.progress['step']]", timeout=300)
        assert final == ["completed", 40]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def kernel_value(client, code: str, expression: str, timeout: float = 120):
    """Run ``code`` in the kernel and return ``expression``'s value (printed as JSON)."""
    printed: list[str] = []

    def collect(message):
        if message["msg_type"] == "stream":
            printed.append(message["content"]["text"])

    reply = client.execute_interactive(f"{code}\nimport json as _json\nprint('FTKIT-VALUE' + _json.dumps({expression}))",
                                       timeout=timeout, store_history=False, output_hook=collect)
    assert reply["content"]["status"] == "ok", reply["content"]
    return json.loads("".join(printed).split("FTKIT-VALUE", 1)[1])
