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

import json
import os
import re
import secrets
import shutil
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ..errors import RunError
from .events import (ACTIVE_STATUSES, FINAL_EXPORT_STATES, FINAL_STATUSES, STATUSES, RunState, SummaryWriter,
                     read_events_from, read_state)
from .files import (HELD_LOCKS, DiskFull, append_line, folder_mode, hold_reserve, is_disk_full, is_locked, lock,
                    make_private, no_space, remove_set_aside, set_aside, write_json_atomic)
from .index import RUN_TABLES, IndexDamaged, apply_event, create_tables, heals_index, insert_run
from .layout import (CONFIG_FILE, EVENTS_FILE, HEARTBEAT_FILE, INDEX_FILE, LIFE_LOCK_FILE, LOCK_FILE,
                     LOG_FILE, RESERVE_FILE, RUN_FILE, STOP_FILE, checkpoint_of_event, resolve_runs_dir)
from .liveness import beat, dead_run_error, heartbeat_interval, host_identity, now, with_start_times
from .queries import RunQueries

if TYPE_CHECKING:
    from ..config import Config

# What run.json says of an attempt's processes; a new attempt (queued again) starts without them.
_PROCESS_FIELDS = ("host", "boot_id", "pid", "pid_started", "supervisor_pid", "supervisor_pid_started", "exit_reason")


SUMMARIES = SummaryWriter()  # the summaries of the runs this process writes events to (events.jsonl's readers start there)
_SUPERVISED: list[Any] = []  # life-lock files of the runs this process supervises: open, so locked, until it exits


_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class RunBusy(RunError):
    """The run is queued or running (or its supervisor still lives): what was asked would act under its processes."""


