"""A damaged or contended store says so and recovers from the run folders: garbage or truncated index, torn
lines, torn run.json, a writer killed between run.json and the index, many writers at once, deletes that
must not happen (an active run, a link out of the store) or fail half way, and ranks that never open the index."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path

import pytest

from ftkit.config import load_config
from ftkit.errors import RunError
from ftkit.runs import Run
from ftkit.runstore import RunBusy, RunStore


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


def finished_run(store: RunStore, name: str, status: str = "completed", steps: int = 30) -> str:
    """A run as a worker leaves it: progress, evals and checkpoints, then a final status."""
    run_id = store.create_run(load_config(name=name))
    store.set_status(run_id, "running", pid=os.getpid())
    for step in range(1, steps + 1):
        store.append_event(run_id, {"type": "progress", "step": step, "total_steps": steps, "loss": 1 / step})
        if step % 10 == 0:
            store.append_event(run_id, {"type": "eval", "split": "validation", "step": step,
                                        "metrics": {"f1": step / 100}, "best_metric_name": "f1"})
            store.append_event(run_id, {"type": "checkpoint", "step": step, "path": f"checkpoint-{step}",
                                        "metrics": {"f1": step / 100}, "kept": [s for s in (step - 10, step) if s]})
    store.set_status(run_id, status, **({"error": "boom"} if status == "failed" else {}))
    return run_id


def comparable(detail: dict) -> dict:
    return {k: v for k, v in detail.items() if k not in ("duration", "dir")}


def cli(store: RunStore, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ftkit.cli", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FTKIT_RUNS_DIR": str(store.root)})


def shrink_index(store: RunStore, keep: float) -> None:
    """Fold the WAL into the index file, then cut the file to a fraction of its size."""
    with closing(sqlite3.connect(store.index_path)) as db:  # closed, or its lock would outlive the damage
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for suffix in ("-wal", "-shm"):
        Path(f"{store.index_path}{suffix}").unlink(missing_ok=True)
    data = store.index_path.read_bytes()
    store.index_path.write_bytes(data[: int(len(data) * keep)])


def damage_index(store: RunStore, damage: str) -> None:
    if damage == "garbage":
        store.index_path.write_bytes(os.urandom(8192))
        for suffix in ("-wal", "-shm"):
            Path(f"{store.index_path}{suffix}").unlink(missing_ok=True)
    elif damage == "garbage past the first page":  # the schema reads; the tables' pages do not
        shrink_index(store, 1)
        with open(store.index_path, "r+b") as index:
            index.seek(4096)
            index.write(os.urandom(store.index_path.stat().st_size - 4096))
    elif damage == "empty":
        shrink_index(store, 0)
    elif damage == "truncated to 1 byte":
        shrink_index(store, 0)
        store.index_path.write_bytes(b"S")
    else:
        shrink_index(store, float(damage.split()[-1].rstrip("%")) / 100)


DAMAGES = ["garbage", "garbage past the first page", "truncated to 50%", "truncated to 10%", "truncated to 1 byte",
           "empty"]


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.spawns
def test_a_damaged_index_is_rebuilt_from_the_run_folders_when_next_read(store, damage):
    ids = [finished_run(store, f"run-{i}", status) for i, status in enumerate(["completed", "failed", "stopped"])]
    before = {run_id: comparable(store.get(run_id)) for run_id in ids}
    damage_index(store, damage)

    assert RunStore(store.root).list_runs()[1] == 3
    assert {run_id: comparable(store.get(run_id)) for run_id in ids} == before
    with closing(sqlite3.connect(store.index_path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    shown = cli(store, "runs", "--rebuild-index", "--json")
    assert shown.returncode == 0, shown.stderr
    assert {run_id: comparable(store.get(run_id)) for run_id in ids} == before


@pytest.mark.parametrize("damage", ["garbage", "garbage past the first page", "empty"])
def test_a_store_already_open_in_a_server_heals_an_index_damaged_under_it(store, damage):
    ids = [finished_run(store, f"run-{i}") for i in range(2)]
    damage_index(store, damage)
    runs, total = store.list_runs()  # the same RunStore object, opened before the damage
    assert total == 2 and {r["id"] for r in runs} == set(ids)
    assert store.status_counts()["completed"] == 2


@pytest.mark.parametrize("damage", ["garbage", "garbage past the first page", "empty"])
def test_a_training_run_goes_on_recording_when_the_index_is_damaged(store, damage):
    run_id = store.create_run(load_config(name="live"))
    store.set_status(run_id, "running", pid=os.getpid())
    store.append_event(run_id, {"type": "progress", "step": 1, "total_steps": 3, "loss": 1.0})
    damage_index(store, damage)
    store.append_event(run_id, {"type": "eval", "split": "validation", "step": 2, "metrics": {"f1": 0.5},
                                "best_metric_name": "f1"})
    store.set_status(run_id, "completed")
    detail = store.get(run_id)
    assert detail["status"] == "completed" and detail["metrics"]["validation"]["f1"] == 0.5
    assert detail["best_metric"]["value"] == 0.5


def test_a_rebuild_replaces_the_index_whole_so_that_no_damage_survives_it(store):
    ids = [finished_run(store, f"run-{i}") for i in range(2)]
    before = {run_id: comparable(store.get(run_id)) for run_id in ids}
    damage_index(store, "garbage past the first page")
    assert store.rebuild_index() == 2
    with closing(sqlite3.connect(store.index_path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert {run_id: comparable(store.get(run_id)) for run_id in ids} == before
    assert not [p.name for p in store.root.iterdir() if p.name.startswith(".index.sqlite")]  # no build left over


def test_a_torn_last_event_line_is_skipped_and_the_next_event_starts_a_fresh_line(store):
    run_id = finished_run(store, "torn", status="stopped")
    events_path = store.run_dir(run_id) / "events.jsonl"
    complete, offset = store.read_events(run_id)
    with open(events_path, "ab") as f:
        f.write(b'{"t": 1, "type": "progress", "st')  # the writer was killed mid-line
    assert store.read_events(run_id) == (complete, offset)
    assert store.get(run_id)["status"] == "stopped"

    store.set_status(run_id, "queued")  # a resume appends after the torn line
    store.append_event(run_id, {"type": "log", "message": "after the crash"})
    events, _ = store.read_events(run_id)
    assert events[:len(complete)] == complete
    assert [e.get("message") or e.get("status") for e in events[len(complete):]] == ["queued", "after the crash"]
    rebuilt = RunStore(store.root)
    rebuilt.rebuild_index()
    assert rebuilt.get(run_id)["status"] == "queued"


@pytest.mark.spawns
def test_a_torn_run_json_names_the_file_and_the_fix_and_the_other_runs_stay_listable(store):
    damaged = finished_run(store, "damaged", status="failed")
    healthy = finished_run(store, "healthy")
    record_path = store.run_dir(damaged) / "run.json"
    record_path.write_text(record_path.read_text()[:25])

    with pytest.raises(RunError) as error:
        Run(damaged, store).status
    assert str(record_path) in str(error.value) and "--rebuild-index" in str(error.value)
    runs, total = store.list_runs()
    assert total == 2 and {r["id"] for r in runs} == {damaged, healthy}
    assert store.get(healthy)["status"] == "completed"
    shown = cli(store, "show", damaged)
    assert "Traceback" not in shown.stderr

    assert store.rebuild_index() == 2  # the folder alone recreates run.json
    record = json.loads(record_path.read_text())
    assert record["id"] == damaged and record["name"] == "damaged"
    assert record["status"] == "failed" and record["error"] == "boom"
    assert Run(damaged, store).status == "failed"


def test_a_torn_run_json_of_a_running_run_does_not_break_listing(store):
    run_id = store.create_run(load_config(name="live"))
    store.set_status(run_id, "running", pid=os.getpid())
    (store.run_dir(run_id) / "run.json").write_text('{"id": "')
    runs, _ = store.list_runs()  # the liveness check skips what it cannot read
    assert [r["status"] for r in runs] == ["running"]
    store.rebuild_index()
    assert store.get(run_id)["status"] == "running"  # its worker (this process) is alive


def test_garbage_lines_in_events_never_break_reading_or_rebuilding(store):
    run_id = finished_run(store, "noisy")
    before = comparable(store.get(run_id))
    with open(store.run_dir(run_id) / "events.jsonl", "ab") as f:
        f.write(b"\x00\xff not json\n[1, 2]\n\"text\"\n{}\n\n")
    events, _ = store.read_events(run_id)
    assert events[-1]["status"] == "completed"
    store.rebuild_index()
    assert comparable(store.get(run_id)) == before


# ----- run.json and the index: a writer dies between them, or many write at once ----------------------

# Run in a process of its own: the store's writer, killed after run.json and before the index.
CRASH_BEFORE_THE_INDEX = """
import os, signal, sys
import ftkit.runstore.store
from ftkit.runstore import RunStore

