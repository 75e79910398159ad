"""The run store: folders are the truth, the SQLite index is a projection of their events."""

from __future__ import annotations

import multiprocessing
import subprocess

import pytest

from ftkit.config import load_config
from ftkit.errors import RunError
from ftkit.runstore.layout import best_checkpoint
from ftkit.runstore import RunStore


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


def make_run(store: RunStore, name: str = "r", **config) -> str:
    return store.create_run(load_config(name=name, **config))


def test_a_new_run_is_queued_with_its_config_and_folder(store):
    run_id = make_run(store, "first", task="classification")
    folder = store.run_dir(run_id)
    assert {"config.yaml", "run.json", "events.jsonl"} <= {p.name for p in folder.iterdir()}
    detail = store.get(run_id)
    assert detail["status"] == "queued" and detail["name"] == "first"
    assert detail["config"]["task"] == "classification"


def test_events_drive_progress_metrics_and_checkpoints(store, tmp_path):
    run_id = make_run(store)
    store.set_status(run_id, "running", pid=subprocess.os.getpid())
    store.append_event(run_id, {"type": "progress", "step": 5, "total_steps": 20, "epoch": 0.25,
                                "samples_per_second": 12.5, "eta_seconds": 30.0, "loss": 1.2})
    store.append_event(run_id, {"type": "eval", "split": "validation", "step": 10, "epoch": 0.5,
                                "metrics": {"f1": 0.5, "loss": 0.9, "PER_f1": 0.7}, "best_metric_name": "f1"})
    store.append_event(run_id, {"type": "eval", "split": "validation", "step": 20, "epoch": 1.0,
                                "metrics": {"f1": 0.6, "loss": 0.8}, "best_metric_name": "f1"})
    for step in (10, 20):
        store.append_event(run_id, {"type": "checkpoint", "step": step, "path": str(tmp_path / f"checkpoint-{step}"),
                                    "size": 100, "metrics": {"f1": step / 40}, "kept": [10, 20]})
    detail = store.get(run_id)
    assert detail["progress"]["step"] == 5 and detail["progress"]["total_steps"] == 20
    assert detail["metrics"]["validation"] == {"f1": 0.6, "loss": 0.8, "PER_f1": 0.7}
    assert [m["value"] for m in detail["metric_history"] if m["name"] == "f1"] == [0.5, 0.6]
    assert detail["best_metric"] == {"name": "validation_f1", "value": 0.6}
    assert [c["step"] for c in detail["checkpoints"]] == [10, 20]
    store.append_event(run_id, {"type": "checkpoint", "step": 30, "path": "p", "kept": [20, 30]})
    assert [c["step"] for c in store.checkpoints(run_id)] == [20, 30]  # rotation dropped step 10


def test_events_are_readable_incrementally_by_byte_offset(store):
    run_id = make_run(store)
    store.append_event(run_id, {"type": "log", "message": "one"})
    first, offset = store.read_events(run_id)
    store.append_event(run_id, {"type": "log", "message": "two"})
    second, _ = store.read_events(run_id, offset)
    assert [e["message"] for e in first] == ["one"] and [e["message"] for e in second] == ["two"]
    with open(store.run_dir(run_id) / "events.jsonl", "a") as f:
        f.write('{"type": "log", "mess')  # a line still being written is not returned
    assert store.read_events(run_id, offset + 0)[0][-1]["message"] == "two"


def test_listing_filters_searches_sorts_and_pages(store):
    ids = [make_run(store, f"run-{i}") for i in range(5)]
    store.set_status(ids[1], "completed")
    store.set_status(ids[2], "failed", error="boom")
    runs, total = store.list_runs()
    assert total == 5 and [r["id"] for r in runs] == ids[::-1]
    assert [r["id"] for r in store.list_runs(status="completed")[0]] == [ids[1]]
    assert [r["id"] for r in store.list_runs(query="run-3")[0]] == [ids[3]]
    page, total = store.list_runs(sort="name", descending=False, limit=2, offset=2)
    assert total == 5 and [r["name"] for r in page] == ["run-2", "run-3"]
    with pytest.raises(RunError, match="cannot sort"):
        store.list_runs(sort="id; DROP TABLE runs")
    with pytest.raises(RunError, match="unknown status"):
        store.list_runs(status="sleeping")


