"""Sweeps: one config trained at several settings, each setting an ordinary run tagged with the sweep.

A grid (``ftkit sweep CONFIG --grid training.learning_rate=1e-4,2e-4 --grid adapter.r=8,16``)
starts every setting at once through `ftkit.runs.start`; runs launched while the device is busy
wait their turn in its queue. An optuna search (``--optuna N --search KEY=LOW:HIGH[:log]``) runs
its trials one after another instead: ask for a setting, start its run, wait for it, tell optuna
the run's validation metric.

A sweep is nothing but its runs' ``output.sweep`` tag: `Sweep(name)` re-attaches from any process,
:meth:`Sweep.summary` names the best run by the validation metric the config picks checkpoints
by, and ``ftkit compare --sweep NAME`` compares its runs.
"""

from __future__ import annotations

import difflib
import itertools
import os
import threading
import time
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from . import runs
from .comparison import differing, read_config
from .config import Config, parse_value, schema_fields
from .errors import ConfigError, FtkitError
from .runstore.layout import SELECTION_SPLIT, higher_is_better, is_better, resolve_runs_dir
from .rendering import format_number
from .runstore import RunStore

SET_BY_SWEEP = ("name", "output.sweep")  # every run of a sweep gets its own name and the sweep's tag
OPTUNA_MISSING = "an optuna search needs optuna: pip install optuna (or pip install 'ftkit[search]')"
OnStart = Callable[[runs.Run, Mapping[str, Any]], None]