ftkit.runstore.store.apply_event = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
RunStore(sys.argv[1]).set_status(sys.argv[2], sys.argv[3])
"""


def crash_while_setting_status(store: RunStore, run_id: str, status: str) -> None:
    crashed = subprocess.run([sys.executable, "-c", CRASH_BEFORE_THE_INDEX, str(store.root), run_id, status])
    assert crashed.returncode == -9
    assert store.read_record(run_id)["status"] == status


def indexed_status(store: RunStore, run_id: str) -> str:
    with closing(sqlite3.connect(store.index_path)) as db:
        return db.execute("SELECT status FROM runs WHERE id=?", (run_id,)).fetchone()[0]


def test_an_index_row_left_running_by_a_writer_that_died_is_repaired_from_run_json(store):
    run_id = store.create_run(load_config(name="finishing"))
    store.set_status(run_id, "running", pid=os.getpid())
    store.append_event(run_id, {"type": "progress", "step": 7, "total_steps": 7})
    crash_while_setting_status(store, run_id, "completed")
    assert indexed_status(store, run_id) == "running"

    runs, _ = store.list_runs()  # a reader sees the disagreement: run.json wins
    assert runs[0]["status"] == "completed" and runs[0]["progress"]["step"] == 7
    assert indexed_status(store, run_id) == "completed"
    rebuilt = RunStore(store.root)
    rebuilt.rebuild_index()
    assert comparable(rebuilt.get(run_id)) == comparable(store.get(run_id))


def test_an_index_row_left_final_when_a_resume_died_is_repaired_when_the_run_is_read(store):
    run_id = finished_run(store, "resuming", status="failed")
    crash_while_setting_status(store, run_id, "queued")
    assert indexed_status(store, run_id) == "failed"
    assert store.get(run_id)["status"] == "queued"
    assert indexed_status(store, run_id) == "queued"
    assert store.list_runs(status="queued")[1] == 1


def test_run_json_written_from_many_threads_at_once_loses_no_update_and_leaves_no_temporary_file(store):
    run_id = store.create_run(load_config(name="busy"))

    def write(thread: int) -> None:
        for n in range(20):
            store.set_record_fields(run_id, **{f"field_{thread}_{n}": n})

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    record = store.read_record(run_id)
    assert all(record[f"field_{t}_{n}"] == n for t in range(8) for n in range(20))
    assert not [p.name for p in store.run_dir(run_id).iterdir() if p.name.endswith(".tmp")]


# ----- deletes: never under an active run, never through a link, files before index rows ------------------


def with_checkpoint_folders(store: RunStore, run_id: str) -> list[Path]:
    folders = [store.run_dir(run_id) / c["name"] for c in store.checkpoints(run_id)]
    for folder in folders:
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"\0" * 64)
    return folders


def test_a_queued_or_running_runs_checkpoints_are_not_deleted(store, sleeper):
    running = finished_run(store, "training", status="stopped")
    with_checkpoint_folders(store, running)
    store.set_status(running, "running", pid=sleeper.pid)  # resumed: its worker lives
    queued = finished_run(store, "waiting", status="stopped")
    with_checkpoint_folders(store, queued)
    store.set_status(queued, "queued")  # resumed: its supervisor is on its way
    for run_id, status in ((running, "running"), (queued, "queued")):
        with pytest.raises(RunBusy, match=rf"run '{run_id}' is {status}: its checkpoints are in use"):
            store.delete_checkpoint(run_id, 30)
        assert (store.run_dir(run_id) / "checkpoint-30").is_dir()
        assert [c["step"] for c in store.checkpoints(run_id)] == [20, 30]
    with pytest.raises(RunBusy, match="is running; stop it first"):
        store.delete_run(running)
    assert store.get(running)["status"] == "running"


def test_deletes_never_act_through_a_symlinked_run_or_checkpoint_folder(store, tmp_path):
    linked = finished_run(store, "linked", status="stopped")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(store.root / linked, elsewhere / linked)
    (store.root / linked).symlink_to(elsewhere / linked)
    target = elsewhere / linked / "checkpoint-30"
    target.mkdir()
    with pytest.raises(RunError, match=r"refusing to delete .*a link leads it to"):
        store.delete_checkpoint(linked, 30)
    with pytest.raises(RunError, match=r"refusing to delete .*a link leads it to"):
        store.delete_run(linked)
    assert target.is_dir() and store.get(linked)["checkpoint_count"] == 2

    own = finished_run(store, "own", status="stopped")
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    (store.run_dir(own) / "checkpoint-30").symlink_to(outside)
    with pytest.raises(RunError, match="refusing to delete"):
        store.delete_checkpoint(own, 30)
    assert (outside / "keep.txt").read_text() == "mine"
    assert [c["step"] for c in store.checkpoints(own)] == [20, 30]


def test_a_delete_that_fails_leaves_the_folder_and_the_index_agreeing(store, monkeypatch):
    run_id = finished_run(store, "stubborn")
    with_checkpoint_folders(store, run_id)

    def busy_rename(src, dst):
        raise OSError(errno.EBUSY, "Device or resource busy", str(src))

    with monkeypatch.context() as patch:
        patch.setattr(os, "rename", busy_rename)
        with pytest.raises(RunError, match="nothing was removed"):
            store.delete_run(run_id)
        with pytest.raises(RunError, match="nothing was removed"):
            store.delete_checkpoint(run_id, 30)
    assert store.get(run_id)["checkpoint_count"] == 2 and (store.run_dir(run_id) / "checkpoint-30").is_dir()

    remove = shutil.rmtree

    def removes_half(path, *args, **kwargs):  # a file system that gives up half way
        remove(next(Path(path).iterdir()))
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(shutil, "rmtree", removes_half)
    with pytest.raises(RunError, match="is deleted, but some of its files could not be removed"):
        store.delete_run(run_id)
    monkeypatch.undo()
    assert store.list_runs()[1] == 0 and not (store.root / run_id).exists()
    assert store.rebuild_index() == 0  # what is left is out of sight: it never comes back as a run


pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config(store, sleeper):
    running = finished_run(store, "training", status="stopped")
    store.set_status(running, "running", pid=sleeper.pid)
    return {"ServerApp": {"jpserver_extensions": {"ftkit": True}}, "FtkitApp": {"runs_dir": str(store.root)}}


async def test_the_api_answers_409_for_a_checkpoint_or_a_run_in_use(jp_fetch, store):
    import tornado.httpclient

    (run,), _ = store.list_runs()

    async def delete(*parts: str) -> tuple[int, dict]:
        try:
            response = await jp_fetch("ftkit", "api", "runs", *parts, method="DELETE")
        except tornado.httpclient.HTTPClientError as exc:
            response = exc.response
        return response.code, json.loads(response.body)

    code, error = await delete(run["id"], "checkpoints", "30")
    assert code == 409 and error["code"] == "checkpoint_in_use" and "its checkpoints are in use" in error["message"]
    code, error = await delete(run["id"])
    assert code == 409 and error["code"] == "run_active" and "stop it first" in error["message"]
    assert store.get(run["id"])["checkpoint_count"] == 2


@pytest.mark.spawns
def test_the_cli_says_why_in_one_line(store, sleeper):
    run_id = finished_run(store, "training", status="stopped")
    store.set_status(run_id, "running", pid=sleeper.pid)
    shown = cli(store, "delete", run_id, "--yes")
    assert shown.returncode == 2 and shown.stderr == f"ftkit: run '{run_id}' is running; stop it first " \
                                                      f"(`ftkit stop {run_id}`) and delete it once it has ended\n"


# ----- processes other than rank 0 never open the index --------------------------------------------------


def test_a_store_opened_without_its_index_never_creates_or_opens_it(store):
    run_id = finished_run(store, "ranked", status="stopped")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store.index_path}{suffix}").unlink(missing_ok=True)
    rank = RunStore(store.root, index=False)
    assert rank.recorded_checkpoints(run_id) == [store.root / run_id / "checkpoint-20", store.root / run_id / "checkpoint-30"]
    assert not rank.stop_requested(run_id)
    with pytest.raises(RuntimeError, match="without its index"):
        rank.checkpoints(run_id)
    assert not list(store.root.glob("index.sqlite*"))


INDEX_WATCH = '''
"""In ftkit's training processes, note every SQLite database opened by a process of rank > 0."""
import os, sqlite3, sys

