"""HTTP for the side panel: the run store as REST under ``/ftkit/api/``, plus a long-poll live channel.

A thin layer over :class:`ftkit.runstore.RunStore`, which knows nothing of HTTP. Every verb needs
Jupyter's authentication and its authorizer's consent (resource ``ftkit``; a GET reads, a POST or
DELETE writes, so a deployment's Authorizer can allow reads only). Ids from the URL are looked up
in the store's index, never used to build a path here; a sweep's name (letters, digits, ``.``, ``_``
and ``-``, first a letter or digit: no slash, no ``..``) names its folder under the store's ``.sweeps/``.
Store calls block on SQLite and the file system, so they run in a thread pool and the server's event
loop stays free. A GET never writes a run: a run whose processes died is reported as failed from what
the store sees, and recorded by its supervisor (or the next resume); label-issues reads the training
data as the run did, which may fill the store's shared data cache (``.cache/``) as training does.
What every handler shares is in ``handler.py``; the sweep routes are in ``sweep_routes.py``.

Routes (all JSON; errors are ``{"code", "message"}``):

=======  ================================================  ==========================================
GET      /ftkit/api/runs?status=&q=&sort=&order=&limit=&offset=  a page of run summaries (with the splits
                                                            it saved predictions for), total, etag, and
                                                            the runs of each status matching ``q``
GET      /ftkit/api/live?<same>&etag=&timeout=              the same page, answered once it differs
                                                            from ``etag`` (or after ``timeout`` s)
GET      /ftkit/api/runs/<id>                              detail: config, metrics, checkpoints (whether
                                                            each can resume: optimizer state on disk), log,
                                                            exports, and what Export offers the run
GET      /ftkit/api/runs/<id>/config                       config.yaml text, its path, and that path
                                                            relative to the server root (if inside)
GET      /ftkit/api/runs/<id>/log?lines=                   the last lines of train.log, and its paths
GET      /ftkit/api/runs/<id>/errors?split=test&limit=200   where the model goes wrong, from the saved
                                                            predictions (`ftkit.runs.error_report`)
GET      /ftkit/api/runs/<id>/label-issues?label=&limit=100  the training examples likeliest mislabelled,
                                                            worst first, from the recorded training dynamics
                                                            (`ftkit.datamap.label_issue_report`)
GET      /ftkit/api/compare?ids=A,B,...                   two or more runs side by side: the config keys
                                                            that differ, final metrics, logged curves
                                                            (`ftkit.comparison.comparison`)
GET      /ftkit/api/sweeps                                 every sweep of the store: its summary
                                                            (`ftkit.sweeps.Sweep.summary`)
GET      /ftkit/api/sweeps/<name>                          one sweep's summary: its state, each run's (or
                                                            trial's) settings, status and metric, the best
POST     /ftkit/api/runs/<id>/stop                         ask the worker to checkpoint and stop
POST     /ftkit/api/sweeps/<name>/stop                     stop a sweep (a search asks no more trials and
                                                            stops its running ones); its new summary
POST     /ftkit/api/runs/<id>/exports                      export a checkpoint (``{"checkpoint", "quant"?,
                                                            "ollama"?}``): starts the job, 202; it reports
                                                            through the run's events (detail's ``exports``)
DELETE   /ftkit/api/runs/<id>/exports/<export id>          stop a running export's job
DELETE   /ftkit/api/runs/<id>                              delete a finished run and its folder
DELETE   /ftkit/api/runs/<id>/checkpoints/<step>           delete one checkpoint
=======  ================================================  ==========================================
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized

from ..comparison import comparison
from ..errors import ConfigError, DataError, RunError
from ..process.jobs import start_job
from ..runstore.events import ACTIVE_STATUSES, FINAL_EXPORT_STATES, STATUSES
from ..runstore.layout import CONFIG_FILE, EXPORT_LOG_FILE, EXPORTS_DIR, GGUF_QUANTS, LOG_FILE, PREDICTIONS_DIR
from ..runs import error_report
from ..secrets import mask
from ..runstore import SORT_KEYS, RunBusy, RunStore
from ..tasks import TASK_NAMES, get_task
from .handler import ApiError, FtkitHandler, json_text  # noqa: F401 (json_text: part of this module's API)
from .sweep_routes import SWEEP_NAME_PATTERN, SweepHandler, SweepsHandler, SweepStopHandler

API_PREFIX = "/ftkit/api"
RUN_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
EXPORT_ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
EXPORT_FIELDS = ("checkpoint", "quant", "ollama")  # what POST .../exports reads
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_QUERY_LENGTH = 200
MAX_LIVE_TIMEOUT = 60.0
DEFAULT_LOG_LINES = 500
MAX_LOG_LINES = 20_000
DEFAULT_ERROR_EXAMPLES = 200
MAX_ERROR_EXAMPLES = 5_000
DEFAULT_LABEL_ISSUES = 100
MAX_LABEL_ISSUES = 5_000
MAX_COMPARED_RUNS = 50  # a comparison reads each run's events; the panel selects a handful
LIVE_CHECK_INTERVAL = 0.25  # seconds between looks at the store while a live request waits
OPTIMIZER_STATE_FILE = "optimizer.pt"  # transformers' OPTIMIZER_NAME: in a checkpoint a run can resume from


def _list_params(handler: FtkitHandler) -> dict[str, Any]:
    """Validated list-query arguments, ready for :meth:`RunStore.list_runs`."""
    statuses = [s for value in handler.get_arguments("status") for s in value.split(",") if s]
    unknown = sorted(set(statuses) - set(STATUSES))
    if unknown:
        raise ApiError(400, "invalid_status", f"unknown status {', '.join(unknown)}; use {', '.join(STATUSES)}")
    query = handler.get_argument("q", "").strip()
    if len(query) > MAX_QUERY_LENGTH:
        raise ApiError(400, "invalid_query", f"the search text is longer than {MAX_QUERY_LENGTH} characters")
    sort = handler.get_argument("sort", "created")
    if sort not in SORT_KEYS:
        raise ApiError(400, "invalid_sort", f"cannot sort by '{sort}'; use {', '.join(SORT_KEYS)}")
    order = handler.get_argument("order", "desc")
    if order not in ("asc", "desc"):
        raise ApiError(400, "invalid_order", "order is 'asc' or 'desc'")
    limit = _int_argument(handler, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    offset = _int_argument(handler, "offset", 0, 0, 10**9)
    return {"status": statuses or None, "query": query or None, "sort": sort,
            "descending": order == "desc", "limit": limit, "offset": offset}


def _int_argument(handler: FtkitHandler, name: str, default: int, low: int, high: int) -> int:
    raw = handler.get_argument(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"invalid_{name}", f"{name} must be a whole number, got '{raw}'") from None
    if not low <= value <= high:
        raise ApiError(400, f"invalid_{name}", f"{name} must be between {low} and {high}, got {value}")
    return value


def list_page(store: RunStore, params: dict[str, Any]) -> dict[str, Any]:
    """A page of summaries with an etag that changes when anything shown changes.

    The etag leaves out ``duration``, which grows every second while a run trains; the panel
    computes a running run's duration from ``started`` itself.
    """
    runs, total = store.list_runs(**params)
    for run in runs:  # ids from the index: the panel's errors button shows where there are predictions to read
        run["predictions"] = saved_predictions(store.root / run["id"])
    counts = store.status_counts(params["query"])  # the panel's status chips: a count per status, whatever the filter
    stable = [{k: v for k, v in run.items() if k != "duration"} for run in runs]
    etag = hashlib.sha1(json.dumps([stable, total, counts], sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"runs": runs, "total": total, "counts": counts, "offset": params["offset"], "limit": params["limit"],
            "etag": etag, "server_time": time.time()}


def saved_predictions(folder: Path) -> list[str]:
    """The splits a run saved its predictions for (``predictions/<split>.jsonl``): what its errors view reads."""
    return sorted(path.stem for path in (folder / PREDICTIONS_DIR).glob("*.jsonl"))


class RunsHandler(FtkitHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.in_thread(list_page, self.store, _list_params(self)))


class LiveHandler(FtkitHandler):
    """Long-poll: holds the request until the page differs from the client's ``etag``.

    A plain HTTP request, so it passes every proxy and authenticates like any other call; the
    store is checked every quarter second, so a change reaches the panel well within a second.
    """

    def initialize(self) -> None:
        self.client_gone = False

    def on_connection_close(self) -> None:
        self.client_gone = True

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        params = _list_params(self)
        known = self.get_argument("etag", "")
        try:
            timeout = min(float(self.get_argument("timeout", "25")), MAX_LIVE_TIMEOUT)
        except ValueError:
            raise ApiError(400, "invalid_timeout", "timeout is a number of seconds") from None
        deadline = time.monotonic() + max(timeout, 0.0)
        token = await self.in_thread(self.store.change_token)
        page = await self.in_thread(list_page, self.store, params)
        while page["etag"] == known and time.monotonic() < deadline and not self.client_gone:
            await asyncio.sleep(LIVE_CHECK_INTERVAL)
            latest = await self.in_thread(self.store.change_token)
            if latest != token:  # re-list only when something changed
                token = latest
                page = await self.in_thread(list_page, self.store, params)
        if not self.client_gone:
            self.reply(page)


class RunHandler(FtkitHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        detail = await self.find_run(run_id)
        await self.in_thread(_describe, detail)
        detail["log_tail"] = await self.in_thread(self.store.log_tail, run_id)
        detail["stop_requested"] = await self.in_thread(self.store.stop_requested, run_id)
        self.reply(detail)

    @tornado.web.authenticated
    @authorized
    async def delete(self, run_id: str) -> None:
        await self.find_run(run_id)
        try:
            await self.in_thread(self.store.delete_run, run_id)
        except RunBusy as exc:
            raise ApiError(409, "run_active", str(exc)) from None
        except RunError as exc:  # refused (a link out of the store) or failed; the index agrees with the folders
            raise ApiError(409, "delete_failed", str(exc)) from None
        self.reply({"deleted": run_id})


def _describe(detail: dict[str, Any]) -> None:
    """Add to a run's detail what the panel shows beside the store's record: what Export offers, each
    checkpoint's path, load code and what it holds, and the splits with saved predictions."""
    folder = Path(detail["dir"])
    task = _task_of(detail)
    # what the panel's Export offers: the task's format, and the weights to choose from for GGUF
    detail["export_format"] = task.export_format if task else None
    detail["export_quants"] = list(GGUF_QUANTS) if detail["export_format"] == "gguf" else []
    for checkpoint in detail["checkpoints"]:
        # the same place the store deletes: the checkpoint's folder name inside its run
        checkpoint["abs_path"] = str(folder / checkpoint["name"])
        # the task's "load this checkpoint" code (a pipeline, or ftkit for LoRA adapter weights)
        checkpoint["snippet"] = task.load_snippet(checkpoint["abs_path"], checkpoint["adapter_only"]) if task else None
        # what it holds: the optimizer's state beside the weights while steps are left to resume (its
        # last checkpoint, the model a completed run keeps, is the weights alone: layout.keeps_resume_state)
        checkpoint["resumable"] = (folder / checkpoint["name"] / OPTIMIZER_STATE_FILE).is_file()
    detail["predictions"] = saved_predictions(folder)