class Sweep:
    """The runs tagged with one sweep's name, oldest first; a search still under way adds to them."""

    def __init__(self, name: str, runs_dir: str | os.PathLike | None = None, store: RunStore | None = None):
        self.name = name
        self.store = store or RunStore(runs_dir)
        self._search: threading.Thread | None = None
        self._search_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<Sweep '{self.name}': {len(self._rows())} runs>"

    @property
    def runs(self) -> list[runs.Run]:
        return [runs.Run(row["id"], self.store) for row in self._rows()]

    def _rows(self) -> list[dict[str, Any]]:
        listed, _ = self.store.list_runs(sort="created", descending=False)
        return [row for row in listed if row["sweep"] == self.name]

    def wait(self, timeout: float | None = None) -> "Sweep":
        """Block until the search has started its last trial and every run has ended."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        if self._search is not None:
            self._search.join(left())
            if self._search.is_alive():
                raise TimeoutError(f"sweep {self.name} still searching after {timeout} s")
        if self._search_error is not None:
            raise self._search_error
        for run in self.runs:
            run.wait(left())
        return self

    def summary(self) -> dict[str, Any]:
        """Each run's setting (the config keys that differ between the runs), status and validation
        metric, and the best run by that metric (None until a run has it)."""
        rows = self._rows()
        sweep_runs = [runs.Run(row["id"], self.store) for row in rows]
        configs = [read_config(run) for run in sweep_runs]
        keys = [row["key"] for row in differing(configs)]
        metric = sweep_runs[0].config.best_metric if sweep_runs else None
        entries = [{"id": row["id"], "name": row["name"], "status": row["status"],
                    "settings": {key: config.get(key) for key in keys}, "value": _score(row, metric)}
                   for row, config in zip(rows, configs)]
        winner = None
        for entry in entries:
            if entry["value"] is not None and (winner is None or is_better(metric, entry["value"], winner["value"])):
                winner = entry
        return {"sweep": self.name, "metric": f"{SELECTION_SPLIT}_{metric}" if metric else None,
                "higher_is_better": higher_is_better(metric) if metric else None, "runs": entries, "best": winner}

    def _repr_html_(self) -> str:
        from .rendering import escape, html_table

        summary = self.summary()
        headers, rows = summary_table(summary)
        best = summary["best"]
        verdict = (f"best: <b>{escape(best['name'])}</b> ({escape(summary['metric'])} {format_number(best['value'])})"
                   if best else "no run has a validation score yet")
        return f"<div><b>sweep {escape(self.name)}</b>: {verdict}{html_table(headers, rows)}</div>"


def summary_table(summary: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """A sweep summary as a table for people: one row per run, its settings and score; the best marked."""
    keys = list(summary["runs"][0]["settings"]) if summary["runs"] else []
    best_id = summary["best"]["id"] if summary["best"] else None
    headers = ["", "id", "name", "status", *keys, summary["metric"] or "metric"]
    rows = [["*" if entry["id"] == best_id else "", entry["id"], entry["name"], entry["status"],
             *(entry["settings"][key] for key in keys), format_number(entry["value"])]
            for entry in summary["runs"]]
    return headers, rows


# ----- starting a sweep ---------------------------------------------------------------------------------


def start_sweep(base: Config, grid: Iterable[str] | Mapping[str, Any] | None = None,
                search: Iterable[str] | Mapping[str, Any] | None = None, trials: int | None = None,
                name: str | None = None, on_start: OnStart | None = None) -> Sweep:
    """Start a grid's runs (all at once), or an optuna search of ``trials`` runs (one at a time, in a
    background thread: `Sweep.wait` joins it); each run is ``base`` with its setting, tagged with the sweep.

    Every setting is checked against the schema before any run starts.
    """
    if trials is not None and trials < 1:
        raise ConfigError(f"--optuna takes the number of trials, 1 or more; got {trials}")
    if grid and (search or trials):
        raise ConfigError("a sweep is a grid (--grid) or an optuna search (--optuna N --search ...), not both")
    if not grid and not (search and trials):
        raise ConfigError("give one or more --grid KEY=V1,V2, or --optuna N with one or more --search KEY=LOW:HIGH")
    name = name or f"{base.run_name}-sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    if not name.strip():
        raise ConfigError("a sweep's name cannot be empty")
    sweep = Sweep(name, store=RunStore(base.runs_dir))
    if sweep._rows():
        raise ConfigError(f"sweep '{name}' already has runs in {sweep.store.root}; give the new one another name")
    if grid:
        settings = expand_grid(parse_grid(grid))
        configs = [_setting_config(base, setting, name, i) for i, setting in enumerate(settings, 1)]
        for setting, config in zip(settings, configs):
            run = runs.start(config)
            if on_start is not None:
                on_start(run, setting)
        return sweep
    spaces = parse_search(search or {}, base)
    optuna = _optuna()  # before the thread starts: a missing package is the caller's error

    def search_runs() -> None:
        try:
            _run_search(optuna, sweep, base, spaces, trials, on_start)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by Sweep.wait
            sweep._search_error = exc

    sweep._search = threading.Thread(target=search_runs, name=f"ftkit-sweep-{name}", daemon=True)
    sweep._search.start()
    return sweep


def _run_search(optuna: Any, sweep: Sweep, base: Config, spaces: Sequence["SearchSpace"], trials: int,
                on_start: OnStart | None) -> None:
    """Ask, start, wait, tell: one trial at a time, so each learns from the ones before."""
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metric = base.best_metric
    study = optuna.create_study(study_name=sweep.name, direction="maximize" if higher_is_better(metric) else "minimize")
    for number in range(1, trials + 1):
        trial = study.ask()
        setting = {space.key: space.suggest(trial) for space in spaces}
        try:
            config = _setting_config(base, setting, sweep.name, number)
        except ConfigError:  # a combination the schema refuses (each bound alone passed): not a score
            study.tell(trial, state=TrialState.FAIL)
            continue
        run = runs.start(config)
        if on_start is not None:
            on_start(run, setting)
        value = _score(run.wait().info(), metric)
        if value is None:
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, value)


def _setting_config(base: Config, setting: Mapping[str, Any], name: str, number: int) -> Config:
    try:
        return base.replace({**setting, "name": f"{name}-{number}", "output.sweep": name})
    except ConfigError as exc:
        described = ", ".join(f"{key}={value}" for key, value in setting.items())
        raise ConfigError(f"the setting {described}: {exc}") from None


def _score(summary: Mapping[str, Any], metric: str | None) -> float | None:
    """A run's best score on the selection split by ``metric`` (its index summary's best metric), if it has one."""
    best = summary.get("best_metric")
    return best["value"] if best and best["name"] == f"{SELECTION_SPLIT}_{metric}" else None


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise FtkitError(OPTUNA_MISSING) from None
    return optuna


# ----- grids and search spaces --------------------------------------------------------------------------


def parse_grid(items: Iterable[str] | Mapping[str, Any]) -> dict[str, list[Any]]:
    """``["training.learning_rate=1e-4,2e-4", ...]`` (or a mapping of key -> values) as key -> values.

    Values are read as YAML reads them; commas inside brackets stay with their value
    (``adapter.target_modules=[q,v],[q,k,v]``).
    """
    pairs = (items.items() if isinstance(items, Mapping)
             else (_key_and_text(item, "--grid", "training.learning_rate=1e-4,2e-4") for item in items))
    grid: dict[str, list[Any]] = {}
    for key, values in pairs:
        key = check_key(key, "--grid")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; list its values once: {key}=A,B")
        values = _split_values(values) if isinstance(values, str) else (
            list(values) if isinstance(values, (list, tuple)) else [values])
        if not values:
            raise ConfigError(f"--grid {key}: give one or more values, e.g. {key}=A,B")
        grid[key] = values
    return grid


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination, the last key changing fastest."""
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


