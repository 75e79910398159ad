"""A damaged store says so and recovers from the run folders: garbage or truncated index, torn lines, torn run.json."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from ftkit.config import load_config
from ftkit.errors import RunError
from ftkit.runs import Run
from ftkit.store import RunStore


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


@pytest.mark.parametrize("damage", ["garbage", "truncated to 50%", "truncated to 10%", "truncated to 1 byte", "empty"])
def test_a_damaged_index_is_reported_with_the_fix_and_rebuilt_from_the_run_folders(store, damage):
    ids = [finished_run(store, f"run-{i}", status) for i, status in enumerate(["completed", "failed", "stopped"])]
    before = {run_id: comparable(store.get(run_id)) for run_id in ids}
    if damage == "garbage":
        store.index_path.write_bytes(os.urandom(8192))
        for suffix in ("-wal", "-shm"):
            Path(f"{store.index_path}{suffix}").unlink(missing_ok=True)
    elif damage == "empty":
        shrink_index(store, 0)
    elif damage == "truncated to 1 byte":
        shrink_index(store, 0)
        store.index_path.write_bytes(b"S")
    else:
        shrink_index(store, float(damage.split()[-1].rstrip("%")) / 100)

    reopened = RunStore(store.root)  # opening never fails: the rebuild must stay reachable
    if damage in ("empty", "truncated to 1 byte"):  # SQLite sees a new database: rebuilt on open
        assert reopened.list_runs()[1] == 3
    else:
        with pytest.raises(RunError, match=r"damaged.*--rebuild-index"):
            reopened.list_runs()
        shown = cli(store, "runs")
        assert shown.returncode == 2 and "--rebuild-index" in shown.stderr and "Traceback" not in shown.stderr
    repaired = cli(store, "runs", "--rebuild-index", "--json")
    assert repaired.returncode == 0, repaired.stderr
    assert reopened.rebuild_index() == 3
    assert {run_id: comparable(reopened.get(run_id)) for run_id in ids} == before


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
