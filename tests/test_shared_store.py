"""A run store several machines use (a team's store on NFS): the index keeps a rollback journal, which
SQLite supports on network file systems, never its WAL, whose shared memory works on one machine only;
every machine's processes agree on that, whatever their environment. "Another machine" is a process
with another host identity (FTKIT_HOST_ID) and none of this machine's FTKIT_SHARED_STORE."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections import namedtuple

from ftkit.config import Config
from ftkit.runstore import RunStore
from ftkit.runstore import files
from ftkit.runstore.layout import INDEX_FILE, SHARED_STORE_FILE

OTHER_HOST = """
import sys
from ftkit.config import Config
from ftkit.runstore import RunStore

store = RunStore(sys.argv[1])
print(store.journal_mode(), sorted(run["name"] for run in store.list_runs()[0]))
run_id = store.create_run(Config(name="from-b"))
store.hold_run(run_id)  # this process, on machine b, supervises it
store.set_status(run_id, "running", pid=1)
store.append_event(run_id, {"type": "progress", "step": 3, "total_steps": 9})
"""


def journal_on_disk(root) -> str:
    db = sqlite3.connect(root / INDEX_FILE)
    try:
        return db.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        db.close()


def on_other_host(root, host: str = "b") -> str:
    env = {key: value for key, value in os.environ.items() if key != files.SHARED_STORE_VARIABLE}
    done = subprocess.run([sys.executable, "-c", OTHER_HOST, str(root)], env={**env, "FTKIT_HOST_ID": host},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_store_on_one_machines_disk_keeps_its_wal(tmp_path, monkeypatch):
    monkeypatch.delenv(files.SHARED_STORE_VARIABLE, raising=False)
    store = RunStore(tmp_path / "runs")
    store.create_run(Config(name="local"))
    assert store.journal_mode() == "wal" and journal_on_disk(store.root) == "wal"
    assert not (store.root / SHARED_STORE_FILE).exists()


def test_a_shared_store_is_journaled_for_every_machine_and_each_sees_the_others_runs(tmp_path, monkeypatch):
    monkeypatch.setenv(files.SHARED_STORE_VARIABLE, "1")
    monkeypatch.setenv("FTKIT_HOST_ID", "a")
    store = RunStore(tmp_path / "runs")
    store.create_run(Config(name="from-a"))
    assert (store.root / SHARED_STORE_FILE).exists()

    seen_from_b = on_other_host(store.root)  # without FTKIT_SHARED_STORE: the store's marker decides
    assert seen_from_b == "delete ['from-a']"
    assert journal_on_disk(store.root) == "delete"
    assert not (store.root / f"{INDEX_FILE}-wal").exists() and not (store.root / f"{INDEX_FILE}-shm").exists()
    runs = {run["name"]: run for run in RunStore(store.root).list_runs()[0]}
    assert set(runs) == {"from-a", "from-b"}
    assert runs["from-b"]["status"] == "running" and runs["from-b"]["progress"]["step"] == 3
    assert store.read_record(runs["from-b"]["id"])["host"] == "b"


def test_a_wal_index_becomes_journaled_once_its_store_is_shared(tmp_path, monkeypatch):
    monkeypatch.delenv(files.SHARED_STORE_VARIABLE, raising=False)
    store = RunStore(tmp_path / "runs")
    run_id = store.create_run(Config(name="before"))
    assert journal_on_disk(store.root) == "wal"
    monkeypatch.setenv(files.SHARED_STORE_VARIABLE, "1")
    shared = RunStore(store.root)
    assert shared.get(run_id)["name"] == "before" and journal_on_disk(store.root) == "delete"


def test_a_store_on_a_network_file_system_is_shared_without_being_told(tmp_path, monkeypatch):
    monkeypatch.delenv(files.SHARED_STORE_VARIABLE, raising=False)
    root = tmp_path / "nfs" / "runs"
    Partition = namedtuple("Partition", "device mountpoint fstype opts")
    mounts = [Partition("/dev/vda", "/", "ext4", "rw"), Partition("server:/export", str(tmp_path / "nfs"), "nfs4", "rw")]
    monkeypatch.setattr(files.psutil, "disk_partitions", lambda all=False: mounts)
    assert files.filesystem_of(root) == "nfs4" and files.filesystem_of(tmp_path) == "ext4"
    store = RunStore(root)
    assert store.journal_mode() == "delete" and journal_on_disk(root) == "delete"
    assert (root / SHARED_STORE_FILE).exists()
