"""The SQLite index of a run store: a cache of what the run folders' events say, rebuilt from them.

Each run's events fold into its rows through `ftkit.runstore.events.RunState` (:func:`apply_event`),
so :meth:`IndexAccess.rebuild_index` can recreate the whole index from the folders alone. A store
method that meets a damaged index rebuilds it and asks again (:func:`heals_index`). Every index
write holds the store's index lock with the event it records, so no event falls between a
rebuild's reading of the folders and its new index.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import shutil
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ..errors import RunError
from .events import RunState, read_events
from .files import (HELD_LOCKS, NETWORK_FILESYSTEMS, filesystem_of, fsync_folder, is_disk_full, lock, make_private,
                    no_space, shared_by_environment, write_json_atomic)
from .layout import (CONFIG_FILE, EVENTS_FILE, INDEX_FILE, INDEX_LOCK_FILE, RUN_FILE, SHARED_STORE_FILE, best_checkpoint_step, checkpoint_of_event,
                     run_summary)
from .liveness import now

if TYPE_CHECKING:
    from .store import RunStore

RUN_TABLES = (("runs", "id"), ("metrics", "run_id"), ("checkpoints", "run_id"))




_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, task TEXT, model TEXT,
    adapter TEXT, pid INTEGER, error TEXT, created REAL, started REAL, ended REAL, updated REAL,
    step INTEGER DEFAULT 0, total_steps INTEGER, epoch REAL, samples_per_second REAL,
    eta_seconds REAL, loss REAL, best_metric_name TEXT, best_metric REAL,
    phase TEXT, phase_done INTEGER, phase_total INTEGER, phase_detail TEXT
);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
CREATE INDEX IF NOT EXISTS runs_created ON runs(created);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, split TEXT NOT NULL, step INTEGER, epoch REAL, name TEXT NOT NULL,
    value REAL, t REAL
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics(run_id);
-- path: the checkpoint's folder name in its run (older stores: an absolute path; its last part is the name)
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, path TEXT NOT NULL, size INTEGER,
    adapter_only INTEGER, metrics TEXT, t REAL, ranked INTEGER DEFAULT 1, PRIMARY KEY (run_id, step)
);
"""


SORT_KEYS = ("created", "name", "status", "best_metric", "updated")


SEARCH = "(name LIKE ? OR id LIKE ? OR model LIKE ? OR task LIKE ?)"  # what a search text matches


# Columns added to a table after its first release, with their types: an index made before them gets
# them on open (ALTER TABLE ADD COLUMN, the default for the rows already there), so an old index.sqlite opens.
_ADDED_COLUMNS = {"runs": {"phase": "TEXT", "phase_done": "INTEGER", "phase_total": "INTEGER", "phase_detail": "TEXT",
                           "sweep": "TEXT"},
                  "checkpoints": {"ranked": "INTEGER DEFAULT 1"}}


class IndexDamaged(RunError):
    """The index (a cache of the run folders) cannot be read: torn, emptied or overwritten."""


_logger = logging.getLogger("ftkit")