class RunStore(RunQueries):
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
                create_tables(db)
            if fresh:  # SQLite gives its -wal and -shm files the database's own mode
                make_private(self.index_path)
        except DiskFull:
            return  # readers still answer from what the index holds; writers say the disk is full
        except IndexDamaged:
            fresh = True
        if fresh and any(self._run_folders()):
            self._heal_index()

    def create_run(self, config: Config, prepare: "Callable[[Path], Config] | None" = None,
                   parent: dict[str, Any] | None = None) -> str:
        """Make the run folder (config, run.json, empty event stream) and its queued index row.

        ``prepare(folder)`` runs first and returns the config to record (it writes snapshots of
        in-memory data there); if it fails, the folder is removed and no run exists. ``parent`` is the
        run the model comes from (`ftkit.runstore.lineage.pin_parent`), kept in run.json.
        """
        run_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        folder = self.root / run_id
        folder.mkdir(mode=folder_mode())  # its config, data snapshots and log are its owner's (FTKIT_SHARED_STORE)
        try:
            if prepare is not None:
                config = prepare(folder)
            (folder / CONFIG_FILE).write_text(config.to_yaml(), encoding="utf-8")
            (folder / EVENTS_FILE).touch()
            hold_reserve(folder)
        except BaseException as exc:
            shutil.rmtree(folder, ignore_errors=True)  # no run rather than half of one
            if is_disk_full(exc):
                raise no_space("a new run", folder, exc) from None
            raise
        record = {"id": run_id, "name": config.run_name, "status": "queued", "created": now(),
                  "task": config.task, "model": config.model, "adapter": config.adapter.kind,
                  "sweep": config.output.sweep}
        if parent:
            record["parent"] = parent
        write_json_atomic(folder / RUN_FILE, record)
        try:
            with self._transaction() as db:
                insert_run(db, record)
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

    def _run_folders(self) -> Iterator[Path]:
        for folder in sorted(self.root.iterdir()):  # a hidden one (.deleting-<id>) is being removed
            if not folder.name.startswith(".") and folder.is_dir() and (folder / RUN_FILE).is_file():
                yield folder

    def read_record(self, run_id: str) -> dict[str, Any]:
        path = self.run_dir(run_id) / RUN_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise RunError(
                f"{path} is damaged ({exc}); the run's config.yaml and events.jsonl are intact. Recreate it with "
                f"`ftkit runs --rebuild-index` (RunStore(...).rebuild_index()), or delete the folder {path.parent}"
            ) from None

    def recorded_checkpoints(self, run_id: str) -> list[Path]:
        """The run's checkpoint folders as its events record them, oldest first, read from its folder alone
        (never the index): what every process of a resumed distributed run agrees to resume from."""
        folder = self.run_dir(run_id)
        state = read_state(folder)[0]
        return [folder / state.checkpoints[step]["name"] for step in sorted(state.checkpoints)]

    def read_events(self, run_id: str, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Complete event lines from byte ``offset`` on, and the offset to continue from."""
        return read_events_from(self.run_dir(run_id) / EVENTS_FILE, offset)

    def read_state(self, run_id: str) -> tuple[RunState, int]:
        """The run's events folded (from its summary on: `ftkit.runstore.events.read_state`), and the
        offset its later events start at."""
        return read_state(self.run_dir(run_id))

    def log_tail(self, run_id: str, lines: int = 40) -> str:
        path = self.run_dir(run_id) / LOG_FILE
        if not path.exists():
            return ""
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - max(64 * 1024, lines * 512)))  # enough bytes for `lines`
            text = f.read().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

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
                hold_reserve(folder)
            append_line(folder / EVENTS_FILE, event)
            SUMMARIES.appended(folder, final=status in FINAL_STATUSES)
            if status:
                record = self.read_record(run_id)
                record.update(with_start_times({k: v for k, v in event.items() if k in ("status", "pid", "error")}))
                record["started" if status == "running" else "ended"] = event["t"]
                if status in FINAL_STATUSES:
                    record.update(pid=None, pid_started=None)
                elif status == "queued":
                    record.update(dict.fromkeys(_PROCESS_FIELDS), queued_at=event["t"])
                write_json_atomic(folder / RUN_FILE, record)
            try:
                with self._transaction() as db:
                    apply_event(db, run_id, event)
                return
            except IndexDamaged:
                pass  # the event is in its folder; rebuilt (outside the locks held here), the index has it
        self._heal_index()

    def set_status(self, run_id: str, status: str, **fields: Any) -> None:
        if status not in STATUSES:
            raise RunError(f"unknown status '{status}'")
        self.append_event(run_id, {"type": "status", "status": status, **fields})

    @contextmanager
    def run_lock(self, run_id: str) -> Iterator[None]:
        """The run's short lock: held for each change of run.json (with its index row) and for resume's
        compare-and-set. Re-entrant within a thread (resume sets a status while holding it); other
        threads and processes wait. Never the life lock, so nobody waits for a supervisor to end."""
        path = (self.run_dir(run_id) / LOCK_FILE).resolve()
        held = HELD_LOCKS.__dict__.setdefault("paths", set())
        if path in held:
            yield
            return
        with open(path, "a") as handle:
            lock(handle)
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
        while not lock(handle, wait=False):
            if time.monotonic() > deadline:
                handle.close()
                raise RunBusy(f"run {run_id} already has a supervisor (another process holds "
                              f"{folder / LIFE_LOCK_FILE}); a run has one writer at a time")
            time.sleep(0.05)  # a reader's probe (has_supervisor) holds it for an instant
        _SUPERVISED.append(handle)
        heartbeat = folder / HEARTBEAT_FILE
        heartbeat.touch()
        self.set_record_fields(run_id, **host_identity(), supervisor_pid=os.getpid())
        threading.Thread(target=beat, args=(heartbeat, heartbeat_interval()), daemon=True,
                         name=f"ftkit-heartbeat-{run_id}").start()

    def has_supervisor(self, run_id: str) -> bool:
        """Whether a process holds the run's life lock (its supervisor, on any machine the locks reach)."""
        return is_locked(self.run_dir(run_id) / LIFE_LOCK_FILE)

    def set_record_fields(self, run_id: str, **fields: Any) -> None:
        """Fields of run.json that are not index columns (host, supervisor pid, exit reason), under the
        run's lock; a pid goes in with its start time (see `with_start_times`)."""
        with self.run_lock(run_id):
            record = self.read_record(run_id)
            record.update(with_start_times(fields))
            write_json_atomic(self.run_dir(run_id) / RUN_FILE, record)

    def request_stop(self, run_id: str) -> None:
        """Ask the worker to save a checkpoint and stop; it looks for this file after every step."""
        (self.run_dir(run_id) / STOP_FILE).touch()

    def clear_stop(self, run_id: str) -> None:
        (self.run_dir(run_id) / STOP_FILE).unlink(missing_ok=True)

    def stop_requested(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / STOP_FILE).exists()

    def stop_export(self, run_id: str, export_id: str) -> dict[str, Any]:
        """Ask a running export job to stop (SIGTERM: it removes its partial files and records "stopped")."""
        import psutil

        record = next((e for e in self.exports(run_id) if e["id"] == export_id), None)
        if record is None:
            raise RunError(f"run '{run_id}' has no export '{export_id}'")
        if record["state"] in FINAL_EXPORT_STATES:
            raise RunError(f"export '{export_id}' of run '{run_id}' has already ended ({record['state']})")
        try:
            psutil.Process(record["pid"]).terminate()
        except psutil.Error:
            pass  # ended meanwhile: its final state is, or is about to be, recorded
        return record

    @heals_index
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
            doomed = set_aside(folder)
            try:
                with self._transaction() as db:
                    for table, key in RUN_TABLES:
                        db.execute(f"DELETE FROM {table} WHERE {key}=?", (run_id,))
            except BaseException:
                os.rename(doomed, folder)
                raise
        remove_set_aside(doomed, f"run '{run_id}'")

    @heals_index
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
            doomed = set_aside(folder) if folder.exists() else None
            try:
                self.append_event(run_id, {"type": "checkpoint_deleted", "step": int(step)})
            except BaseException:
                if doomed:
                    os.rename(doomed, folder)
                raise
        if doomed:
            remove_set_aside(doomed, f"checkpoint {step} of run '{run_id}'")

    def _real_path(self, path: Path) -> Path:
        """``path``, a folder in this store, refused when a link leads it elsewhere: a delete acts on that
        folder itself, never on a link's target (inside the store or out)."""
        real = path.resolve()
        if real != self.root.resolve() / path.relative_to(self.root):
            raise RunError(f"refusing to delete {path}: a link leads it to {real}; remove the link by hand if that "
                           "is what you mean")
        return real
