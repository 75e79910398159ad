"""The run store: one folder per run (the truth) plus a SQLite index (a rebuildable projection).

Plain Python and SQLite, shared by the training worker, the notebook kernel, the CLI and the
Jupyter server. Each run has one writer (its worker; its supervisor records how the worker ended);
everyone else reads, and reading never writes. Every change to a run is an event appended to
``events.jsonl``; the index is what those events say (folded by `ftkit.events.RunState`), so
:meth:`RunStore.rebuild_index` can recreate it from the folders alone. File names and the
checkpoint policy come from `ftkit.layout`.

A reader that finds a run marked running whose worker and supervisor are both gone (kill -9 of
both, a machine reboot) reports it as failed in what it returns, without writing; the next
``resume`` records it, holding the run's lock (:meth:`RunStore.record_if_dead`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .config import Config, resolve_runs_dir
from .errors import RunError
from .events import FINAL_STATUSES, STATUSES, RunState
from .layout import CONFIG_FILE, EVENTS_FILE, INDEX_FILE, LOCK_FILE, LOG_FILE, RUN_FILE, STOP_FILE, checkpoint_of_event

DIED_WITHOUT_REPORTING = "the training process died without reporting (killed, or out of memory)"
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
# Columns added to `runs` after its first release, with their types: an index made before them gets
# them on open (ALTER TABLE ADD COLUMN, NULL for the runs already there), so an old index.sqlite opens.
_ADDED_COLUMNS = {"phase": "TEXT", "phase_done": "INTEGER", "phase_total": "INTEGER", "phase_detail": "TEXT"}


def now() -> float:
    return time.time()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temporary name and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def process_alive(pid: int | None) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


class RunStore:
    """Runs under one folder (``output.dir``, ``$FTKIT_RUNS_DIR`` or ``./ftkit-runs``)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = resolve_runs_dir(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.index_path = self.root / INDEX_FILE
        try:
            with self._connect() as db:
                # Missing, emptied or cut before its first page: SQLite sees a new database.
                fresh = db.execute("SELECT 1 FROM sqlite_master WHERE name='runs'").fetchone() is None
                db.executescript(_SCHEMA)
                _add_missing_columns(db)
        except RunError:
            return  # a damaged index: every query says so, and rebuild_index() (still callable) recreates it
        if fresh and any(self._run_folders()):
            self.rebuild_index()

    # ----- SQLite ---------------------------------------------------------------------------
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.index_path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout=30000")
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None
        try:
            yield db
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):  # locked, busy, read-only: not damage
                raise
            raise self._damaged(exc) from None  # a page torn or truncated past the schema
        finally:
            db.close()

    def _damaged(self, exc: Exception) -> RunError:
        return RunError(
            f"the run index {self.index_path} is damaged ({exc}). Runs are safe in their folders: "
            f"rebuild the index with `ftkit runs --rebuild-index` or RunStore(...).rebuild_index()."
        )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
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
        if prepare is not None:
            try:
                config = prepare(folder)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
        (folder / CONFIG_FILE).write_text(config.to_yaml(), encoding="utf-8")
        (folder / EVENTS_FILE).touch()
        record = {"id": run_id, "name": config.run_name, "status": "queued", "created": now(),
                  "task": config.task, "model": config.model, "adapter": config.adapter.kind}
        write_json_atomic(folder / RUN_FILE, record)
        with self._transaction() as db:
            _insert_run(db, record)
        return run_id

    def run_dir(self, run_id: str) -> Path:
        """The folder of a run that exists; ids are looked up, never trusted as paths."""
        if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
            raise RunError(f"'{run_id}' is not a run id")
        folder = self.root / run_id
        if not (folder / RUN_FILE).is_file():
            raise RunError(f"no run '{run_id}' in {self.root}")
        return folder

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
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and (folder / RUN_FILE).is_file():
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
            where.append("(name LIKE ? OR id LIKE ? OR model LIKE ? OR task LIKE ?)")
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
            counts = dict(db.execute(
                f"SELECT run_id, COUNT(*) FROM checkpoints WHERE run_id IN ({','.join('?' * len(ids))}) GROUP BY run_id",
                ids).fetchall()) if ids else {}
        return [_summary(row, counts.get(row["id"], 0), dead.get(row["id"])) for row in rows], total

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
        detail = _summary(row, len(ckpt_rows), failure)
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

    def checkpoints(self, run_id: str) -> list[dict[str, Any]]:
        """The run's checkpoints, oldest first: step, name, path (the folder in the run), size, metrics."""
        folder = self.run_dir(run_id)
        with self._connect() as db:
            rows = db.execute("SELECT * FROM checkpoints WHERE run_id=? ORDER BY step", (run_id,)).fetchall()
        return [_checkpoint(c, folder) for c in rows]

    def read_events(self, run_id: str, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Complete event lines from byte ``offset`` on, and the offset to continue from."""
        path = self.run_dir(run_id) / EVENTS_FILE
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next read
        return _decode_events(chunk[:end]), offset + end

    def log_tail(self, run_id: str, lines: int = 40) -> str:
        path = self.run_dir(run_id) / LOG_FILE
        if not path.exists():
            return ""
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    # ----- writing (the run's worker; its supervisor; resume, under the run's lock) -----------------
    def append_event(self, run_id: str, event: dict[str, Any]) -> None:
        """Record one event: a flushed line in events.jsonl, then its effect on the index."""
        event = {"t": now(), **event}
        folder = self.run_dir(run_id)
        line = json.dumps(event, default=str).encode("utf-8") + b"\n"
        with open(folder / EVENTS_FILE, "ab+") as f:
            size = f.seek(0, os.SEEK_END)
            if size:
                f.seek(size - 1)
                if f.read(1) != b"\n":  # a writer killed mid-line (kill -9, full disk): start a fresh line
                    line = b"\n" + line
            f.write(line)
            f.flush()
        if event["type"] == "status":
            record = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
            record.update({k: v for k, v in event.items() if k in ("status", "pid", "error")})
            record["started" if event["status"] == "running" else "ended"] = event["t"]
            if event["status"] in FINAL_STATUSES:
                record["pid"] = None
            write_json_atomic(folder / RUN_FILE, record)
        with self._transaction() as db:
            _apply_event(db, run_id, event)

    def set_status(self, run_id: str, status: str, **fields: Any) -> None:
        if status not in STATUSES:
            raise RunError(f"unknown status '{status}'")
        self.append_event(run_id, {"type": "status", "status": status, **fields})

    # ----- what readers see of a run whose processes are gone ---------------------------------------
    def dead_runs(self, run_id: str | None = None) -> dict[str, str]:
        """Runs marked running whose worker and supervisor are both gone, with why: id -> error.

        Read only: readers report these runs as failed; the supervisor (or the next resume) records it.
        """
        with self._connect() as db:
            sql = "SELECT id FROM runs WHERE status='running'" + (" AND id=?" if run_id else "")
            ids = [row["id"] for row in db.execute(sql, (run_id,) if run_id else ()).fetchall()]
        dead = {}
        for found in ids:
            try:
                failure = dead_run_error(self.read_record(found))
            except RunError:
                continue  # a damaged run.json: reading that run says so; the others stay listable
            if failure:
                dead[found] = failure
        return dead

    def status(self, run_id: str) -> tuple[str, str | None]:
        """The run's status and error as a reader reports them (from run.json; failed if found dead)."""
        record = self.read_record(run_id)
        failure = dead_run_error(record)
        if failure:
            return "failed", failure
        return record.get("status", "queued"), record.get("error")

    def record_if_dead(self, run_id: str) -> bool:
        """Record a run found dead as failed; True if it was. For ``resume``, holding :meth:`run_lock`,
        when neither the worker nor its supervisor lived to record it."""
        failure = dead_run_error(self.read_record(run_id))
        if failure:
            self.set_status(run_id, "failed", error=failure)
        return bool(failure)

    @contextmanager
    def run_lock(self, run_id: str) -> Iterator[None]:
        """Held while a run changes hands (resume), so two callers never both start a worker.
        Not re-entrant: a process takes it once."""
        import fcntl

        with open(self.run_dir(run_id) / LOCK_FILE, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def change_token(self) -> str:
        """A value that changes whenever any run changes (or is found dead): cheap enough to poll."""
        dead = self.dead_runs()
        with self._connect() as db:
            count, updated = db.execute("SELECT COUNT(*), MAX(updated) FROM runs").fetchone()
        return f"{count}:{updated}" + (f":dead={','.join(sorted(dead))}" if dead else "")

    def set_record_fields(self, run_id: str, **fields: Any) -> None:
        """Fields of run.json that are not index columns (supervisor pid, exit reason)."""
        path = self.run_dir(run_id) / RUN_FILE
        record = json.loads(path.read_text(encoding="utf-8"))
        record.update(fields)
        write_json_atomic(path, record)

    # ----- stopping and deleting --------------------------------------------------------------------
    def request_stop(self, run_id: str) -> None:
        """Ask the worker to save a checkpoint and stop; it looks for this file after every step."""
        (self.run_dir(run_id) / STOP_FILE).touch()

    def clear_stop(self, run_id: str) -> None:
        (self.run_dir(run_id) / STOP_FILE).unlink(missing_ok=True)

    def stop_requested(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / STOP_FILE).exists()

    def delete_run(self, run_id: str) -> None:
        folder = self.run_dir(run_id)
        record = self.read_record(run_id)
        if record.get("status") in ("running", "queued") and process_alive(record.get("pid")):
            raise RunError(f"run '{run_id}' is still running; stop it first")
        with self._transaction() as db:
            for table, key in (("runs", "id"), ("metrics", "run_id"), ("checkpoints", "run_id")):
                db.execute(f"DELETE FROM {table} WHERE {key}=?", (run_id,))
        shutil.rmtree(folder)

    def delete_checkpoint(self, run_id: str, step: int) -> None:
        with self._connect() as db:
            row = db.execute("SELECT path FROM checkpoints WHERE run_id=? AND step=?", (run_id, int(step))).fetchone()
        if row is None:
            raise RunError(f"run '{run_id}' has no checkpoint at step {step}")
        self.append_event(run_id, {"type": "checkpoint_deleted", "step": int(step)})
        shutil.rmtree(self.run_dir(run_id) / checkpoint_of_event({"path": row["path"]}), ignore_errors=True)

    # ----- recovery ------------------------------------------------------------------------------
    def rebuild_index(self) -> int:
        """Recreate the index from the run folders (after loss or corruption); returns runs found."""
        if self.index_path.exists():
            try:
                with self._connect() as db:
                    db.execute("SELECT COUNT(*) FROM runs").fetchone()
            except (RunError, sqlite3.DatabaseError):
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{self.index_path}{suffix}").unlink(missing_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)
            _add_missing_columns(db)
            db.executescript("BEGIN; DELETE FROM runs; DELETE FROM metrics; DELETE FROM checkpoints; COMMIT;")
        count = 0
        for folder in self._run_folders():
            events = _decode_events((folder / EVENTS_FILE).read_bytes()) if (folder / EVENTS_FILE).exists() else []
            try:
                record = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                record = _record_from_events(folder, events)  # run.json torn: the folder still knows the run
                write_json_atomic(folder / RUN_FILE, record)
            with self._transaction() as db:
                _insert_run(db, {**record, "status": "queued", "pid": None, "error": None})
                for event in events:
                    _apply_event(db, record["id"], event)
                db.execute("UPDATE runs SET status=?, error=?, pid=? WHERE id=?",
                           (record.get("status", "failed"), record.get("error"), record.get("pid"), record["id"]))
            count += 1
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


def _decode_events(data: bytes) -> list[dict[str, Any]]:
    """Events from complete lines; a line torn by a crash (half an object) is skipped, not fatal."""
    events = []
    for line in data.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "type" in event:
            events.append(event)
    return events


def _record_from_events(folder: Path, events: list[dict[str, Any]]) -> dict[str, Any]:
    """A run.json recreated from config.yaml and the event stream (rebuild_index's repair of a torn one).

    A run still marked running keeps its worker's pid, so readers can tell whether it still is.
    """
    import yaml

    config = Config.from_dict(yaml.safe_load((folder / CONFIG_FILE).read_text(encoding="utf-8")) or {})
    last = next((e for e in reversed(events) if e["type"] == "status"), {})
    status = last.get("status", "queued")
    return {"id": folder.name, "name": config.run_name, "status": status, "task": config.task,
            "model": config.model, "adapter": config.adapter.kind,
            "created": events[0].get("t") if events else (folder / CONFIG_FILE).stat().st_mtime,
            "pid": last.get("pid") if status == "running" else None, "error": last.get("error")}


def _insert_run(db: sqlite3.Connection, record: dict[str, Any]) -> None:
    db.execute(
        "INSERT OR REPLACE INTO runs (id, name, status, task, model, adapter, pid, error, created, updated) "
        "VALUES (?,?,?,?,?,?,?,?,?,?)",
        (record["id"], record["name"], record["status"], record.get("task"), record.get("model"),
         record.get("adapter"), record.get("pid"), record.get("error"), record.get("created"), record.get("created")),
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


def dead_run_error(record: dict[str, Any]) -> str | None:
    """Why a run marked running has stopped without a word (its worker and supervisor are both
    gone), or None while it runs, or when it is not marked running."""
    if record.get("status") != "running":
        return None
    pids = [p for p in (record.get("pid"), record.get("supervisor_pid")) if p]
    if any(process_alive(p) for p in pids):
        return None
    return record.get("exit_reason") or DIED_WITHOUT_REPORTING


def _summary(row: sqlite3.Row, checkpoint_count: int, failure: str | None = None) -> dict[str, Any]:
    data = dict(row)
    if failure:  # found dead: reported as failed since its last sign of life (nothing is written)
        data.update(status="failed", error=failure, pid=None, ended=data.get("updated"), eta_seconds=None)
    ended = data.get("ended") or (now() if data["status"] == "running" else None)
    return {
        "id": data["id"], "name": data["name"], "status": data["status"], "task": data["task"],
        "model": data["model"], "adapter": data["adapter"], "pid": data["pid"], "error": data["error"],
        "created": data["created"], "started": data["started"], "ended": data["ended"],
        "duration": (ended - data["started"]) if data["started"] and ended else None,
        "progress": {"step": data["step"] or 0, "total_steps": data["total_steps"], "epoch": data["epoch"],
                     "samples_per_second": data["samples_per_second"], "eta_seconds": data["eta_seconds"],
                     "loss": data["loss"]},
        "best_metric": {"name": data["best_metric_name"], "value": data["best_metric"]} if data["best_metric_name"] else None,
        "checkpoint_count": checkpoint_count,
        # What the worker does before its first step (ftkit.events.PHASES); None once it trains or ends.
        "phase": ({"name": data["phase"], "done": data["phase_done"], "total": data["phase_total"],
                   "detail": data["phase_detail"]} if data.get("phase") and data["status"] in ("queued", "running")
                  else None),
    }


def _checkpoint(row: sqlite3.Row, run_dir: Path) -> dict[str, Any]:
    name = checkpoint_of_event({"path": row["path"], "step": row["step"]})
    return {"step": row["step"], "name": name, "path": str(run_dir / name), "size": row["size"],
            "adapter_only": bool(row["adapter_only"]), "metrics": json.loads(row["metrics"] or "{}")}
