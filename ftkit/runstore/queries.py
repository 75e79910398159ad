"""What readers ask of a run store: look-ups, lists with search and paging for the panel, one run's
detail, and how runs whose processes are gone are reported (as failed, without writing).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from ..errors import RunError
from .events import FINAL_EXPORT_STATES, FINAL_STATUSES, STATUSES, read_state
from .files import DiskFull
from .index import SEARCH, SORT_KEYS, IndexAccess, apply_event, checkpoint_of_row, events_in, heals_index, reindex_run, summary_of, update_row
from .layout import CONFIG_FILE
from .liveness import dead_run_error, process_alive


class RunQueries(IndexAccess):
    """The reading side of `ftkit.runstore.RunStore` (which supplies ``run_dir``, ``read_record`` and ``run_lock``)."""

    @heals_index
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

    @heals_index
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
            where.append(SEARCH)
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
            marks = ",".join("?" * len(ids))
            for c in db.execute(f"SELECT run_id, step, metrics, ranked FROM checkpoints WHERE run_id IN ({marks})",
                                ids).fetchall() if ids else ():
                checkpoints.setdefault(c["run_id"], []).append(c)
        return [summary_of(row, checkpoints.get(row["id"], []), dead.get(row["id"])) for row in rows], total

    @heals_index
    def status_counts(self, query: str | None = None) -> dict[str, int]:
        """How many runs of each status match ``query`` (a run found dead counts as failed)."""
        dead = self.dead_runs()
        with self._connect() as db:
            rows = db.execute(f"SELECT id, status FROM runs WHERE {SEARCH}" if query else "SELECT id, status FROM runs",
                              [f"%{query}%"] * 4 if query else []).fetchall()
        counts = dict.fromkeys(STATUSES, 0)
        for row in rows:
            counts["failed" if row["id"] in dead else row["status"]] += 1
        return counts

    def _indexed_rows(self, run_id: str) -> tuple[sqlite3.Row | None, list[sqlite3.Row], list[sqlite3.Row]]:
        """One run's index row with its metric and checkpoint rows; (None, [], []) when it has no row."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                return None, [], []
            return (row, db.execute("SELECT * FROM metrics WHERE run_id=? ORDER BY rowid", (run_id,)).fetchall(),
                    db.execute("SELECT * FROM checkpoints WHERE run_id=? ORDER BY step", (run_id,)).fetchall())

    @heals_index
    def get(self, run_id: str) -> dict[str, Any]:
        """Everything about one run: summary, progress, latest metrics per split, checkpoints, config."""
        import yaml

        folder = self.run_dir(run_id)
        failure = self.dead_runs(run_id).get(run_id)
        row, metric_rows, ckpt_rows = self._indexed_rows(run_id)
        if row is None:  # its index write failed (the index damaged and not yet mended, a full disk): the folder says
            with self._transaction() as db:
                reindex_run(db, folder, self.read_record(run_id))
            failure = self.dead_runs(run_id).get(run_id)
            row, metric_rows, ckpt_rows = self._indexed_rows(run_id)
            if row is None:
                raise RunError(f"run '{run_id}' has a folder but no index row; rebuild the index")
        detail = summary_of(row, ckpt_rows, failure)
        latest: dict[str, dict[str, Any]] = {}
        history: list[dict[str, Any]] = []
        for m in metric_rows:
            latest.setdefault(m["split"], {})[m["name"]] = m["value"]
            history.append({"split": m["split"], "step": m["step"], "epoch": m["epoch"], "name": m["name"], "value": m["value"]})
        detail["metrics"] = latest
        detail["metric_history"] = history
        detail["checkpoints"] = [checkpoint_of_row(c, folder) for c in ckpt_rows]
        detail["exports"] = self.exports(run_id)
        for checkpoint in detail["checkpoints"]:
            checkpoint["exports"] = [e for e in detail["exports"] if e.get("checkpoint") == checkpoint["name"]]
        detail["config"] = yaml.safe_load((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        detail["dir"] = str(folder)
        detail["parent"] = self.read_record(run_id).get("parent")  # the run its model came from (runstore.lineage)
        return detail

    def exports(self, run_id: str) -> list[dict[str, Any]]:
        """The run's exports, oldest first, as their events say (`RunState.exports`); one whose job is gone
        without a final state is reported failed (nothing is written)."""
        state = read_state(self.run_dir(run_id), ("export",))[0]
        exports = []
        for record in state.exports.values():
            if record.get("state") not in FINAL_EXPORT_STATES and not process_alive(record.get("pid"),
                                                                                    record.get("pid_started")):
                record = {**record, "state": "failed", "pid": None,
                          "error": "the export process ended without reporting (killed, or its machine restarted)"}
            exports.append(record)
        return exports

    @heals_index
    def checkpoints(self, run_id: str) -> list[dict[str, Any]]:
        """The run's checkpoints, oldest first: step, name, path (the folder in the run), size, metrics."""
        folder = self.run_dir(run_id)
        with self._connect() as db:
            rows = db.execute("SELECT * FROM checkpoints WHERE run_id=? ORDER BY step", (run_id,)).fetchall()
        return [checkpoint_of_row(c, folder) for c in rows]

    @heals_index
    def change_token(self) -> str:
        """A value that changes whenever any run changes (or is found dead): cheap enough to poll."""
        dead = self.dead_runs()
        with self._connect() as db:
            count, updated = db.execute("SELECT COUNT(*), MAX(updated) FROM runs").fetchone()
        return f"{count}:{updated}" + (f":dead={','.join(sorted(dead))}" if dead else "")

    @heals_index
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
                        reindex_run(db, self.root / run_id, record)
                    else:  # its last status as the index would have recorded it (start time, phase)
                        last = next((e for e in reversed(events_in(self.root / run_id)) if e["type"] == "status"), None)
                        if last is not None:
                            apply_event(db, run_id, last)
                        update_row(db, run_id, {key: record.get(key) for key in ("status", "error", "pid")})
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