def heals_index(method: Callable[..., Any]) -> Callable[..., Any]:
    """A store method that meets a damaged index rebuilds it from the run folders, which are the truth,
    and asks again: nobody has to notice the damage, let alone mend it by hand."""
    @functools.wraps(method)
    def healing(self: "RunStore", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except IndexDamaged as exc:
            _logger.warning("the run index %s is damaged (%s); rebuilding it from the run folders",
                            self.index_path, getattr(exc, "sqlite_error", exc))
            self.rebuild_index()
        return method(self, *args, **kwargs)
    return healing


class IndexAccess:
    """The index side of `ftkit.runstore.RunStore`: connections, the index lock, transactions, rebuilds."""

    root: Path
    index_path: Path
    uses_index: bool
    _journal: str | None = None  # `journal_mode`, decided once per store object

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self.uses_index:
            raise RuntimeError(f"this process opened the run store {self.root} without its index and must not use it")
        try:
            db = sqlite3.connect(self.index_path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout=30000")
            journal = self.journal_mode()
            if db.execute("PRAGMA journal_mode").fetchone()[0] != journal:
                db.execute(f"PRAGMA journal_mode={journal}")
            db.execute("PRAGMA synchronous=NORMAL" if journal == "wal" else "PRAGMA synchronous=FULL")
        except sqlite3.DatabaseError as exc:
            if self._out_of_space(exc):
                raise no_space(INDEX_FILE, self.root, exc) from None
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):  # busy past the timeout
                raise RunError(f"the run index {self.index_path} is busy ({exc}); try again") from None
            raise self._damaged(exc) from None
        try:
            yield db
        except sqlite3.DatabaseError as exc:
            if self._out_of_space(exc):
                raise no_space(INDEX_FILE, self.root, exc) from None
            if isinstance(exc, sqlite3.OperationalError) and not str(exc).startswith("no such "):
                raise  # locked, busy, read-only: not damage (a table gone, as in an emptied index, is)
            raise self._damaged(exc) from None  # a page torn or truncated past the schema
        finally:
            db.close()

    def journal_mode(self) -> str:
        """``wal`` for a store on one machine's disk; ``delete`` (a rollback journal, which SQLite supports
        on network file systems) for a store machines share: FTKIT_SHARED_STORE says so, or the store
        is on a network file system, or either left the store's marker, so that the processes of every
        machine agree whatever their environment (a WAL index opened from two machines is corrupted)."""
        if self._journal is None:
            marker = self.root / SHARED_STORE_FILE
            shared = marker.exists() or shared_by_environment() or filesystem_of(self.root) in NETWORK_FILESYSTEMS
            if shared and not marker.exists():
                marker.touch()
            self._journal = "delete" if shared else "wal"
        return self._journal

    def _out_of_space(self, exc: sqlite3.DatabaseError) -> bool:
        """SQLite's "database or disk is full", or its "disk I/O error" on a disk with no room left (it
        cannot size the shared-memory file it makes again when a connection opens)."""
        if is_disk_full(exc):
            return True
        if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF != sqlite3.SQLITE_IOERR:
            return False
        try:
            return shutil.disk_usage(self.root).free < 64 * 1024
        except OSError:
            return False

    def _damaged(self, exc: Exception) -> IndexDamaged:
        damaged = IndexDamaged(
            f"the run index {self.index_path} is damaged ({exc}). Runs are safe in their folders: "
            f"rebuild the index with `ftkit runs --rebuild-index` or RunStore(...).rebuild_index()."
        )
        damaged.sqlite_error = exc  # what SQLite said, for the log of a reader that heals it
        return damaged

    @contextmanager
    def _index_lock(self) -> Iterator[None]:
        """Held by every index write with the event it records, and while the index is rebuilt, so that no
        event falls between a rebuild's reading of the folders and its new index. Re-entrant within a
        thread; SQLite serialises the writes themselves, so holding it exclusively costs no concurrency."""
        held = HELD_LOCKS.__dict__.setdefault("index", set())
        if self.root in held:
            yield
            return
        with open(self.root / INDEX_LOCK_FILE, "a") as handle:
            lock(handle)
            held.add(self.root)
            try:
                yield
            finally:
                held.discard(self.root)

    def _heal_index(self) -> None:
        """Rebuild a damaged index for a writer whose own change is already in its run folder: best effort,
        since a run must go on training whatever happened to the cache of it."""
        try:
            self.rebuild_index()
        except RunError as exc:
            _logger.warning("the run index could not be rebuilt (%s); the run folders are intact and "
                            "`ftkit runs --rebuild-index` retries", exc)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._index_lock(), self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:  # SQLite rolls back by itself on a full disk
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def rebuild_index(self) -> int:
        """Recreate the index from the run folders (after loss or any damage); returns runs found.

        The new index is built in a file of its own and renamed over the old one, so no damage survives
        it; index writes wait meanwhile (`_index_lock`), so no event falls between. A torn run.json is
        first recreated from its folder's events.
        """
        for folder in self._run_folders():
            try:
                json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                with self.run_lock(folder.name):
                    write_json_atomic(folder / RUN_FILE, record_from_events(folder, events_in(folder)))
            except OSError:
                continue  # deleted since it was listed
        with self._index_lock():
            fresh = self.root / f".{INDEX_FILE}.{secrets.token_hex(4)}"
            try:
                count = build_index(fresh, self._run_folders(), self.journal_mode())
                make_private(fresh)
                # The old index's: never to be read beside the new one (a hot journal would be rolled back into it).
                for suffix in ("-wal", "-shm", "-journal"):
                    Path(f"{self.index_path}{suffix}").unlink(missing_ok=True)
                os.replace(fresh, self.index_path)
                fsync_folder(self.root)
            except (OSError, sqlite3.DatabaseError) as exc:
                for suffix in ("", "-journal", "-wal", "-shm"):
                    Path(f"{fresh}{suffix}").unlink(missing_ok=True)
                if is_disk_full(exc) or isinstance(exc, sqlite3.DatabaseError) and self._out_of_space(exc):
                    raise no_space(INDEX_FILE, self.root, exc) from None
                raise
        return count


def build_index(path: Path, folders: Iterator[Path], journal: str = "wal") -> int:
    """A complete index of ``folders`` in a new SQLite file at ``path``, with the store's ``journal`` mode
    (`IndexAccess.journal_mode`); returns runs indexed."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute(f"PRAGMA journal_mode={journal}")
        create_tables(db)
        db.execute("BEGIN")
        count = 0
        for folder in folders:
            try:
                record = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
            except OSError:
                continue  # deleted since it was listed
            except (ValueError, UnicodeDecodeError):  # torn again since the repair: its events still tell
                record = record_from_events(folder, events_in(folder))
            reindex_run(db, folder, record)
            count += 1
        db.execute("COMMIT")
    finally:
        db.close()  # checkpoints the WAL into the file and removes it
    return count


def create_tables(db: sqlite3.Connection) -> None:
    """The index's tables in ``db``, made if missing and brought up to date if an older ftkit made them."""
    db.executescript(_SCHEMA)
    _add_missing_columns(db)


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring an index made by an older ftkit up to `_SCHEMA` (one writer at a time; another may get there first)."""
    def missing() -> list[tuple[str, str]]:
        have = {table: {row[1] for row in db.execute(f"PRAGMA table_info({table})").fetchall()} for table in _ADDED_COLUMNS}
        return [(table, name) for table, columns in _ADDED_COLUMNS.items() for name in columns if name not in have[table]]

    if not missing():
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        for table, name in missing():
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {_ADDED_COLUMNS[table][name]}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def events_in(folder: Path) -> list[dict[str, Any]]:
    return read_events(folder / EVENTS_FILE)


def reindex_run(db: sqlite3.Connection, folder: Path, record: dict[str, Any]) -> None:
    """Replace a run's index rows with what its folder says: its events folded, and run.json's status."""
    run_id = record["id"]
    for table, key in RUN_TABLES:
        db.execute(f"DELETE FROM {table} WHERE {key}=?", (run_id,))
    insert_run(db, {**record, "status": "queued", "pid": None, "error": None})
    for event in events_in(folder):
        apply_event(db, run_id, event)
    db.execute("UPDATE runs SET status=?, error=?, pid=? WHERE id=?",
               (record.get("status", "failed"), record.get("error"), record.get("pid"), run_id))


def insert_run(db: sqlite3.Connection, record: dict[str, Any]) -> None:
    db.execute(
        "INSERT OR REPLACE INTO runs (id, name, status, task, model, adapter, pid, error, created, updated, sweep) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (record["id"], record["name"], record["status"], record.get("task"), record.get("model"),
         record.get("adapter"), record.get("pid"), record.get("error"), record.get("created"), record.get("created"),
         record.get("sweep")),
    )


def apply_event(db: sqlite3.Connection, run_id: str, event: dict[str, Any]) -> None:
    """Write what ``event`` changes (as `RunState.apply` folds it) into the run's index rows."""
    row = db.execute("SELECT best_metric_name, best_metric FROM runs WHERE id=?", (run_id,)).fetchone()
    state = RunState(best_metric={"name": row[0], "value": row[1]} if row is not None and row[0] else None)
    update = state.apply(event)
    if update.metrics:
        db.executemany(
            "INSERT INTO metrics (run_id, split, step, epoch, name, value, t) VALUES (?,?,?,?,?,?,?)",
            [(run_id, m["split"], m["step"], m["epoch"], m["name"], m["value"], m["t"]) for m in update.metrics],
        )
    if update.checkpoint is not None:
        c = update.checkpoint
        db.execute(
            "INSERT OR REPLACE INTO checkpoints (run_id, step, path, size, adapter_only, metrics, t, ranked) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (run_id, c["step"], c["name"], c["size"], int(c["adapter_only"]), json.dumps(c["metrics"], default=str), c["t"],
             int(c["ranked"])),
        )
    if update.kept is not None:
        db.execute(f"DELETE FROM checkpoints WHERE run_id=? AND step NOT IN ({','.join('?' * len(update.kept))})",
                   (run_id, *update.kept))
    if update.deleted_step is not None:
        db.execute("DELETE FROM checkpoints WHERE run_id=? AND step=?", (run_id, update.deleted_step))
    if update.summary:
        update_row(db, run_id, update.summary)