def test_runs_resolve_by_id_prefix_or_name_and_ids_are_never_paths(store):
    run_id = make_run(store, "named")
    assert store.resolve("named") == run_id
    assert store.resolve(run_id[:-2]) == run_id
    for bad in ("../etc", "/etc/passwd", "..", "a/b", ""):
        with pytest.raises(RunError):
            store.run_dir(bad)
    with pytest.raises(RunError, match="no run"):
        store.resolve("nothing-like-it")


def test_a_running_run_whose_process_died_is_marked_failed(store):
    run_id = make_run(store)
    dead = subprocess.Popen(["true"])
    dead.wait()
    store.set_status(run_id, "running", pid=dead.pid)
    runs, _ = store.list_runs()
    assert runs[0]["status"] == "failed"
    assert "died" in runs[0]["error"]


def test_the_index_is_rebuilt_from_run_folders_after_corruption(store, caplog):
    run_id = make_run(store, "keep-me")
    store.append_event(run_id, {"type": "eval", "split": "validation", "step": 1, "metrics": {"f1": 0.4},
                                "best_metric_name": "f1"})
    store.set_status(run_id, "completed")
    before = store.get(run_id)
    store.index_path.write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (store.root / f"index.sqlite{suffix}").unlink(missing_ok=True)
    assert store.list_runs()[1] == 1  # the reader that finds the damage rebuilds, and says so
    assert "damaged" in caplog.text and "rebuilding it from the run folders" in caplog.text
    assert store.rebuild_index() == 1
    after = store.get(run_id)
    assert after["status"] == "completed" and after["metrics"] == before["metrics"]


def test_a_lost_index_is_rebuilt_on_open(store):
    run_id = make_run(store, "again")
    store.set_status(run_id, "stopped")
    for suffix in ("", "-wal", "-shm"):
        (store.root / f"index.sqlite{suffix}").unlink(missing_ok=True)
    assert RunStore(store.root).get(run_id)["status"] == "stopped"


