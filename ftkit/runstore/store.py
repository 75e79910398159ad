"""The run store: one folder per run (the truth) plus a SQLite index (a rebuildable projection).

Plain Python and SQLite, shared by the training worker, the notebook kernel, the CLI and the
Jupyter server. Each run has one writer at a time, enforced: its supervisor holds the run's life
lock for as long as it lives (:meth:`RunStore.hold_run`), the worker it starts writes the events,
and ``resume`` is a compare-and-set under the run's short lock, which also guards every change of
``run.json`` (each an atomic replacement). Every change to a run is an event appended to
``events.jsonl``; the index is what those events say (folded by `ftkit.events.RunState`), so
:meth:`RunStore.rebuild_index` can recreate it from the folders alone, and a row that disagrees
with its run.json (a writer died between the two) is repaired from the folder, run.json winning.
Readers never write a run's folder. File names and the checkpoint policy come from `ftkit.layout`.

Liveness works across machines that share a store: run.json records the supervisor's host and
boot id and each process's pid with its start time, and the supervisor touches a heartbeat file.
A reader on that machine checks the pids (a pid the system has since given to another process does
not count); elsewhere it judges by the heartbeat's age (:func:`heartbeat_timeout`). A queued or
running run found gone is reported as failed without writing; its supervisor, or the next
``resume``, records it (:meth:`RunStore.record_if_dead`). Processes that never open the index (the
non-zero ranks of a distributed run, on every node) use ``RunStore(root, index=False)``.

A full disk never shows as a raw OSError or SQLite's "database or disk is full": writes here raise
:class:`DiskFull` ("no space left on device while writing ...") and leave what was written before
intact, and an active run holds back a little disk that it gives up just before its final status,
so that even a full disk records why a run ended.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import math
import os
import re
import secrets
import shutil
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator

from ..config import Config, resolve_runs_dir
from ..errors import RunError
from .events import ACTIVE_STATUSES, FINAL_STATUSES, STATUSES, RunState, decode_events
from .layout import (CONFIG_FILE, DELETING_PREFIX, EVENTS_FILE, HEARTBEAT_FILE, INDEX_FILE, INDEX_LOCK_FILE,
                     LIFE_LOCK_FILE, LOCK_FILE,                      LOG_FILE, RESERVE_FILE, RUN_FILE, SELECTION_SPLIT, STOP_FILE, best_checkpoint, checkpoint_of_event)

DIED_WITHOUT_REPORTING = "the training process died without reporting (killed, or out of memory)"
HEARTBEAT_INTERVAL_S = 5.0  # how often a supervisor touches its heartbeat (see heartbeat_interval)
# Twelve missed beats: long enough for a loaded shared file system (NFS caches file times for a few
# seconds), clocks a few seconds apart and a supervisor stalled by swapping; short enough that a run
# whose machine died shows as failed elsewhere within a minute. FTKIT_HEARTBEAT_TIMEOUT changes it
# (give every machine that shares the store the same value).
DEFAULT_HEARTBEAT_TIMEOUT_S = 60.0
RESERVE_BYTES = 128 * 1024  # an event line, run.json and a few index pages: a final status, with room to spare
# What run.json says of an attempt's processes; a new attempt (queued again) starts without them.
_PROCESS_FIELDS = ("host", "boot_id", "pid", "pid_started", "supervisor_pid", "supervisor_pid_started", "exit_reason")
_RUN_TABLES = (("runs", "id"), ("metrics", "run_id"), ("checkpoints", "run_id"))
_HELD_LOCKS = threading.local()  # the run and index locks this thread holds (both re-entrant within a thread)
_SUPERVISED: list[Any] = []  # life-lock files of the runs this process supervises: open, so locked, until it exits
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

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
    adapter_only INTEGER, metrics TEXT, t REAL, PRIMARY KEY (run_id, step)
);
"""
SORT_KEYS = ("created", "name", "status", "best_metric", "updated")
_SEARCH = "(name LIKE ? OR id LIKE ? OR model LIKE ? OR task LIKE ?)"  # what a search text matches
# Columns added to `runs` after its first release, with their types: an index made before them gets
# them on open (ALTER TABLE ADD COLUMN, NULL for the runs already there), so an old index.sqlite opens.
_ADDED_COLUMNS = {"phase": "TEXT", "phase_done": "INTEGER", "phase_total": "INTEGER", "phase_detail": "TEXT",
                  "sweep": "TEXT"}


def now() -> float:
    return time.time()


class RunBusy(RunError):
    """The run is queued or running (or its supervisor still lives): what was asked would act under its processes."""


class DiskFull(RunError):
    """A write to the run store ran out of disk; what was written before is intact."""


class IndexDamaged(RunError):
    """The index (a cache of the run folders) cannot be read: torn, emptied or overwritten."""


_logger = logging.getLogger("ftkit")