def update_row(db: sqlite3.Connection, run_id: str, sets: dict[str, Any]) -> None:
    columns = ", ".join(f"{k}=?" for k in sets)
    db.execute(f"UPDATE runs SET {columns} WHERE id=?", (*sets.values(), run_id))


def summary_of(row: sqlite3.Row, checkpoints: list[sqlite3.Row], failure: str | None = None) -> dict[str, Any]:
    data = dict(row)
    if failure:  # found dead: reported as failed since its last sign of life (nothing is written)
        data.update(status="failed", error=failure, pid=None, ended=data.get("updated"), eta_seconds=None)
    ended = data.get("ended") or (now() if data["status"] == "running" else None)
    return {
        "id": data["id"], "name": data["name"], "status": data["status"], "task": data["task"],
        "model": data["model"], "adapter": data["adapter"], "sweep": data.get("sweep"), "pid": data["pid"],
        "error": data["error"],
        "created": data["created"], "started": data["started"], "ended": data["ended"],
        "duration": (ended - data["started"]) if data["started"] and ended else None,
        "progress": {"step": data["step"] or 0, "total_steps": data["total_steps"], "epoch": data["epoch"],
                     "samples_per_second": data["samples_per_second"], "eta_seconds": data["eta_seconds"],
                     "loss": data["loss"]},
        "best_metric": {"name": data["best_metric_name"], "value": data["best_metric"]} if data["best_metric_name"] else None,
        "checkpoint_count": len(checkpoints),
        "best_checkpoint": best_checkpoint_step(({"step": c["step"], "metrics": json.loads(c["metrics"] or "{}"), "ranked": c["ranked"] != 0}
                                              for c in checkpoints), data["best_metric_name"]),
        # What the worker does before its first step (ftkit.events.PHASES); None once it trains or ends.
        "phase": ({"name": data["phase"], "done": data["phase_done"], "total": data["phase_total"],
                   "detail": data["phase_detail"]} if data.get("phase") and data["status"] in ("queued", "running")
                  else None),
    }


def checkpoint_of_row(row: sqlite3.Row, run_dir: Path) -> dict[str, Any]:
    name = checkpoint_of_event({"path": row["path"], "step": row["step"]})
    return {"step": row["step"], "name": name, "path": str(run_dir / name), "size": row["size"],
            "adapter_only": bool(row["adapter_only"]), "metrics": json.loads(row["metrics"] or "{}"),
            "ranked": row["ranked"] != 0}


def record_from_events(folder: Path, events: list[dict[str, Any]]) -> dict[str, Any]:
    """A run.json recreated from config.yaml and the event stream (rebuild_index's repair of a torn one).

    A run still marked running keeps its worker's pid, so readers can tell whether it still is.
    """
    import yaml

    config = yaml.safe_load((folder / CONFIG_FILE).read_text(encoding="utf-8")) or {}
    last = next((e for e in reversed(events) if e["type"] == "status"), {})
    status = last.get("status", "queued")
    return {"id": folder.name, "status": status, **run_summary(config),
            "created": events[0].get("t") if events else (folder / CONFIG_FILE).stat().st_mtime,
            "pid": last.get("pid") if status == "running" else None, "error": last.get("error")}