if os.environ.get("RANK", "0") != "0" and "ftkit.engine.rank" in sys.orig_argv:
    with open(os.environ["FTKIT_TEST_INDEX_WATCH"], "a") as log:
        log.write(f"rank {os.environ['RANK']} started\\n")
    connect = sqlite3.connect

    def watched(database, *args, **kwargs):
        with open(os.environ["FTKIT_TEST_INDEX_WATCH"], "a") as log:
            log.write(f"rank {os.environ['RANK']} opened {database}\\n")
        return connect(database, *args, **kwargs)

    sqlite3.connect = watched
'''


@pytest.mark.slow
def test_ranks_other_than_0_never_open_the_index_when_training_or_resuming(tiny_config, tmp_path, monkeypatch):
    from ftkit.runs import start

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(INDEX_WATCH)
    watch = tmp_path / "opened.txt"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("FTKIT_TEST_INDEX_WATCH", str(watch))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    tiny_config["training"].update(epochs=1, max_steps=4, batch_size=4, save_steps=2, eval_steps=1000)
    tiny_config["resources"] = {"devices": 2}
    run = start(tiny_config).wait(timeout=300)
    assert run.status == "completed", run.log_tail()
    run.store.set_status(run.id, "stopped")  # as if stopped after its last checkpoint: resume reads the checkpoints
    run.resume().wait(timeout=300)
    assert run.status == "completed", run.log_tail()
    assert watch.read_text().splitlines() == ["rank 1 started", "rank 1 started"]


def test_a_run_whose_index_row_was_never_written_is_indexed_when_read(store):
    """A run made while the index was damaged and could not be mended at once (a full disk): its folder
    is whole, and the first reader of it puts it in the index."""
    run_id = finished_run(store, "unindexed")
    expected = comparable(store.get(run_id))
    with closing(sqlite3.connect(store.index_path)) as db, db:
        for table, key in (("runs", "id"), ("metrics", "run_id"), ("checkpoints", "run_id")):
            db.execute(f"DELETE FROM {table} WHERE {key}=?", (run_id,))
    assert comparable(store.get(run_id)) == expected


def test_a_rebuild_never_lets_the_old_indexs_hot_journal_roll_into_the_new_one(tmp_path, monkeypatch):
    """A process killed inside a write leaves a hot journal beside a shared store's index; a rebuild that
    kept it would have SQLite roll the old index's pages into the new file."""
    monkeypatch.setenv("FTKIT_SHARED_STORE", "1")
    store = RunStore(tmp_path / "runs")
    run_id = finished_run(store, "journaled")
    Path(f"{store.index_path}-journal").write_bytes(b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7" + os.urandom(4096))
    assert store.rebuild_index() == 1
    assert not Path(f"{store.index_path}-journal").exists()
    assert store.get(run_id)["status"] == "completed" and store.journal_mode() == "delete"