# The runs table as ftkit wrote it before phases (no phase columns).
OLD_RUNS_TABLE = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, task TEXT, model TEXT,
    adapter TEXT, pid INTEGER, error TEXT, created REAL, started REAL, ended REAL, updated REAL,
    step INTEGER DEFAULT 0, total_steps INTEGER, epoch REAL, samples_per_second REAL,
    eta_seconds REAL, loss REAL, best_metric_name TEXT, best_metric REAL
);
"""


def test_an_index_from_before_phases_opens_and_gains_the_phase_columns(store):
    import sqlite3

    run_id = make_run(store, "old-timer")
    store.append_event(run_id, {"type": "progress", "step": 3, "total_steps": 9})
    root = store.root
    with sqlite3.connect(store.index_path) as db:  # turn the index back into the old layout, row kept
        rows = db.execute("SELECT id, name, status, created, step, total_steps FROM runs").fetchall()
        db.executescript("DROP TABLE runs;" + OLD_RUNS_TABLE)
        db.executemany("INSERT INTO runs (id, name, status, created, step, total_steps) VALUES (?,?,?,?,?,?)", rows)
    with sqlite3.connect(store.index_path) as db:
        assert "phase" not in {row[1] for row in db.execute("PRAGMA table_info(runs)")}

    reopened = RunStore(root)
    listed = reopened.list_runs()[0]
    assert [r["id"] for r in listed] == [run_id] and listed[0]["progress"]["step"] == 3 and listed[0]["phase"] is None
    reopened.append_event(run_id, {"type": "phase", "phase": "loading model"})
    assert reopened.get(run_id)["phase"]["name"] == "loading model"
    assert RunStore(root).list_runs()[0][0]["phase"]["name"] == "loading model"  # a second open changes nothing


def _write_events(root: str, run_id: str, count: int) -> None:
    store = RunStore(root)
    for step in range(count):
        store.append_event(run_id, {"type": "progress", "step": step, "total_steps": count})


def test_concurrent_writers_lose_no_events_and_never_see_a_locked_database(store):
    ids = [make_run(store, f"c{i}") for i in range(4)]
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_write_events, args=(str(store.root), run_id, 60)) for run_id in ids]
    for w in workers:
        w.start()
    while any(w.is_alive() for w in workers):
        store.list_runs()  # a reader (the server) polling at the same time
    assert all(w.exitcode == 0 for w in workers)
    for run_id in ids:
        assert len(store.read_events(run_id)[0]) == 60
        assert store.get(run_id)["progress"]["step"] == 59


def test_deleting_a_checkpoint_and_a_run(store, tmp_path):
    run_id = make_run(store)
    folder = store.run_dir(run_id) / "checkpoint-5"
    folder.mkdir()
    store.append_event(run_id, {"type": "checkpoint", "step": 5, "path": str(folder)})
    store.set_status(run_id, "stopped")  # a queued or running run's checkpoints are in use
    store.delete_checkpoint(run_id, 5)
    assert not folder.exists() and store.checkpoints(run_id) == []
    with pytest.raises(RunError, match="no checkpoint at step 7"):
        store.delete_checkpoint(run_id, 7)
    store.delete_run(run_id)
    assert store.list_runs()[1] == 0 and not (store.root / run_id).exists()


def test_best_checkpoint_prefers_the_best_metric_then_the_latest():
    checkpoints = [{"step": 1, "metrics": {"f1": 0.7}}, {"step": 2, "metrics": {"f1": 0.6}}, {"step": 3, "metrics": {}}]
    assert best_checkpoint(checkpoints, "f1")["step"] == 1
    assert best_checkpoint(checkpoints, "accuracy")["step"] == 3
    assert best_checkpoint([{"step": 1, "metrics": {"loss": 0.2}}, {"step": 2, "metrics": {"loss": 0.1}}], "loss")["step"] == 2


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def snapshot(paths) -> dict:
    """Each file's bytes and modification time (ns), and the run folder's listing."""
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else sorted(x.name for x in p.iterdir())
            for p in paths}


def test_readers_report_a_run_whose_processes_died_as_failed_and_write_nothing(store):
    from ftkit.runs import Run

    run_id = make_run(store, "ghost")
    store.set_status(run_id, "running", pid=dead_pid())
    store.set_record_fields(run_id, supervisor_pid=dead_pid())  # the supervisor was killed too
    folder = store.run_dir(run_id)
    files = [folder / "events.jsonl", folder / "run.json", store.index_path, folder, store.root]
    before = snapshot(files)

    runs, total = store.list_runs()
    assert total == 1 and runs[0]["status"] == "failed" and "died without reporting" in runs[0]["error"]
    assert store.list_runs(status="failed")[1] == 1 and store.list_runs(status="running")[1] == 0
    assert store.list_runs(sort="status")[0][0]["status"] == "failed"
    detail = store.get(run_id)
    assert detail["status"] == "failed" and detail["pid"] is None and "died" in detail["error"]
    token = store.change_token()
    reopened = RunStore(store.root)
    run = Run(run_id, reopened)
    assert run.status == "failed" and run.done and "died" in run.error
    assert reopened.change_token() == token
    assert snapshot(files) == before, "a reader wrote to the run store"
    assert [e.get("status") for e in store.read_events(run_id)[0]] == ["running"]


def test_the_next_resume_records_a_dead_run_that_no_one_recorded(store):
    from ftkit.runs import Run

    run_id = make_run(store, "ghost")
    store.set_status(run_id, "running", pid=dead_pid())
    with pytest.raises(RunError, match="no checkpoint to resume from"):
        Run(run_id, store).resume()
    last = store.read_events(run_id)[0][-1]
    assert last["status"] == "failed" and "died without reporting" in last["error"]
    assert store.read_record(run_id)["status"] == "failed"
    assert store.get(run_id)["status"] == "failed"


def test_two_resumes_at_once_start_one_worker(store, monkeypatch):
    import threading
    import time

    import ftkit.runs
    from ftkit.runs import Run

    run_id = make_run(store, "paused")
    store.append_event(run_id, {"type": "checkpoint", "step": 4, "checkpoint": "checkpoint-4"})
    store.set_status(run_id, "stopped")
    spawned, refused = [], []
    monkeypatch.setattr(ftkit.runs, "_spawn", lambda s, i, resume: (time.sleep(0.3), spawned.append(i)))

    def resume() -> None:
        try:
            Run(run_id, RunStore(store.root)).resume()
        except RunError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=resume) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert spawned == [run_id] and len(refused) == 1 and "is queued" in refused[0]