def _heals_index(method: Callable[..., Any]) -> Callable[..., Any]:
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


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC (or a quota), as the file system or SQLite reports it."""
    if isinstance(exc, sqlite3.OperationalError):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def no_space(what: str, where: Path, exc: BaseException) -> DiskFull:
    """ftkit's one message for a full disk, naming what was being written and where."""
    detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return DiskFull(f"no space left on device while writing {what} in {where} ({type(exc).__name__}: {detail}). "
                    "Free some space there (or set output.dir to a bigger disk) and resume the run; "
                    "what was written before is intact")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write a temporary file of its own (unique per process, thread and call), fsync it and rename it
    over ``path``: readers see the old file or the new one, never half, and a crash leaves one whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:
            f.write(json.dumps(data, indent=1, default=str).encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise no_space(path.name, path.parent, exc) from None
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable, where the file system lets a folder be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3 on), or None (gone, or no /proc)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks after boot (field 22 of /proc/<pid>/stat); None if unknown."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def process_alive(pid: int | None, started: int | None = None) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, counts as gone) and, given its start
    time (`process_start_time`), is still that process rather than a later one the system gave that pid."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: /proc still tells
    fields = _proc_stat(pid)
    if fields is None:
        return True  # no /proc: the pid is all there is to go on
    return fields[0] not in ("Z", "X") and (started is None or process_start_time(pid) == started)