class RunConfigHandler(FtkitHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        detail = await self.find_run(run_id)
        path = Path(detail["dir"]) / CONFIG_FILE
        text = await self.in_thread(path.read_text, encoding="utf-8")  # a run from before secrets were refused:
        self.reply({"path": str(path), "text": mask(text), "server_path": self.server_path(path)})  # tokens masked


class RunLogHandler(FtkitHandler):
    """The end of a run's train.log, for runs inside the server root or not ("" before it has one)."""

    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        detail = await self.find_run(run_id)
        lines = _int_argument(self, "lines", DEFAULT_LOG_LINES, 1, MAX_LOG_LINES)
        path = Path(detail["dir"]) / LOG_FILE
        text = await self.in_thread(self.store.log_tail, run_id, lines)
        self.reply({"path": str(path), "text": text, "lines": lines, "status": detail["status"],
                    "server_path": self.server_path(path) if path.exists() else None})


class RunErrorsHandler(FtkitHandler):
    """Where a finished run's model goes wrong, read from its saved predictions (`ftkit.runs.error_report`)."""

    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        await self.find_run(run_id)
        split = self.get_argument("split", "test")
        limit = _int_argument(self, "limit", DEFAULT_ERROR_EXAMPLES, 1, MAX_ERROR_EXAMPLES)
        try:
            report = await self.in_thread(error_report, self.store, run_id, split, limit)
        except RunError as exc:
            raise ApiError(404, "no_predictions", str(exc)) from None
        self.reply(report)


class RunLabelIssuesHandler(FtkitHandler):
    """The training examples likeliest mislabelled, worst first, optionally of one gold label
    (`ftkit.datamap.label_issue_report`); it grows while the run trains (``recorded`` false before any)."""

    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        await self.find_run(run_id)
        label = self.get_argument("label", "") or None
        limit = _int_argument(self, "limit", DEFAULT_LABEL_ISSUES, 1, MAX_LABEL_ISSUES)
        self.reply(await self.in_thread(_label_issues, self.store, run_id, label, limit))


def _label_issues(store: RunStore, run_id: str, label: str | None, limit: int) -> dict[str, Any]:
    from ..datamap import label_issue_report  # torch-free, but pandas and pyarrow: imported on first use

    try:
        return label_issue_report(store, run_id, label=label, limit=limit)
    except ConfigError as exc:
        if label is None:
            raise
        raise ApiError(400, "invalid_label", str(exc)) from None
    except (RunError, DataError) as exc:  # deleted meanwhile, or its training data is gone or changed since
        raise ApiError(409, "training_data_unavailable", str(exc)) from None


class CompareHandler(FtkitHandler):
    """The panel's compare view; polled again while a compared run trains, so it stays cheap (no index reads)."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        ids = list(dict.fromkeys(i.strip() for value in self.get_arguments("ids") for i in value.split(",") if i.strip()))
        if not 2 <= len(ids) <= MAX_COMPARED_RUNS:
            raise ApiError(400, "invalid_ids", f"compare 2 to {MAX_COMPARED_RUNS} runs: ?ids=A,B,... (got {len(ids)})")
        self.reply(await self.in_thread(_compare, self.store, ids))


def _compare(store: RunStore, ids: list[str]) -> dict[str, Any]:
    from ..runs import Run

    try:
        runs = [Run(store.run_dir(run_id).name, store) for run_id in ids]  # ids only: no names, no prefixes
    except RunError as exc:
        raise ApiError(400, "unknown_run", str(exc)) from None
    return comparison(runs)


class StopHandler(FtkitHandler):
    @tornado.web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        detail = await self.find_run(run_id)
        if detail["status"] not in ACTIVE_STATUSES:
            raise ApiError(409, "run_not_active", f"run '{run_id}' is {detail['status']}; only a queued or running run can stop")
        await self.in_thread(self.store.request_stop, run_id)
        self.reply({"id": run_id, "stop_requested": True}, status=202)


def _task_of(detail: dict[str, Any]) -> Any:
    """The run's task (`ftkit.tasks.Task`), or None for a task this ftkit does not know."""
    return get_task(detail["task"]) if detail.get("task") in TASK_NAMES else None


def _export_request(body: bytes) -> tuple[str, str | None, bool]:
    """(checkpoint, quant, ollama) from POST .../exports's JSON body; 400 unless it is exactly that."""
    usage = 'the body is JSON: {"checkpoint": "checkpoint-<step>", "quant"?: "f16", "ollama"?: true}'
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_body", usage) from None
    if not isinstance(data, dict) or not isinstance(data.get("checkpoint"), str) or set(data) - set(EXPORT_FIELDS):
        raise ApiError(400, "invalid_body", usage)
    quant, ollama = data.get("quant"), data.get("ollama", False)
    if not (quant is None or isinstance(quant, str)) or not isinstance(ollama, bool):
        raise ApiError(400, "invalid_body", usage)
    return data["checkpoint"], quant, ollama


class ExportsHandler(FtkitHandler):
    """Export one of the run's checkpoints (`ftkit export`): a job of its own beside the run, started
    here and answered at once; it reports through the run's events (the detail's ``exports``)."""

    @tornado.web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        detail = await self.find_run(run_id)
        checkpoint, quant, ollama = _export_request(self.request.body)
        if checkpoint not in {c["name"] for c in detail["checkpoints"]}:
            raise ApiError(404, "checkpoint_not_found", f"run '{run_id}' has no checkpoint '{checkpoint}'")
        task = _task_of(detail)
        if task is None:
            raise ApiError(400, "export_unsupported", f"this ftkit cannot export a run of task '{detail.get('task')}'")
        export_format = task.export_format
        if export_format == "gguf":
            quant = quant or GGUF_QUANTS[0]
            if quant not in GGUF_QUANTS:
                raise ApiError(400, "invalid_quant", f"quant is one of {', '.join(GGUF_QUANTS)}, got '{quant}'")
        elif quant is not None or ollama:
            raise ApiError(400, "invalid_quant", f"a {task.name} run exports to {export_format}: no quant, no Ollama Modelfile")
        if any(e.get("checkpoint") == checkpoint and e.get("format") == export_format and e.get("quant") == quant
               and e.get("state") not in FINAL_EXPORT_STATES for e in detail["exports"]):
            raise ApiError(409, "export_running", f"{checkpoint} is already being exported to {export_format} {quant or ''}".rstrip())
        export_id = secrets.token_hex(4)
        folder = Path(detail["dir"])
        options = ["--checkpoint", checkpoint, "--format", export_format, *(["--quant", quant] if quant else []),
                   *(["--ollama"] if ollama else []), "--export-id", export_id]
        await self.in_thread(start_job, folder, "export", *options, log_file=folder / EXPORTS_DIR / EXPORT_LOG_FILE)
        self.reply({"export": {"id": export_id, "run": run_id, "checkpoint": checkpoint, "format": export_format,
                               "quant": quant, "state": "started"}}, status=202)


class ExportHandler(FtkitHandler):
    @tornado.web.authenticated
    @authorized
    async def delete(self, run_id: str, export_id: str) -> None:
        await self.find_run(run_id)
        exports = await self.in_thread(self.store.exports, run_id)
        record = next((e for e in exports if e.get("id") == export_id), None)
        if record is None:
            raise ApiError(404, "export_not_found", f"run '{run_id}' has no export '{export_id}'")
        if record.get("state") in FINAL_EXPORT_STATES:
            raise ApiError(409, "export_ended", f"export '{export_id}' has already ended ({record['state']})")
        try:
            await self.in_thread(self.store.stop_export, run_id, export_id)
        except RunError as exc:  # it ended meanwhile
            raise ApiError(409, "export_ended", str(exc)) from None
        self.reply({"export": {"id": export_id, "run": run_id, "stop_requested": True}}, status=202)


class CheckpointHandler(FtkitHandler):
    @tornado.web.authenticated
    @authorized
    async def delete(self, run_id: str, step: str) -> None:
        await self.find_run(run_id)
        try:
            await self.in_thread(self.store.delete_checkpoint, run_id, int(step))
        except RunBusy as exc:
            raise ApiError(409, "checkpoint_in_use", str(exc)) from None
        except RunError as exc:
            raise ApiError(404, "checkpoint_not_found", str(exc)) from None
        self.reply({"deleted": {"run": run_id, "step": int(step)}})


class NotFoundHandler(FtkitHandler):
    """Anything else under the prefix (a bad id, ``..``, an encoded slash) gets a JSON 404."""

    @tornado.web.authenticated
    # one method serves every verb, and a bare @authorized keeps the action of the first request it
    # sees; answering "no such route" is a read whatever the verb
    @authorized("read")
    def get(self) -> None:
        raise ApiError(404, "not_found", "no such ftkit API route; see ftkit/server/routes.py for the list")

    post = put = patch = delete = get


_RUN = rf"{API_PREFIX}/runs/({RUN_ID_PATTERN})"
handlers: list[tuple[str, type[FtkitHandler]]] = [
    (rf"{API_PREFIX}/runs/?", RunsHandler),
    (rf"{API_PREFIX}/live/?", LiveHandler),
    (rf"{_RUN}/?", RunHandler),
    (rf"{_RUN}/config/?", RunConfigHandler),
    (rf"{_RUN}/log/?", RunLogHandler),
    (rf"{_RUN}/errors/?", RunErrorsHandler),
    (rf"{_RUN}/label-issues/?", RunLabelIssuesHandler),
    (rf"{API_PREFIX}/compare/?", CompareHandler),
    (rf"{API_PREFIX}/sweeps/?", SweepsHandler),
    (rf"{API_PREFIX}/sweeps/({SWEEP_NAME_PATTERN})/?", SweepHandler),
    (rf"{API_PREFIX}/sweeps/({SWEEP_NAME_PATTERN})/stop/?", SweepStopHandler),
    (rf"{_RUN}/stop/?", StopHandler),
    (rf"{_RUN}/checkpoints/([0-9]{{1,12}})/?", CheckpointHandler),
    (rf"{_RUN}/exports/?", ExportsHandler),
    (rf"{_RUN}/exports/({EXPORT_ID_PATTERN})/?", ExportHandler),
    (rf"{API_PREFIX}/.*", NotFoundHandler),
]
