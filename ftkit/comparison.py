"""Runs side by side: the config keys that differ, the final metrics, and the logged curves.

One dict (:func:`comparison`) serves the side panel's compare view (``GET /ftkit/api/compare``),
``ftkit compare --json`` and ``ftkit.compare`` (as a DataFrame, :func:`comparison_frame`)::

    {"runs": [{"id", "name", "status", "task", "model", "adapter", "sweep"}],
     "differing": [{"key": "training.learning_rate", "values": [v_run1, v_run2, ...]}],
     "metrics": [{"name": "validation_f1", "values": [...]}],
     "curves": {"loss": {"<run_id>": [[step, value], ...]}, "validation_f1": {...}, ...},
     "primary": ["loss", "validation_f1", "test_f1"]}

``primary`` is what every view shows first, in this order, the rest behind a "more" toggle: the
training loss, then the metric that picks each run's best checkpoint (`Config.best_metric`:
``validation_f1`` for NER, ``validation_accuracy`` for classification, ``validation_loss`` for SFT),
then that metric on test. Its curves are the first charts, its metrics the first table columns; a
per-entity score or a trainer's own value is one of the rest. ``metrics`` lists the primary ones
first, so the DataFrame and ``ftkit compare`` start with them too.

Curves are what was logged at each step, whatever their names: ``loss``, ``learning_rate``,
``grad_norm`` and every other number of the ``log`` events (a preference trainer's ``rewards/margins``),
``<split>_<metric>`` from the ``eval`` events (never the loss a progress event carries along), folded
by `ftkit.runstore.events.Curves` as the monitor folds them; the metrics are the evaluations' alone.
A curve is charted once a run logged it at two steps: a value evaluated once (the test split's) is a
metric, not a line, and a curve without points is no chart.
Everything is read from the run folders (run.json, config.yaml, and the events from each run's
summary on, `ftkit.runstore.events.read_state`), so twenty runs of a week's training each compare
in well under a second: the side panel polls this while a compared run trains. A curve of more
than `MAX_CURVE_POINTS` is thinned to the lowest and highest point of each stretch (its first and
last kept): more points than a chart is wide would only cost the wire and the browser.
Plain Python: no torch, no pandas until :func:`comparison_frame`.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .config import Config
from .errors import FtkitError
from .runstore.events import Curves
from .runstore.layout import CONFIG_FILE, EVENTS_FILE

if TYPE_CHECKING:
    import pandas

    from .runs import Run

# Shown as each run's own columns (its name, its sweep), never as a difference between runs.
IDENTITY_KEYS = ("name", "output.sweep")
RUN_FOLDER = "<run>"  # a run's own folder inside its config values (in-memory data snapshots)
SPLIT_ORDER = ("validation", "test")
LOSS_CURVE = "loss"  # the training loss, always the first chart
MAX_CURVE_POINTS = 2000  # per run and curve: more than a chart is wide (a week-long run logs 10,000)


def comparison(runs: Sequence["Run"]) -> dict[str, Any]:
    """The comparison of ``runs`` in the shape above; values line up with ``runs``."""
    if len(runs) < 2:
        raise FtkitError("compare two or more runs")
    if len({run.id for run in runs}) < len(runs):
        raise FtkitError("each run can be compared once; a run was given twice")
    records = [run.store.read_record(run.id) for run in runs]
    configs = [read_config(run) for run in runs]
    logged = [Curves.of_run(run.dir / EVENTS_FILE) for run in runs]
    first = primary([_best_metric(config.get("task"), config.get("training.metric_for_best_model"))
                     for config in configs])
    return {
        "runs": [{"id": run.id, "name": record.get("name"), "status": run.store.status(run.id)[0],
                  **{key: record.get(key) for key in ("task", "model", "adapter", "sweep")}}
                 for run, record in zip(runs, records)],
        "differing": differing(configs),
        "metrics": _metrics([curves.last_metrics() for curves in logged], first),
        "curves": _curves([run.id for run in runs], [curves.points for curves in logged]),
        "primary": first,
    }


def primary(main_metrics: Sequence[str | None]) -> list[str]:
    """The curves and metrics shown first: the training loss, then the runs' main metrics (each once,
    in run order; the validation loss when none is known) on validation, then on test."""
    metrics = list(dict.fromkeys(metric for metric in main_metrics if metric)) or [LOSS_CURVE]
    return [LOSS_CURVE, *(f"{split}_{metric}" for split in SPLIT_ORDER for metric in metrics)]


@lru_cache(maxsize=64)
def _best_metric(task: Any, chosen: Any) -> str | None:
    """`Config.best_metric` of a run's task and ``training.metric_for_best_model``, None for a config that
    does not parse; cached, as a comparison polled while runs train reads the same few pairs again."""
    try:
        return Config.from_dict({"task": task, "training": {"metric_for_best_model": chosen}}).best_metric
    except Exception:  # noqa: BLE001 - an unreadable config must not keep the comparison from showing
        return None


def read_config(run: "Run") -> dict[str, Any]:
    """The run's config.yaml as written, flattened to dotted keys, its own folder written as ``<run>``."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: about ten times faster
    data = yaml.load((run.dir / CONFIG_FILE).read_text(encoding="utf-8"), Loader=loader) or {}
    folder = str(run.dir)
    return {key: value.replace(folder, RUN_FOLDER) if isinstance(value, str) else value
            for key, value in _flatten(data).items()}