@dataclass(frozen=True)
class SearchSpace:
    """Where optuna looks for one key: a number range (``log`` for a log scale) or a list of choices."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] | None = None

    def suggest(self, trial: Any) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)


def parse_search(items: Iterable[str] | Mapping[str, Any], base: Config) -> list[SearchSpace]:
    """``["training.learning_rate=1e-5:1e-3:log", "adapter.r=4:32", "adapter.kind=lora,full"]`` as
    search spaces; each bound and choice is checked against the schema (``base`` with it set)."""
    pairs = (items.items() if isinstance(items, Mapping)
             else (_key_and_text(item, "--search", "training.learning_rate=1e-5:1e-3:log") for item in items))
    spaces: dict[str, SearchSpace] = {}
    for key, text in pairs:
        key = check_key(key, "--search")
        if key in spaces:
            raise ConfigError(f"--search {key} is given twice")
        space = _space(key, str(text))
        probes = space.choices if space.choices is not None else (space.low, space.high)
        for value in probes:
            try:
                base.replace({key: int(value) if space.integer else value})
            except ConfigError as exc:
                raise ConfigError(f"--search {key}={text}: {exc}") from None
        spaces[key] = space
    if not spaces:
        raise ConfigError("an optuna search needs one or more --search KEY=LOW:HIGH[:log]")
    return list(spaces.values())


def _space(key: str, text: str) -> SearchSpace:
    if "," in text or ":" not in text:
        return SearchSpace(key, choices=tuple(_split_values(text)))
    parts = text.split(":")
    log = len(parts) == 3 and parts[2].strip().lower() == "log"
    if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
        raise ConfigError(f"--search {key}={text}: write a range as LOW:HIGH or LOW:HIGH:log, or choices as A,B,C")
    low, high = parse_value(parts[0].strip()), parse_value(parts[1].strip())
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise ConfigError(f"--search {key}={text}: a range's bounds are numbers, e.g. {key}=1e-5:1e-3:log")
    if not low < high:
        raise ConfigError(f"--search {key}={text}: the low bound must be below the high one")
    if log and low <= 0:
        raise ConfigError(f"--search {key}={text}: a log scale needs a low bound above 0")
    kinds = _number_kinds(key)
    if not kinds:
        raise ConfigError(f"--search {key}: '{key}' is not a number; search it over choices, e.g. {key}=A,B")
    integer = kinds == {int}
    if integer and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"--search {key}={text}: '{key}' is a whole number; give whole bounds")
    return SearchSpace(key, float(low), float(high), log, integer)


def _number_kinds(key: str) -> set[type]:
    hint = next(hint for name, hint, _ in schema_fields() if name == key)
    return {kind for kind in (typing.get_args(hint) or (hint,)) if kind in (int, float)}


def check_key(key: str, flag: str) -> str:
    """``key`` if it names a config field a sweep may vary; else a one-line error with a suggestion."""
    key = str(key).strip()
    keys = [name for name, _, _ in schema_fields()]
    if key in SET_BY_SWEEP:
        raise ConfigError(f"{flag} {key}: the sweep sets it for each run (name the sweep with --name)")
    if key in keys:
        return key
    inside = [name for name in keys if name.startswith(f"{key}.")]
    if inside:
        raise ConfigError(f"{flag} {key}: '{key}' is a section; name a key in it, e.g. {inside[0]}")
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    raise ConfigError(f"{flag}: unknown config key '{key}'.{f' Did you mean {close[0]!r}?' if close else ''}")


def _key_and_text(item: str, flag: str, example: str) -> tuple[str, str]:
    key, sep, text = str(item).partition("=")
    if not sep or not key.strip() or not text.strip():
        raise ConfigError(f"{flag} {item!r} must look like KEY=VALUES, e.g. {flag} {example}")
    return key.strip(), text.strip()


def _split_values(text: str) -> list[Any]:
    """Comma-separated values read as YAML; a comma inside brackets or braces belongs to its value."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += (char in "[{") - (char in "]}")
        if char == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += char
    values.append(current)
    return [parse_value(value.strip()) for value in values if value.strip()]


def resolve_runs(refs: Iterable[Any], sweep: str | None = None,
                 runs_dir: str | os.PathLike | None = None) -> list[runs.Run]:
    """The runs to compare: Runs, ids, id prefixes, names, Sweeps (or lists of them), then a named sweep's runs."""
    chosen: list[runs.Run] = []
    for ref in refs:
        if isinstance(ref, Sweep):
            chosen += ref.runs
        elif isinstance(ref, (list, tuple)):
            chosen += resolve_runs(ref, runs_dir=runs_dir)
        else:
            chosen.append(runs.get(ref, runs_dir))
    if sweep is not None:
        if not resolve_runs_dir(runs_dir).is_dir():  # looking never creates a store
            raise FtkitError(f"no runs of sweep '{sweep}': there is no run store at {resolve_runs_dir(runs_dir)}")
        found = Sweep(sweep, runs_dir)
        if not found.runs:
            raise FtkitError(f"no runs of sweep '{sweep}' in {found.store.root}")
        chosen += found.runs
    return chosen


__all__ = ["SearchSpace", "Sweep", "check_key", "expand_grid", "parse_grid", "parse_search", "resolve_runs",
           "start_sweep", "summary_table"]