def host_identity() -> dict[str, str | None]:
    """This machine as run.json records it: ``host`` (its name; FTKIT_HOST_ID overrides it, so a test or
    a soak can play another machine) and ``boot_id`` (after a reboot no recorded pid means anything)."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = None
    return {"host": os.environ.get("FTKIT_HOST_ID") or socket.gethostname(), "boot_id": boot_id}


def heartbeat_timeout() -> float:
    """Seconds without a heartbeat after which a reader on another machine reports a run gone:
    FTKIT_HEARTBEAT_TIMEOUT, else `DEFAULT_HEARTBEAT_TIMEOUT_S`."""
    text = os.environ.get("FTKIT_HEARTBEAT_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_HEARTBEAT_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise RunError(f"FTKIT_HEARTBEAT_TIMEOUT must be a positive number of seconds, not '{text}'")
    return seconds


def heartbeat_interval() -> float:
    """How often a supervisor beats: every 5 s, or a quarter of a shorter timeout, so several beats fit in one."""
    return min(HEARTBEAT_INTERVAL_S, heartbeat_timeout() / 4)


class RunStore:
    """Runs under one folder (``output.dir``, ``$FTKIT_RUNS_DIR`` or ``./ftkit-runs``)."""

    def __init__(self, root: str | os.PathLike | None = None, index: bool = True):
        """``index=False``: for a process that only writes run folders and must never open the index (the
        non-zero ranks of a distributed run, on any node: SQLite's WAL does not work across machines)."""
        self.root = resolve_runs_dir(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.index_path = self.root / INDEX_FILE
        self.uses_index = index
        if not index:
            return
        try:
            with self._connect() as db:
                # Missing, emptied or cut before its first page: SQLite sees a new database.
                fresh = db.execute("SELECT 1 FROM sqlite_master WHERE name='runs'").fetchone() is None
                db.executescript(_SCHEMA)
                _add_missing_columns(db)
        except DiskFull:
            return  # readers still answer from what the index holds; writers say the disk is full
        except IndexDamaged:
            fresh = True
        if fresh and any(self._run_folders()):
            self._heal_index()

    # ----- SQLite ---------------------------------------------------------------------------
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self.uses_index:
            raise RuntimeError(f"this process opened the run store {self.root} without its index and must not use it")
        try:
            db = sqlite3.connect(self.index_path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout=30000")
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
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
    def _index_lock(self, exclusive: bool = False) -> Iterator[None]:
        """Shared by every index write (with the event it records), exclusive while the index is rebuilt,
        so that no event falls between a rebuild's reading of the folders and its new index. Re-entrant
        within a thread."""
        held = _HELD_LOCKS.__dict__.setdefault("index", set())
        if self.root in held:
            yield
            return
        with open(self.root / INDEX_LOCK_FILE, "a") as handle:
            _flock(handle, exclusive=exclusive, wait=True)
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

    # ----- creating and locating runs ---------------------------------------------------------
    def create_run(self, config: Config, prepare: "Callable[[Path], Config] | None" = None) -> str:
        """Make the run folder (config, run.json, empty event stream) and its queued index row.

        ``prepare(folder)`` runs first and returns the config to record (it writes snapshots of
        in-memory data there); if it fails, the folder is removed and no run exists.
        """
        run_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        folder = self.root / run_id
        folder.mkdir()
        try:
            if prepare is not None:
                config = prepare(folder)
            (folder / CONFIG_FILE).write_text(config.to_yaml(), encoding="utf-8")
            (folder / EVENTS_FILE).touch()
            _hold_reserve(folder)
        except BaseException as exc:
            shutil.rmtree(folder, ignore_errors=True)  # no run rather than half of one
            if is_disk_full(exc):
                raise no_space("a new run", folder, exc) from None
            raise
        record = {"id": run_id, "name": config.run_name, "status": "queued", "created": now(),
                  "task": config.task, "model": config.model, "adapter": config.adapter.kind,
                  "sweep": config.output.sweep}
        write_json_atomic(folder / RUN_FILE, record)
        try:
            with self._transaction() as db:
                _insert_run(db, record)
        except IndexDamaged:
            self._heal_index()  # the new folder is complete, so the rebuilt index lists the run
        return run_id

    def run_dir(self, run_id: str) -> Path:
        """The folder of a run that exists; ids are looked up, never trusted as paths."""
        if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
            raise RunError(f"'{run_id}' is not a run id")
        folder = self.root / run_id
        if not (folder / RUN_FILE).is_file():
            raise RunError(f"no run '{run_id}' in {self.root}")
        return folder

    @_heals_index
    def resolve(self, ref: str) -> str:
        """A run id from an id, a unique id prefix, or a name (the newest run of that name)."""
        with self._connect() as db:
            if db.execute("SELECT 1 FROM runs WHERE id=?", (ref,)).fetchone():
                return ref
            rows = db.execute("SELECT id FROM runs WHERE name=? ORDER BY created DESC", (ref,)).fetchall()
            if rows:
                return rows[0]["id"]
            rows = db.execute("SELECT id FROM runs WHERE id LIKE ? ESCAPE '\\'",
                              (ref.replace("%", "\\%").replace("_", "\\_") + "%",)).fetchall()
        if len(rows) == 1:
            return rows[0]["id"]
        if len(rows) > 1:
            raise RunError(f"'{ref}' matches {len(rows)} runs; give more of the id")
        raise RunError(f"no run '{ref}' in {self.root}; `ftkit runs` lists them")

    def _run_folders(self) -> Iterator[Path]:
        for folder in sorted(self.root.iterdir()):  # a hidden one (.deleting-<id>) is being removed
            if not folder.name.startswith(".") and folder.is_dir() and (folder / RUN_FILE).is_file():
                yield folder

    # ----- reading ------------------------------------------------------------------------------
    def read_record(self, run_id: str) -> dict[str, Any]:
        path = self.run_dir(run_id) / RUN_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise RunError(
                f"{path} is damaged ({exc}); the run's config.yaml and events.jsonl are intact. Recreate it with "
                f"`ftkit runs --rebuild-index` (RunStore(...).rebuild_index()), or delete the folder {path.parent}"
            ) from None

    @_heals_index
    def list_runs(
        self,
        status: str | list[str] | None = None,
        query: str | None = None,
        sort: str = "created",
        descending: bool = True,
        limit: int | None = None,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """Runs as summaries (newest first by default) and the total that matched.

        A run whose processes are all gone is listed (and filtered, and sorted) as failed.
        """
        dead = self.dead_runs()
        # The status a reader reports: the index's, or 'failed' for a run found dead (nothing is written).
        status_sql = (f"(CASE WHEN id IN ({','.join('?' * len(dead))}) THEN 'failed' ELSE status END)"
                      if dead else "status")
        where, params = [], []
        statuses = [status] if isinstance(status, str) else list(status or [])
        for s in statuses:
            if s not in STATUSES:
                raise RunError(f"unknown status '{s}'; one of {', '.join(STATUSES)}")
        if statuses:
            where.append(f"{status_sql} IN ({','.join('?' * len(statuses))})")
            params += [*dead, *statuses] if dead else statuses
        if query:
            where.append(_SEARCH)
            params += [f"%{query}%"] * 4
        if sort not in SORT_KEYS:
            raise RunError(f"cannot sort by '{sort}'; one of {', '.join(SORT_KEYS)}")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        key, key_params = (status_sql, list(dead)) if sort == "status" and dead else (sort, [])
        order = f" ORDER BY {key} IS NULL, {key} {'DESC' if descending else 'ASC'}, id DESC"
        page = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
        with self._connect() as db:
            total = db.execute(f"SELECT COUNT(*) FROM runs{clause}", params).fetchone()[0]
            rows = db.execute(f"SELECT * FROM runs{clause}{order}{page}", params + key_params * 2).fetchall()
            ids = [row["id"] for row in rows]
            checkpoints: dict[str, list[sqlite3.Row]] = {}
            for c in db.execute(f"SELECT run_id, step, metrics FROM checkpoints WHERE run_id IN ({','.join('?' * len(ids))})",
                                ids).fetchall() if ids else ():
                checkpoints.setdefault(c["run_id"], []).append(c)
        return [_summary(row, checkpoints.get(row["id"], []), dead.get(row["id"])) for row in rows], total

    @_heals_index
    def status_counts(self, query: str | None = None) -> dict[str, int]:
        """How many runs of each status match ``query`` (a run found dead counts as failed)."""
        dead = self.dead_runs()
        with self._connect() as db:
            rows = db.execute(f"SELECT id, status FROM runs WHERE {_SEARCH}" if query else "SELECT id, status FROM runs",
                              [f"%{query}%"] * 4 if query else []).fetchall()
        counts = dict.fromkeys(STATUSES, 0)
        for row in rows:
            counts["failed" if row["id"] in dead else row["status"]] += 1
        return counts

    @_heals_index
    def get(self, run_id: str) -> dict[str, Any]:
        """Everything about one run: summary, progress, latest metrics per split, checkpoints, config."""
        import yaml

        folder = self.run_dir(run_id)
        failure = self.dead_runs(run_id).get(run_id)
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                raise RunError(f"run '{run_id}' has a folder but no index row; rebuild the index")
            metric_rows = db.execute("SELECT * FROM metrics WHERE run_id=? ORDER BY rowid", (run_id,)).fetchall()
            ckpt_rows = db.execute("SELECT * FROM checkpoints WHERE run_id=? ORDER BY step", (run_id,)).fetchall()
        detail = _summary(row, ckpt_rows, failure)
        latest: dict[str, dict[str, Any]] = {}
        history: list[dict[str, Any]] = []
        for m in metric_rows:
            latest.setdefault(m["split"], {})[m["name"]] = m["value"]
            history.append({"split": m["split"], "step": m["step"], "epoch": m["epoch"], "name": m["name"], "value": m["value"]})
        detail["metrics"] = latest
        detail["metric_history"] = history
        detail["checkpoints"] = [_checkpoint(c, folder) for c in ckpt_rows]
        detail["config"] = yaml.safe_load((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        detail["dir"] = str(folder)
        return detail

    @_heals_index
    def checkpoints(self, run_id: str) -> list[dict[str, Any]]:
        """The run's checkpoints, oldest first: step, name, path (the folder in the run), size, metrics."""
        folder = self.run_dir(run_id)
        with self._connect() as db:
            rows = db.execute("SELECT * FROM checkpoints WHERE run_id=? ORDER BY step", (run_id,)).fetchall()
        return [_checkpoint(c, folder) for c in rows]

    def recorded_checkpoints(self, run_id: str) -> list[Path]:
        """The run's checkpoint folders as its events record them, oldest first, read from its folder alone
        (never the index): what every process of a resumed distributed run agrees to resume from."""
        folder = self.run_dir(run_id)
        state = RunState.from_events(_events_in(folder))
        return [folder / state.checkpoints[step]["name"] for step in sorted(state.checkpoints)]

    def read_events(self, run_id: str, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Complete event lines from byte ``offset`` on, and the offset to continue from."""
        path = self.run_dir(run_id) / EVENTS_FILE
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next read
        return decode_events(chunk[:end]), offset + end

    def log_tail(self, run_id: str, lines: int = 40) -> str:
        path = self.run_dir(run_id) / LOG_FILE
        if not path.exists():
            return ""
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - max(64 * 1024, lines * 512)))  # enough bytes for `lines`
            text = f.read().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    # ----- writing (the run's worker; its supervisor; resume, under the run's lock) -----------------
    def append_event(self, run_id: str, event: dict[str, Any]) -> None:
        """Record one event: a line in events.jsonl (the truth), for a status its run.json, then its
        effect on the index (a cache).

        A status is written under the run's lock, so run.json and its index row change together and a
        reader's repair never undoes one. A damaged index is rebuilt, and the run goes on. Queued sets the run's disk reserve aside and forgets the last
        attempt's processes; a final status gives the reserve back first, so a full disk still records
        why the run ended.
        """
        event = {"t": now(), **event}
        folder = self.run_dir(run_id)
        status = event.get("status") if event["type"] == "status" else None
        with self.run_lock(run_id) if status else nullcontext(), self._index_lock():
            if status in FINAL_STATUSES:
                (folder / RESERVE_FILE).unlink(missing_ok=True)
            elif status == "queued":
                _hold_reserve(folder)
            _append_line(folder / EVENTS_FILE, event)
            if status:
                record = self.read_record(run_id)
                record.update(_with_start_times({k: v for k, v in event.items() if k in ("status", "pid", "error")}))
                record["started" if status == "running" else "ended"] = event["t"]
                if status in FINAL_STATUSES:
                    record.update(pid=None, pid_started=None)
                elif status == "queued":
                    record.update(dict.fromkeys(_PROCESS_FIELDS), queued_at=event["t"])
                write_json_atomic(folder / RUN_FILE, record)
            try:
                with self._transaction() as db:
                    _apply_event(db, run_id, event)
                return
            except IndexDamaged:
                pass  # the event is in its folder; rebuilt (outside the locks held here), the index has it
        self._heal_index()

    def set_status(self, run_id: str, status: str, **fields: Any) -> None:
        if status not in STATUSES:
            raise RunError(f"unknown status '{status}'")
        self.append_event(run_id, {"type": "status", "status": status, **fields})

    # ----- what readers see of a run whose processes are gone ---------------------------------------
    @_heals_index
    def dead_runs(self, run_id: str | None = None) -> dict[str, str]:
        """Runs queued or running whose processes are gone, with why: id -> error (`dead_run_error`).

        Looks at the runs the index shows queued or running, or at ``run_id`` whatever its row says.
        Readers report these runs as failed and write nothing to their folders; the supervisor (or the
        next resume) records it. A row that disagrees with its run.json is repaired on the way.
        """
        with self._connect() as db:
            rows = (db.execute("SELECT id, status FROM runs WHERE id=?", (run_id,)) if run_id else
                    db.execute("SELECT id, status FROM runs WHERE status IN ('queued', 'running')")).fetchall()
        dead = {}
        for row in rows:
            try:
                record = self.read_record(row["id"])
                if record.get("status") != row["status"]:
                    record = self._repair(row["id"])
            except RunError:
                continue  # a damaged run.json: reading that run says so; the others stay listable
            failure = dead_run_error(record, self.root / row["id"])
            if failure:
                dead[row["id"]] = failure
        return dead

    def _repair(self, run_id: str) -> dict[str, Any]:
        """Bring the run's index rows into line with its run.json, which wins (a writer died, or its index
        write failed, between the two); returns the record.

        Under the run's lock, so it never undoes a status being written. A run that has ended (its
        writers are done) is re-read from its events; an active one gets its status columns. Best
        effort: a reader that cannot write (a full disk, a read-only mount) still reports run.json.
        """
        try:
            with self.run_lock(run_id):
                record = self.read_record(run_id)
                with self._transaction() as db:
                    row = db.execute("SELECT status FROM runs WHERE id=?", (run_id,)).fetchone()
                    if row is not None and row["status"] == record.get("status"):
                        return record  # its writer got there first
                    if row is None or record.get("status") in FINAL_STATUSES:
                        _reindex_run(db, self.root / run_id, record)
                    else:  # its last status as the index would have recorded it (start time, phase)
                        last = next((e for e in reversed(_events_in(self.root / run_id)) if e["type"] == "status"), None)
                        if last is not None:
                            _apply_event(db, run_id, last)
                        _update(db, run_id, {key: record.get(key) for key in ("status", "error", "pid")})
        except (OSError, sqlite3.OperationalError, DiskFull):
            return self.read_record(run_id)
        return record

    def status(self, run_id: str) -> tuple[str, str | None]:
        """The run's status and error as a reader reports them (from run.json; failed if found dead)."""
        record = self.read_record(run_id)
        failure = dead_run_error(record, self.root / run_id)
        if failure:
            return "failed", failure
        return record.get("status", "queued"), record.get("error")

    def record_if_dead(self, run_id: str) -> bool:
        """Record a run found dead as failed; True if it was. For ``resume``, holding :meth:`run_lock`,
        when neither the worker nor its supervisor lived to record it."""
        failure = dead_run_error(self.read_record(run_id), self.root / run_id)
        if failure:
            self.set_status(run_id, "failed", error=failure)
        return bool(failure)

    # ----- one writer at a time -----------------------------------------------------------------------
    @contextmanager
    def run_lock(self, run_id: str) -> Iterator[None]:
        """The run's short lock: held for each change of run.json (with its index row) and for resume's
        compare-and-set. Re-entrant within a thread (resume sets a status while holding it); other
        threads and processes wait. Never the life lock, so nobody waits for a supervisor to end."""
        path = (self.run_dir(run_id) / LOCK_FILE).resolve()
        held = _HELD_LOCKS.__dict__.setdefault("paths", set())
        if path in held:
            yield
            return
        with open(path, "a") as handle:
            _flock(handle, exclusive=True, wait=True)
            held.add(path)
            try:
                yield
            finally:
                held.discard(path)

    def hold_run(self, run_id: str) -> None:
        """Make this process the run's supervisor until it exits: take the run's life lock (RunBusy when
        another process holds it), record this machine and this process's pid with its start time in
        run.json, and start a heartbeat thread. The supervisor calls it first, before it waits for a
        device, so that a run waiting for one is alive too."""
        folder = self.run_dir(run_id)
        handle = open(folder / LIFE_LOCK_FILE, "a")
        deadline = time.monotonic() + 5
        while not _flock(handle, exclusive=True, wait=False):
            if time.monotonic() > deadline:
                handle.close()
                raise RunBusy(f"run {run_id} already has a supervisor (another process holds "
                              f"{folder / LIFE_LOCK_FILE}); a run has one writer at a time")
            time.sleep(0.05)  # a reader's probe (has_supervisor) holds it for an instant
        _SUPERVISED.append(handle)
        heartbeat = folder / HEARTBEAT_FILE
        heartbeat.touch()
        self.set_record_fields(run_id, **host_identity(), supervisor_pid=os.getpid())
        threading.Thread(target=_beat, args=(heartbeat, heartbeat_interval()), daemon=True,
                         name=f"ftkit-heartbeat-{run_id}").start()

    def has_supervisor(self, run_id: str) -> bool:
        """Whether a process holds the run's life lock (here, or on another machine where the shared file
        system's locks reach)."""
        try:
            handle = open(self.run_dir(run_id) / LIFE_LOCK_FILE, "rb")
        except FileNotFoundError:
            return False
        with handle:
            return not _flock(handle, exclusive=False, wait=False)

    @_heals_index
    def change_token(self) -> str:
        """A value that changes whenever any run changes (or is found dead): cheap enough to poll."""
        dead = self.dead_runs()
        with self._connect() as db:
            count, updated = db.execute("SELECT COUNT(*), MAX(updated) FROM runs").fetchone()
        return f"{count}:{updated}" + (f":dead={','.join(sorted(dead))}" if dead else "")

    def set_record_fields(self, run_id: str, **fields: Any) -> None:
        """Fields of run.json that are not index columns (host, supervisor pid, exit reason), under the
        run's lock; a pid goes in with its start time (see `_with_start_times`)."""
        with self.run_lock(run_id):
            record = self.read_record(run_id)
            record.update(_with_start_times(fields))
            write_json_atomic(self.run_dir(run_id) / RUN_FILE, record)

    # ----- stopping and deleting --------------------------------------------------------------------
    def request_stop(self, run_id: str) -> None:
        """Ask the worker to save a checkpoint and stop; it looks for this file after every step."""
        (self.run_dir(run_id) / STOP_FILE).touch()

    def clear_stop(self, run_id: str) -> None:
        (self.run_dir(run_id) / STOP_FILE).unlink(missing_ok=True)

    def stop_requested(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / STOP_FILE).exists()

    @_heals_index
    def delete_run(self, run_id: str) -> None:
        """Remove a run, files first: its folder is renamed out of sight, then its index rows go, then
        its files. RunBusy while it trains (or a worker has started); a queued run that waits deletes,
        and its supervisor ends quietly. A failure leaves the folder and the index agreeing."""
        folder = self._real_path(self.run_dir(run_id))
        with self.run_lock(run_id):
            record = self.read_record(run_id)
            alive = not dead_run_error(record, folder)
            if alive and (record.get("status") == "running" or record.get("status") == "queued" and record.get("pid")):
                raise RunBusy(f"run '{run_id}' is {record['status']}; stop it first (`ftkit stop {run_id}`) "
                              "and delete it once it has ended")
            doomed = _set_aside(folder)
            try:
                with self._transaction() as db:
                    for table, key in _RUN_TABLES:
                        db.execute(f"DELETE FROM {table} WHERE {key}=?", (run_id,))
            except BaseException:
                os.rename(doomed, folder)
                raise
        _remove(doomed, f"run '{run_id}'")

    @_heals_index
    def delete_checkpoint(self, run_id: str, step: int) -> None:
        """Remove one checkpoint of a run that has ended (RunBusy while it is queued or running, or its
        supervisor lives: a resume or the best model may need it). Files first, as for a run."""
        with self.run_lock(run_id):
            record = self.read_record(run_id)
            if (record.get("status") in ACTIVE_STATUSES and not dead_run_error(record, self.root / run_id)
                    or self.has_supervisor(run_id)):
                raise RunBusy(f"run '{run_id}' is {record.get('status')}: its checkpoints are in use (its resume "
                              f"or best model may need step {step}); stop it and delete once it has ended")
            with self._connect() as db:
                row = db.execute("SELECT path FROM checkpoints WHERE run_id=? AND step=?", (run_id, int(step))).fetchone()
            if row is None:
                raise RunError(f"run '{run_id}' has no checkpoint at step {step}")
            folder = self._real_path(self.run_dir(run_id) / checkpoint_of_event({"path": row["path"]}))
            doomed = _set_aside(folder) if folder.exists() else None
            try:
                self.append_event(run_id, {"type": "checkpoint_deleted", "step": int(step)})
            except BaseException:
                if doomed:
                    os.rename(doomed, folder)
                raise
        if doomed:
            _remove(doomed, f"checkpoint {step} of run '{run_id}'")

    def _real_path(self, path: Path) -> Path:
        """``path``, a folder in this store, refused when a link leads it elsewhere: a delete acts on that
        folder itself, never on a link's target (inside the store or out)."""
        real = path.resolve()
        if real != self.root.resolve() / path.relative_to(self.root):
            raise RunError(f"refusing to delete {path}: a link leads it to {real}; remove the link by hand if that "
                           "is what you mean")
        return real

    # ----- recovery ------------------------------------------------------------------------------
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
                    write_json_atomic(folder / RUN_FILE, _record_from_events(folder, _events_in(folder)))
            except OSError:
                continue  # deleted since it was listed
        with self._index_lock(exclusive=True):
            fresh = self.root / f".{INDEX_FILE}.{secrets.token_hex(4)}"
            try:
                count = _build_index(fresh, self._run_folders())
                for suffix in ("-wal", "-shm"):  # the old index's: never to be read beside the new one
                    Path(f"{self.index_path}{suffix}").unlink(missing_ok=True)
                os.replace(fresh, self.index_path)
                _fsync_folder(self.root)
            except (OSError, sqlite3.DatabaseError) as exc:
                for suffix in ("", "-journal", "-wal", "-shm"):
                    Path(f"{fresh}{suffix}").unlink(missing_ok=True)
                if is_disk_full(exc) or isinstance(exc, sqlite3.DatabaseError) and self._out_of_space(exc):
                    raise no_space(INDEX_FILE, self.root, exc) from None
                raise
        return count


def _build_index(path: Path, folders: Iterator[Path]) -> int:
    """A complete index of ``folders`` in a new SQLite file at ``path``, in WAL mode; returns runs indexed."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        _add_missing_columns(db)
        db.execute("BEGIN")
        count = 0
        for folder in folders:
            try:
                record = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
            except OSError:
                continue  # deleted since it was listed
            except (ValueError, UnicodeDecodeError):  # torn again since the repair: its events still tell
                record = _record_from_events(folder, _events_in(folder))
            _reindex_run(db, folder, record)
            count += 1
        db.execute("COMMIT")
    finally:
        db.close()  # checkpoints the WAL into the file and removes it
    return count


# ----- index projection ---------------------------------------------------------------------------


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring an index made by an older ftkit up to `_SCHEMA` (one writer at a time; another may get there first)."""
    have = {row[1] for row in db.execute("PRAGMA table_info(runs)").fetchall()}
    missing = [name for name in _ADDED_COLUMNS if name not in have]
    if not missing:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        have = {row[1] for row in db.execute("PRAGMA table_info(runs)").fetchall()}
        for name in missing:
            if name not in have:
                db.execute(f"ALTER TABLE runs ADD COLUMN {name} {_ADDED_COLUMNS[name]}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _events_in(folder: Path) -> list[dict[str, Any]]:
    path = folder / EVENTS_FILE
    return decode_events(path.read_bytes()) if path.exists() else []


def _reindex_run(db: sqlite3.Connection, folder: Path, record: dict[str, Any]) -> None:
    """Replace a run's index rows with what its folder says: its events folded, and run.json's status."""
    run_id = record["id"]
    for table, key in _RUN_TABLES:
        db.execute(f"DELETE FROM {table} WHERE {key}=?", (run_id,))
    _insert_run(db, {**record, "status": "queued", "pid": None, "error": None})
    for event in _events_in(folder):
        _apply_event(db, run_id, event)
    db.execute("UPDATE runs SET status=?, error=?, pid=? WHERE id=?",
               (record.get("status", "failed"), record.get("error"), record.get("pid"), run_id))


def _record_from_events(folder: Path, events: list[dict[str, Any]]) -> dict[str, Any]:
    """A run.json recreated from config.yaml and the event stream (rebuild_index's repair of a torn one).

    A run still marked running keeps its worker's pid, so readers can tell whether it still is.
    """
    import yaml

    config = Config.from_dict(yaml.safe_load((folder / CONFIG_FILE).read_text(encoding="utf-8")) or {})
    last = next((e for e in reversed(events) if e["type"] == "status"), {})
    status = last.get("status", "queued")
    return {"id": folder.name, "name": config.run_name, "status": status, "task": config.task,
            "model": config.model, "adapter": config.adapter.kind, "sweep": config.output.sweep,
            "created": events[0].get("t") if events else (folder / CONFIG_FILE).stat().st_mtime,
            "pid": last.get("pid") if status == "running" else None, "error": last.get("error")}


def _insert_run(db: sqlite3.Connection, record: dict[str, Any]) -> None:
    db.execute(
        "INSERT OR REPLACE INTO runs (id, name, status, task, model, adapter, pid, error, created, updated, sweep) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (record["id"], record["name"], record["status"], record.get("task"), record.get("model"),
         record.get("adapter"), record.get("pid"), record.get("error"), record.get("created"), record.get("created"),
         record.get("sweep")),
    )


def _apply_event(db: sqlite3.Connection, run_id: str, event: dict[str, Any]) -> None:
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
            "INSERT OR REPLACE INTO checkpoints (run_id, step, path, size, adapter_only, metrics, t) VALUES (?,?,?,?,?,?,?)",
            (run_id, c["step"], c["name"], c["size"], int(c["adapter_only"]), json.dumps(c["metrics"], default=str), c["t"]),
        )
    if update.kept is not None:
        db.execute(f"DELETE FROM checkpoints WHERE run_id=? AND step NOT IN ({','.join('?' * len(update.kept))})",
                   (run_id, *update.kept))
    if update.deleted_step is not None:
        db.execute("DELETE FROM checkpoints WHERE run_id=? AND step=?", (run_id, update.deleted_step))
    if update.summary:
        _update(db, run_id, update.summary)


def _update(db: sqlite3.Connection, run_id: str, sets: dict[str, Any]) -> None:
    columns = ", ".join(f"{k}=?" for k in sets)
    db.execute(f"UPDATE runs SET {columns} WHERE id=?", (*sets.values(), run_id))


def dead_run_error(record: dict[str, Any], folder: Path) -> str | None:
    """Why a queued or running run has stopped without a word, or None while it lives (or is neither).

    A queued run that no supervisor has taken up (no host recorded) is gone once it has waited longer
    than `heartbeat_timeout`. Once a supervisor has recorded its host, a reader on another machine
    judges by the heartbeat's age alone; on that machine a reboot (another boot id) ended every
    process, and otherwise the supervisor's and worker's pids, each with its start time, tell.
    """
    status = record.get("status")
    if status not in ACTIVE_STATUSES:
        return None
    host, since = record.get("host"), record.get("queued_at") or record.get("created") or now()
    if host is None and status == "queued":
        waited, limit = now() - since, heartbeat_timeout()
        return None if waited <= limit else (f"queued for {waited:.0f} s and no supervisor took it up "
                                             f"(FTKIT_HEARTBEAT_TIMEOUT is {limit:g} s); see {LOG_FILE}")
    here = host_identity()
    if host is not None and host != here["host"]:
        try:
            beat = (folder / HEARTBEAT_FILE).stat().st_mtime
        except OSError:
            beat = since
        age, limit = now() - beat, heartbeat_timeout()
        return None if age <= limit else (f"no heartbeat for {age:.0f} s from its supervisor on {host} "
                                          f"(FTKIT_HEARTBEAT_TIMEOUT is {limit:g} s): presumed dead")
    if host is not None and record.get("boot_id") not in (None, here["boot_id"]):
        return f"{host} has restarted since the run was {status}: its processes are gone"
    if any(process_alive(record.get(key), record.get(f"{key}_started")) for key in ("pid", "supervisor_pid")):
        return None
    if status == "queued":
        return (f"its supervisor (pid {record.get('supervisor_pid')}) died before the training process reported "
                "(killed, or out of memory)")
    return record.get("exit_reason") or DIED_WITHOUT_REPORTING


def _with_start_times(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with each pid's start time beside it (``pid_started``, ``supervisor_pid_started``), so
    that a pid the system later gives another process is never taken for the run's."""
    for key in ("pid", "supervisor_pid"):
        if key in fields:
            fields[f"{key}_started"] = process_start_time(fields[key]) if fields[key] else None
    return fields


def _flock(handle: Any, exclusive: bool, wait: bool) -> bool:
    """flock ``handle``'s file (NFS carries it to other machines as a byte-range lock); False when another
    process holds it and ``wait`` is off."""
    import fcntl  # not on Windows: only what locks needs it

    try:
        fcntl.flock(handle, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def _beat(path: Path, interval: float) -> None:
    """A supervisor's heartbeat: touch ``path`` every ``interval`` seconds for as long as the process lives."""
    while True:
        time.sleep(interval)
        try:
            path.touch()  # a new time on an existing file: no disk space needed
        except OSError:
            pass  # a hiccup of a shared file system, or the run was deleted: the next beat tries again


def _append_line(path: Path, event: dict[str, Any]) -> None:
    """Append ``event`` as one line, written through. After a writer killed mid-line the line starts
    afresh; a line the disk cannot take is cut back off, so the lines before it stay as they were."""
    line = json.dumps(event, default=str).encode("utf-8") + b"\n"
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a writer killed mid-line (kill -9, full disk)
            line = b"\n" + line
        written = 0
        try:
            while written < len(line):
                written += os.write(fd, line[written:])
        except OSError as exc:
            if written and os.fstat(fd).st_size == size + written:  # nobody wrote after it: take it back
                os.ftruncate(fd, size)
            if is_disk_full(exc):
                raise no_space(path.name, path.parent, exc) from None
            raise
    finally:
        os.close(fd)


def _hold_reserve(folder: Path) -> None:
    """Set `RESERVE_BYTES` of disk aside for the run's final status, written as data (a sparse file
    would hold nothing back)."""
    path = folder / RESERVE_FILE
    if path.exists():
        return
    try:
        with open(path, "wb") as f:
            f.write(bytes(RESERVE_BYTES))
    except OSError as exc:
        path.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise no_space(RESERVE_FILE, folder, exc) from None
        raise


def _set_aside(folder: Path) -> Path:
    """Rename ``folder`` to a hidden name beside it, where nothing lists or loads it: the one atomic step
    of a delete before anything is removed."""
    doomed = folder.with_name(f"{DELETING_PREFIX}{folder.name}-{secrets.token_hex(3)}")
    try:
        os.rename(folder, doomed)
    except OSError as exc:
        raise RunError(f"could not delete {folder} ({exc}); nothing was removed") from None
    return doomed


def _remove(doomed: Path, what: str) -> None:
    try:
        shutil.rmtree(doomed)
    except OSError as exc:
        raise RunError(f"{what} is deleted, but some of its files could not be removed ({exc}); "
                       f"remove {doomed} by hand") from None


def _summary(row: sqlite3.Row, checkpoints: list[sqlite3.Row], failure: str | None = None) -> dict[str, Any]:
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
        "best_checkpoint": _best_step(checkpoints, data["best_metric_name"]),
        # What the worker does before its first step (ftkit.events.PHASES); None once it trains or ends.
        "phase": ({"name": data["phase"], "done": data["phase_done"], "total": data["phase_total"],
                   "detail": data["phase_detail"]} if data.get("phase") and data["status"] in ("queued", "running")
                  else None),
    }


def _best_step(checkpoints: list[sqlite3.Row], best_metric_name: str | None) -> int | None:
    """The step of the checkpoint `layout.best_checkpoint` picks by the run's ranked metric; None before
    the run has one (its best metric is named ``<SELECTION_SPLIT>_<metric>``)."""
    if not checkpoints or not best_metric_name:
        return None
    metric = best_metric_name.removeprefix(f"{SELECTION_SPLIT}_")
    return best_checkpoint(({"step": c["step"], "metrics": json.loads(c["metrics"] or "{}")} for c in checkpoints),
                           metric)["step"]


def _checkpoint(row: sqlite3.Row, run_dir: Path) -> dict[str, Any]:
    name = checkpoint_of_event({"path": row["path"], "step": row["step"]})
    return {"step": row["step"], "name": name, "path": str(run_dir / name), "size": row["size"],
            "adapter_only": bool(row["adapter_only"]), "metrics": json.loads(row["metrics"] or "{}")}