def differing(configs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``[{"key", "values"}]`` for every dotted key whose values are not all the same (absent: None)."""
    keys = dict.fromkeys(key for config in configs for key in config if key not in IDENTITY_KEYS)
    rows = []
    for key in keys:
        values = [config.get(key) for config in configs]
        if len({json.dumps(value, sort_keys=True, default=str) for value in values}) > 1:
            rows.append({"key": key, "values": values})
    return rows


def comparison_frame(data: Mapping[str, Any]) -> "pandas.DataFrame":
    """One row per run (indexed by id): name, status, sweep (if any), the differing keys, the metrics."""
    import pandas

    columns: dict[str, list[Any]] = {"name": [r["name"] for r in data["runs"]],
                                     "status": [r["status"] for r in data["runs"]]}
    if any(r["sweep"] for r in data["runs"]):
        columns["sweep"] = [r["sweep"] for r in data["runs"]]
    columns.update({row["key"]: row["values"] for row in data["differing"]})
    columns.update({row["name"]: row["values"] for row in data["metrics"]})
    return pandas.DataFrame(columns, index=pandas.Index([r["id"] for r in data["runs"]], name="id"))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        flat: dict[str, Any] = {}
        for key, child in value.items():
            flat.update(_flatten(child, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def _metrics(lasts: Sequence[Mapping[str, float]], first: Sequence[str]) -> list[dict[str, Any]]:
    """``[{"name", "values"}]``: those named in ``first`` (the primary ones) in its order, then the other
    validation metrics, then test, then any other split; None where absent."""
    names = list(dict.fromkeys(name for last in lasts for name in last))
    rank = {split: i for i, split in enumerate(SPLIT_ORDER)}

    def place(name: str) -> tuple[int, int]:
        return (0, first.index(name)) if name in first else (1, rank.get(name.split("_", 1)[0], len(rank)))

    names.sort(key=place)  # stable: first-seen order within a split
    return [{"name": name, "values": [last.get(name) for last in lasts]} for name in names]


def _curves(ids: Sequence[str], per_run: Sequence[Mapping[str, list[tuple[int, float]]]]) -> dict[str, dict[str, Any]]:
    """Each curve some run logged at two steps or more, by name then run id; a curve a run never logged
    is left out for it."""
    curves: dict[str, dict[str, Any]] = {}
    for run_id, run_curves in zip(ids, per_run):
        for name, points in run_curves.items():
            if points:
                curves.setdefault(name, {})[run_id] = [list(point) for point in thinned(points)]
    return {name: by_run for name, by_run in curves.items() if max(map(len, by_run.values())) > 1}


def thinned(points: Sequence[tuple[int, float]], limit: int = MAX_CURVE_POINTS) -> Sequence[tuple[int, float]]:
    """At most ``limit`` points of a curve, its shape kept: the lowest and highest point of each of
    ``limit / 2`` stretches, in step order, and always the first and the last point."""
    if len(points) <= limit:
        return points
    size = math.ceil(len(points) / ((limit - 2) // 2))
    kept = {points[0], points[-1]}
    for start in range(0, len(points), size):
        stretch = points[start:start + size]
        kept.update((min(stretch, key=itemgetter(1)), max(stretch, key=itemgetter(1))))
    return sorted(kept)


__all__ = ["comparison", "comparison_frame", "differing", "primary", "read_config", "thinned"]
