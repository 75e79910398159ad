"""The event stream of a run, folded into what it says: status, progress, metrics, checkpoints.

A run's worker appends one JSON object per line to ``events.jsonl``:
``{"t": time, "type": "phase"|"progress"|"log"|"eval"|"checkpoint"|"checkpoint_deleted"|"status"|"export", ...}``
(an export job, `ftkit.engine.export`, appends its own ``export`` events to the same stream).
This module is the one reader of that stream: :func:`decode_events` and :func:`read_events` turn lines
into events (a line torn by a crash is skipped), :class:`Curves` is the one fold of what was logged
at each step (training curves and evaluation metrics, with one rule for a resumed attempt), and
:class:`RunState` is the one fold of everything, built on it. The store's index applies each event
through RunState (and writes what the returned :class:`Update` says), the notebook monitor draws from
it, the CLI's progress bar follows it, and ``compare`` folds only the log and eval lines through
:class:`Curves`, so none of them reads the same events differently. The status vocabulary lives here
too. Plain Python: no torch, no SQLite.

Before its first step a run reports phases (:data:`PHASES`, in the order they come):
``{"type": "phase", "phase": "tokenising", "done": 3000, "total": 12637, "detail": "train"}``.
A run whose devices are busy first waits as queued ("waiting for device"; ``detail`` says how many
runs are ahead, see `ftkit.device_queue`). The supervisor writes "starting" before the worker
imports anything heavy; "reading data" and "tokenising" count splits and examples (``detail``
names the split, ``cached`` marks a tokenised split reused from the cache); "first step" lasts
until the first progress event after it. A progress event or a final status ends the phase (the
fold sets it to None). Once training has begun, the supervisor reports "stalled" (`STALLED_PHASE`) for a run
whose progress has stopped.

An export of a checkpoint reports under its own id and never changes the run's status: ``{"type":
"export", "id": "3f9a0c1e", "state": "started", "pid": ..., "checkpoint": "checkpoint-60", "format":
"gguf", "quant": "q8_0", "path": ...}``, then ``progress`` events (``detail``, ``done``/``total``) and one of
:data:`FINAL_EXPORT_STATES`; :attr:`RunState.exports` merges them per id.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

from .files import write_bytes_atomic
from .layout import EVENTS_FILE, SELECTION_SPLIT, SUMMARY_FILE, best_checkpoint_step, checkpoint_of_event, is_better

STATUSES = ("queued", "running", "completed", "failed", "stopped")
FINAL_STATUSES = ("completed", "failed", "stopped")
ACTIVE_STATUSES = ("queued", "running")  # a run whose processes may still be at work
PROGRESS_KEYS = ("step", "total_steps", "epoch", "samples_per_second", "eta_seconds", "loss")
EVENT_TYPES = ("phase", "progress", "log", "eval", "checkpoint", "checkpoint_deleted", "status", "export")
# An export of a checkpoint (`ftkit export`, a job of its own beside the run) reports under its own ``id``:
# started (with the job's pid), progress (``detail``, ``done``/``total``), then one final state. A completed
# export carries its ``path``, ``size``, ``seconds`` and ``verification`` ({"passed", "agreement",
# "threshold", "examples", "split", ...}); a failed one its ``error``. Exports never change the run's status.
EXPORT_STATES = ("started", "progress", "completed", "failed", "stopped")
FINAL_EXPORT_STATES = ("completed", "failed", "stopped")
PHASES = ("waiting for device", "starting", "reading data", "tokenising", "loading model", "first step")
# A training run whose progress has stopped (`ftkit.process.watch`): its supervisor says so; its next progress clears it.
STALLED_PHASE = "stalled"
# The training curves every Trainer logs, at the top level of a log event (where events from before
# `values` came keep them) and first in the fold's order; anything else a trainer logs, such as TRL's
# ``rewards/chosen``, comes under the event's ``values``. Progress events repeat the last logged loss
# at later steps, so a curve drawn from them runs one logging interval late.
CURVES = ("loss", "learning_rate", "grad_norm")
# Evaluation figures about the evaluation itself (the Trainer's timing; how many answers a generative
# evaluation generated, and in how long), not about the model: never a curve.
BOOKKEEPING = ("epoch", "runtime", "samples_per_second", "steps_per_second", "samples", "generation_seconds")
_decode = json.JSONDecoder().decode  # json.loads less its per-call checks: most of a big stream's time goes here
SUMMARY_VERSION = 1  # of summary.json's layout: another version is ignored (and written anew), never misread
SUMMARY_INTERVAL_S = 30.0  # a live run's summary is at most this old: a reader folds at most this much of its stream
SUMMARY_TAIL_BYTES = 64  # the stream's bytes before a summary's offset, kept to tell it still folds this events.jsonl
_logger = logging.getLogger(__name__)


def decode_events(data: bytes | str, types: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Events from complete lines; a line torn by a crash (half an object) is skipped, not fatal.

    ``types`` keeps those event types alone, and lines that cannot be one of them are never parsed
    (a substring test), which is what keeps ``compare`` fast on long streams.
    """
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    wanted = tuple(f'"{kind}"' for kind in types) if types is not None else None
    events = []
    for line in text.splitlines():
        if wanted is not None and not any(marker in line for marker in wanted):
            continue
        try:
            event = _decode(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "type" in event and (types is None or event["type"] in types):
            events.append(event)
    return events


def read_events(path: Path, types: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """A run's events.jsonl decoded (see :func:`decode_events`); no file, no events."""
    try:
        return decode_events(Path(path).read_bytes(), None if types is None else tuple(types))
    except FileNotFoundError:
        return []


def read_events_from(path: Path, offset: int = 0, types: Iterable[str] | None = None) -> tuple[list[dict[str, Any]], int]:
    """Complete event lines from byte ``offset`` on (of ``types`` alone if given), and the offset to
    continue from: a line still being written waits for the next read. No file: FileNotFoundError."""
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    end = chunk.rfind(b"\n") + 1
    return decode_events(chunk[:end], None if types is None else tuple(types)), offset + end


def _finite(value: Any) -> bool:
    """A number JSON can carry (NaN and infinity are not JSON, and a browser refuses them)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Curves:
    """What a run logged at each step: every number of its log events (``loss``, ``learning_rate``,
    ``grad_norm`` and whatever else the trainer logs, ``rewards/chosen`` say) and ``<split>_<metric>``
    from eval events (never the loss a progress event carries along).

    No list names the curves: a curve is whatever a run reported, so a new trainer's values are drawn
    without a change here. A resumed attempt logs again from its checkpoint's step: its points replace
    the ones from that step on, curve by curve, so each curve is what the latest attempt did. The
    monitor, the CLI, ``compare`` and the index all fold through here.
    """

    def __init__(self) -> None:
        self.points: dict[str, list[tuple[int, float]]] = {name: [] for name in CURVES}
        self.metric_names: list[str] = []  # the evaluation curves, in the order they first came

    def apply(self, event: Mapping[str, Any]) -> tuple[dict[str, tuple[int, float]], set[str]]:
        """Fold a log or eval event in; returns the new point per curve and the curves rewound first."""
        step = event.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            return {}, set()
        evaluated = event.get("type") == "eval"
        if event.get("type") == "log":
            extra = event.get("values")
            values = {**{name: event.get(name) for name in CURVES}, **(extra if isinstance(extra, Mapping) else {})}
        elif evaluated and isinstance(event.get("metrics"), Mapping):
            values = {f"{event.get('split')}_{name}": value for name, value in event["metrics"].items()
                      if name not in BOOKKEEPING}
        else:
            return {}, set()
        added, rewound = {}, set()
        for name, value in values.items():
            if not _finite(value):
                continue
            curve = self.points.get(name)
            if curve is None:
                curve = self.points[name] = []
                if evaluated:
                    self.metric_names.append(name)
            if curve and curve[-1][0] >= step:
                while curve and curve[-1][0] >= step:
                    curve.pop()
                rewound.add(name)
            curve.append((step, float(value)))
            added[name] = (step, float(value))
        return added, rewound

    def last_metrics(self) -> dict[str, float]:
        """The latest value of each evaluation curve (``validation_f1``, ``test_accuracy``, ...)."""
        return {name: self.points[name][-1][1] for name in self.metric_names if self.points[name]}

    @classmethod
    def of_run(cls, events_path: Path) -> "Curves":
        """A run's curves, read from its summary and the events after it (`read_state`)."""
        return read_state(Path(events_path).parent, ("log", "eval"))[0].logged


def phase_text(phase: Mapping[str, Any] | None) -> str:
    """``tokenising train 3,000/12,637``, ``tokenising validation (cached)``, ``loading model``; "" for none."""
    if not phase or not phase.get("name"):
        return ""
    parts = [str(phase["name"])]
    if phase.get("detail"):
        parts.append(str(phase["detail"]))
    done, total = phase.get("done"), phase.get("total")
    if isinstance(total, int) and total > 0 and isinstance(done, int):
        parts.append(f"{done:,}/{total:,}")
    return " ".join(parts)


def shown_status(status: str, phase: Mapping[str, Any] | None) -> str:
    """The status people see: a queued run whose processes have begun (any phase but waiting for a
    device) reads "starting", so no one sees "queued" beside "importing libraries"."""
    return "starting" if status == "queued" and phase and phase.get("name") not in (None, PHASES[0]) else status


@dataclass
class Update:
    """What one event changed: the run-summary fields it set, and the records it added or removed."""

    kind: str
    summary: dict[str, Any] = field(default_factory=dict)  # index columns: status, step, loss, best_metric, updated...
    metrics: list[dict[str, Any]] = field(default_factory=list)  # new values: split, step, epoch, name, value, t
    evaluation: dict[str, Any] | None = None  # the eval event, as folded (less its answers: `RunState.answered`)
    checkpoint: dict[str, Any] | None = None  # a new checkpoint: step, name, size, adapter_only, metrics, t
    kept: list[int] | None = None  # after rotation: the steps of the checkpoints still on disk
    deleted_step: int | None = None
    curve_points: dict[str, tuple[int, float]] = field(default_factory=dict)  # new (step, value) per curve (`Curves`)
    # curves whose points from this step on were dropped first: a resumed attempt replaces what the
    # last one logged after its checkpoint, so a curve is what the latest attempt did (`Curves`)
    rewound_curves: set[str] = field(default_factory=set)
    message: str | None = None  # a log line meant for people
    export: dict[str, Any] | None = None  # an export's record after this event (`RunState.exports`)


@dataclass
class RunState:
    """Everything a run's events say so far; :meth:`apply` folds in one more."""

    status: str = "queued"
    error: str | None = None
    pid: int | None = None
    started: float | None = None
    ended: float | None = None
    updated: float | None = None
    phase: str | None = None  # what the worker does before its first step (one of PHASES); None once it trains
    phase_done: int | None = None
    phase_total: int | None = None
    phase_detail: str | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # the latest value per split and name
    evaluations: list[dict[str, Any]] = field(default_factory=list)  # each eval event less its answers
    # The latest SELECTION_SPLIT evaluation that generated answers, with them ({"prompt", "reference",
    # "generation", "match"} each): only the latest, so a long run's answers do not pile up in memory.
    answered: dict[str, Any] | None = None
    best_metric: dict[str, Any] | None = None  # the best on SELECTION_SPLIT: {"name": "validation_f1", "value": 0.91}
    checkpoints: dict[int, dict[str, Any]] = field(default_factory=dict)
    last_checkpoint: int | None = None
    exports: dict[str, dict[str, Any]] = field(default_factory=dict)  # by export id: its events merged, latest last
    logged: Curves = field(default_factory=Curves)

    @property
    def curves(self) -> dict[str, list[tuple[int, float]]]:
        """Every curve by name (`Curves`): the training ones and ``<split>_<metric>``."""
        return self.logged.points

    @classmethod
    def from_events(cls, events: Iterable[Mapping[str, Any]]) -> "RunState":
        state = cls()
        for event in events:
            state.apply(event)
        return state

    def to_json(self) -> dict[str, Any]:
        """The fold as JSON (what a summary keeps): checkpoints listed, each curve as its steps and values
        (a week-long run's curves parse in a third of the time they take as pairs)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "logged"}
        data["checkpoints"] = list(self.checkpoints.values())
        curves = {name: [[step for step, _ in points], [value for _, value in points]]
                  for name, points in self.logged.points.items()}
        return {**data, "curves": curves, "metric_names": self.logged.metric_names}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RunState":
        """The fold :meth:`to_json` wrote, equal to folding the same events again."""
        logged = Curves()
        logged.points = {name: list(zip(steps, values)) for name, (steps, values) in data["curves"].items()}
        logged.metric_names = list(data["metric_names"])
        known = {f.name for f in fields(cls)} - {"logged", "checkpoints"}
        checkpoints = {int(record["step"]): record for record in data["checkpoints"]}
        return cls(**{key: value for key, value in data.items() if key in known}, checkpoints=checkpoints,
                   logged=logged)

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def best_checkpoint(self) -> int | None:
        """The step of the checkpoint the run's ranked metric picks (`layout.best_checkpoint`, what loads
        by default); None before the run has a checkpoint or a ranked evaluation."""
        return best_checkpoint_step(self.checkpoints.values(), (self.best_metric or {}).get("name"))

    @property
    def phase_info(self) -> dict[str, Any] | None:
        """The current phase as ``{"name", "done", "total", "detail"}`` (see :func:`phase_text`), or None."""
        if not self.phase:
            return None
        return {"name": self.phase, "done": self.phase_done, "total": self.phase_total, "detail": self.phase_detail}

    def apply(self, event: Mapping[str, Any]) -> Update:
        """Fold one event in; returns what it changed. Unknown or malformed events change nothing."""
        kind = event.get("type")
        update = Update(kind=str(kind))
        handler = getattr(self, f"_apply_{kind}", None) if kind in EVENT_TYPES else None
        if handler is None:
            return update
        try:
            handler(event, update, event.get("t"))
        except (KeyError, TypeError, ValueError):
            return Update(kind=str(kind))  # a line from a broken writer is skipped, as a torn line is
        return update

    # ----- one method per event type ----------------------------------------------------------------
    def _apply_status(self, event: Mapping[str, Any], update: Update, t: Any) -> None:
        status = event["status"]
        if status not in STATUSES:
            raise ValueError(status)
        self.status, self.error, self.updated = status, event.get("error"), t
        update.summary.update(status=status, updated=t, error=self.error)
        if status == "running":
            self.started, self.pid, self.ended = t, event.get("pid"), None
            update.summary.update(started=t, pid=self.pid, ended=None)
        elif status in FINAL_STATUSES:
            self.ended, self.pid = t, None
            self.progress["eta_seconds"] = None
            update.summary.update(ended=t, pid=None, eta_seconds=None)
        if status != "running":  # finished, or queued again for a resume: no phase is under way
            self._set_phase(None, update)

    def _apply_progress(self, event: Mapping[str, Any], update: Update, t: Any) -> None:
        values = {k: event[k] for k in PROGRESS_KEYS if k in event}
        self.progress.update(values)
        self.updated = t
        update.summary.update(updated=t, **values)
        self._set_phase(None, update)  # training has started: the phases before it are over

    def _apply_log(self, event: Mapping[str, Any], update: Update, t: Any) -> None:
        self.updated = t
        update.summary["updated"] = t
        update.message = event.get("message")
        update.curve_points, update.rewound_curves = self.logged.apply(event)

    def _apply_phase(self, event: Mapping[str, Any], update: Update, t: Any) -> None:
        name = event.get("phase") or event.get("name") or event.get("message")
        if not isinstance(name, str):
            raise ValueError(name)
        detail = event.get("detail")
        if event.get("cached"):
            detail = f"{detail} (cached)" if detail else "(cached)"
        self._set_phase({"name": name, "done": _count(event.get("done")), "total": _count(event.get("total")),
                         "detail": str(detail) if detail else None}, update)
        self.updated = t
        update.summary["updated"] = t
        update.message = event.get("message") or phase_text(self.phase_info)

    def _set_phase(self, phase: Mapping[str, Any] | None, update: Update) -> None:
        phase = phase or {}
        self.phase, self.phase_done = phase.get("name"), phase.get("done")
        self.phase_total, self.phase_detail = phase.get("total"), phase.get("detail")
        update.summary.update(phase=self.phase, phase_done=self.phase_done, phase_total=self.phase_total,
                              phase_detail=self.phase_detail)

    def _apply_eval(self, event: Mapping[str, Any], update: Update, t: Any) -> None:
        split, metrics = event["split"], event.get("metrics") or {}
        evaluation = {key: value for key, value in event.items() if key != "answers"} | {"metrics": dict(metrics)}
        self.evaluations.append(evaluation)
        answers = event.get("answers")
        answers = [answer for answer in answers if isinstance(answer, Mapping)] if isinstance(answers, list) else []
        if split == SELECTION_SPLIT and answers:
            self.answered = {**evaluation, "answers": answers}
        update.evaluation = evaluation
        update.curve_points, update.rewound_curves = self.logged.apply(event)
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row = {"split": split, "step": event.get("step"), "epoch": event.get("epoch"), "name": name,
                       "value": value, "t": t}
                self.metrics.setdefault(split, {})[name] = value
                update.metrics.append(row)
        best_name = event.get("best_metric_name")
        value = metrics.get(best_name) if best_name and split == SELECTION_SPLIT else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # Ranked on the split checkpoints are chosen by, so runs compare like with like.
            current = self.best_metric["value"] if self.best_metric else None
            if is_better(best_name, value, current):
                self.best_metric = {"name": f"{split}_{best_name}", "value": value}
                update.summary.update(best_metric_name=self.best_metric["name"], best_metric=value)
        self.updated = t
        update.summary["updated"] = t

    def _apply_checkpoint(self, event: Mapping[str, Any], update: Update, t: Any) -> None:
        step = int(event["step"])
        record = {"step": step, "name": checkpoint_of_event(event), "size": event.get("size"),
                  "adapter_only": bool(event.get("adapter_only")), "metrics": dict(event.get("metrics") or {}),
                  "ranked": event.get("ranked", True) is not False, "t": t}
        self.checkpoints[step] = record
        self.last_checkpoint = step
        update.checkpoint = record
        if "kept" in event:  # the Trainer rotated older checkpoints away
            kept = [int(s) for s in event["kept"]]
            self.checkpoints = {s: c for s, c in self.checkpoints.items() if s in kept}
            update.kept = kept
        self.updated = t
        update.summary["updated"] = t

    def _apply_export(self, event: Mapping[str, Any], update: Update, t: Any) -> None:
        export_id, state = str(event["id"]), event["state"]
        if state not in EXPORT_STATES:
            raise ValueError(state)
        record = self.exports.setdefault(export_id, {"started": t})
        record.update({key: value for key, value in event.items() if key not in ("type", "t")}, updated=t)
        if state in FINAL_EXPORT_STATES:
            record.update(pid=None, ended=t)
        update.export = dict(record)

    def _apply_checkpoint_deleted(self, event: Mapping[str, Any], update: Update, t: Any) -> None:
        step = int(event["step"])
        self.checkpoints.pop(step, None)
        update.deleted_step = step
        self.updated = t
        update.summary["updated"] = t


def read_state(folder: Path, types: Iterable[str] | None = None) -> tuple[RunState, int]:
    """A run's events folded, and the offset to read on from: its summary, when that still folds the
    start of this events.jsonl, then only the lines after it, so a week-long run opens as fast as a
    short one. No events file: nothing yet. ``types``: the events the caller reads the fold for; the
    lines of other types after the summary are not parsed (so the rest of the fold may lag)."""
    folder = Path(folder)
    state, offset = _load_summary(folder) or (RunState(), 0)
    try:
        events, offset = read_events_from(folder / EVENTS_FILE, offset, types)
    except FileNotFoundError:
        return RunState(), 0
    for event in events:
        state.apply(event)
    return state, offset


def _load_summary(folder: Path) -> tuple[RunState, int] | None:
    """The summary's fold and offset, or None when there is none, it is damaged or of another version,
    or the bytes before its offset are not the ones it folded (the stream was replaced or cut)."""
    try:
        data = json.loads((folder / SUMMARY_FILE).read_bytes())
        offset, tail = int(data["offset"]), bytes.fromhex(data["tail"])
        if data.get("version") != SUMMARY_VERSION or len(tail) != min(offset, SUMMARY_TAIL_BYTES):
            return None
        with open(folder / EVENTS_FILE, "rb") as f:
            f.seek(offset - len(tail))
            if f.read(len(tail)) != tail:
                return None
        return RunState.from_json(data["state"]), offset
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_summary(folder: Path, state: RunState, offset: int) -> None:
    """Write ``state``, the fold of events.jsonl's first ``offset`` bytes, as the run's summary."""
    with open(folder / EVENTS_FILE, "rb") as f:
        f.seek(max(0, offset - SUMMARY_TAIL_BYTES))
        tail = f.read(min(offset, SUMMARY_TAIL_BYTES))
    summary = {"version": SUMMARY_VERSION, "offset": offset, "tail": tail.hex(), "state": state.to_json()}
    write_bytes_atomic(folder / SUMMARY_FILE, json.dumps(summary, separators=(",", ":"), default=str).encode())


@dataclass
class _Fold:
    state: RunState
    offset: int
    written: float


class SummaryWriter:
    """Keeps the summaries of the runs this process appends events to.

    The store calls :meth:`appended` after each line it appends, under its index lock, so every
    writer's lines (worker, supervisor, export job) are folded in order and one summary is written at
    a time. Each run's fold is kept in memory and written out at most every `SUMMARY_INTERVAL_S`, and
    at a final status; a summary that cannot be written costs readers time, never an event.
    """

    def __init__(self) -> None:
        self._folds: dict[Path, _Fold] = {}
        self._lock = threading.Lock()  # stores with other roots (other index locks) share this writer

    def appended(self, folder: Path, final: bool = False) -> None:
        with self._lock:
            fold = self._folds.get(folder)
            try:
                if fold is None:
                    fold = self._folds[folder] = _Fold(*read_state(folder), written=time.monotonic())
                else:
                    events, fold.offset = read_events_from(folder / EVENTS_FILE, fold.offset)
                    for event in events:
                        fold.state.apply(event)
                if final or time.monotonic() - fold.written >= SUMMARY_INTERVAL_S:
                    fold.written = time.monotonic()
                    write_summary(folder, fold.state, fold.offset)
            except OSError as exc:
                _logger.debug("no summary for %s: %s", folder, exc)
            if final:
                self._folds.pop(folder, None)  # a resume folds again from the summary


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


__all__ = ["ACTIVE_STATUSES", "BOOKKEEPING", "CURVES", "EVENT_TYPES", "EXPORT_STATES", "FINAL_EXPORT_STATES", "FINAL_STATUSES", "PHASES", "PROGRESS_KEYS", "STALLED_PHASE",
           "STATUSES", "Curves", "RunState", "SummaryWriter", "Update", "decode_events", "phase_text", "read_events",
           "read_events_from", "read_state", "shown_status", "write_summary"]
