"""Sweeps: one config trained at several settings, each setting an ordinary run tagged with the sweep.

A grid (``ftkit sweep CONFIG --grid training.learning_rate=1e-4,2e-4 --grid adapter.r=8,16``) starts
every setting at once through `ftkit.runs.start`; runs launched while the device is busy wait their
turn in its queue. An optuna search (``--optuna N --search KEY=LOW:HIGH[:log] --parallel P``) is run
by a driver process of its own (`ftkit.sweeps.driver`), with its study in the run store through
optuna's own storage (`ftkit.sweeps.study`): a kernel restart leaves it going, ``Sweep(name)``
re-attaches, ``ftkit sweep --resume NAME`` continues one whose driver died. Up to P trials run at
once, placed by the device queue (or the cluster, `resources.executor`), and a pruner stops the
unpromising ones through the normal stop.

`Sweep.summary` names the best run by the validation metric the config picks checkpoints by, and
``ftkit compare --sweep NAME`` compares its runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .. import runs
from ..comparison import differing, read_config
from ..config import Config
from ..errors import ConfigError, FtkitError, RunError
from ..rendering import format_number
from ..runstore import RunBusy, RunStore
from ..runstore.layout import SELECTION_SPLIT, SWEEPS_DIR, higher_is_better, is_better, resolve_runs_dir
from .spaces import SearchSpace, check_key, expand_grid, parse_grid, parse_search, setting_config  # noqa: F401 (API)
from .study import (DRIVER_LOG, PRUNERS, SPEC_FILE, STOP_FILE, STORAGE_VARIABLE, TRIALS_FILE, check_name,
                    driver_alive, hide_password, open_study, read_driver, read_spec, spaces_record, sweep_dir, write_driver, write_spec)

OnStart = Callable[[runs.Run, Mapping[str, Any]], None]
ACTIVE_STATES = ("starting", "searching", "stopping")  # a search's driver is (or should be) at work
STARTING_GRACE_S = 60.0  # a driver that has not taken up its search this long after it was spawned is gone


class Sweep:
    """One sweep: the runs tagged with its name (oldest first) and, for a search, its driver and trials."""

    def __init__(self, name: str, runs_dir: str | os.PathLike | None = None, store: RunStore | None = None):
        self.name = name
        self.store = store or RunStore(runs_dir)
        self.folder = sweep_dir(self.store.root, name)

    def __repr__(self) -> str:
        state = f" {self.state}" if self.is_search else ""
        return f"<Sweep '{self.name}'{state}: {len(self._rows())} runs>"

    @property
    def runs(self) -> list[runs.Run]:
        return [runs.Run(row["id"], self.store) for row in self._rows()]

    def _rows(self) -> list[dict[str, Any]]:
        listed, _ = self.store.list_runs(sort="created", descending=False)
        return [row for row in listed if row["sweep"] == self.name]

    @property
    def is_search(self) -> bool:
        return (self.folder / SPEC_FILE).is_file()

    @property
    def spec(self) -> dict[str, Any] | None:
        """A search's spec (base config, spaces, trials, parallel, pruner, seed, storage); None for a grid."""
        return read_spec(self.folder) if self.is_search else None

    @property
    def state(self) -> str:
        """'grid'; or a search's: starting, searching, stopping, finished, stopped, failed, or interrupted (its
        driver died before the search ended: `resume` continues it)."""
        if not self.is_search:
            return "grid"
        record = read_driver(self.folder)
        state = record.get("state", "starting")
        if state in ACTIVE_STATES and not driver_alive(self.folder):
            if state != "starting" or time.time() - record.get("updated", 0) > STARTING_GRACE_S:
                return "interrupted"
        return state

    @property
    def error(self) -> str | None:
        return read_driver(self.folder).get("error") if self.is_search else None

    def trials(self) -> list[dict[str, Any]]:
        """A search's trials as its driver last wrote them: number, state, params, value, run (its id), error."""
        try:
            return json.loads((self.folder / TRIALS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []

    def wait(self, timeout: float | None = None, poll: float = 0.5) -> "Sweep":
        """Block until a search's driver has finished and every run has ended; a failed or interrupted search raises."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        while self.state in ACTIVE_STATES:
            if left() == 0.0:
                raise TimeoutError(f"sweep {self.name} still {self.state} after {timeout} s")
            time.sleep(poll)
        state = self.state
        if state == "failed":
            raise FtkitError(f"sweep {self.name}: the search failed: {self.error} (see {self.folder / DRIVER_LOG})")
        if state == "interrupted":
            raise RunError(f"sweep {self.name}: its driver died before the search ended; "
                           f"`ftkit sweep --resume {self.name}` (or Sweep.resume()) continues it")
        for run in self.runs:
            run.wait(left())
        return self

    def stop(self) -> "Sweep":
        """Stop the sweep: a search asks no more trials and stops those running (each saves a checkpoint); a
        grid's runs stop. `resume` continues a stopped search."""
        if self.is_search and self.state in ACTIVE_STATES:  # a driver just starting reads it first thing
            (self.folder / STOP_FILE).touch()
        if not (self.is_search and driver_alive(self.folder)):
            for run in self.runs:
                run.stop()
        return self

    def resume(self, storage: str | None = None) -> "Sweep":
        """Continue a search whose driver died or was stopped: finished trials stay, running ones are followed
        (not started again), and the rest of its trials are asked. ``storage``: its RDB URL again, when it has
        a password (never written down)."""
        if not self.is_search:
            raise RunError(f"sweep '{self.name}' is a grid, not a search; resume its runs one by one")
        if driver_alive(self.folder):
            raise RunBusy(f"sweep '{self.name}' is {self.state}: its driver is at work already")
        (self.folder / STOP_FILE).unlink(missing_ok=True)
        spawn_driver(self.folder, storage)
        return self

    def summary(self) -> dict[str, Any]:
        """Each run's setting, status (a trial the pruner stopped reads 'pruned') and validation metric; the
        best run by that metric (None until a run has it); and, for a search, its state and trials."""
        rows = self._rows()
        sweep_runs = [runs.Run(row["id"], self.store) for row in rows]
        configs = [read_config(run) for run in sweep_runs]
        spec = self.spec
        keys = [space["key"] for space in spec["spaces"]] if spec else [row["key"] for row in differing(configs)]
        metric = (Config.from_dict(spec["config"]).best_metric if spec
                  else sweep_runs[0].config.best_metric if sweep_runs else None)
        trials = self.trials()
        trial_of = {trial["run"]: trial for trial in trials if trial.get("run")}
        entries = []
        for row, config in zip(rows, configs):
            trial = trial_of.get(row["id"], {})
            pruned = trial.get("pruned_at") is not None and row["status"] == "stopped"
            entries.append({"id": row["id"], "name": row["name"], "status": "pruned" if pruned else row["status"],
                            "trial": _counted(trial.get("number")), "settings": {key: config.get(key) for key in keys},
                            "value": _score(row, metric)})
        entries += [{"id": None, "name": None, "status": "failed", "trial": _counted(trial["number"]), "error": trial.get("error"),
                     "settings": {key: trial["params"].get(key) for key in keys}, "value": None}
                    for trial in trials if not trial.get("run")]
        winner = None
        for entry in entries:
            if entry["value"] is not None and (winner is None or is_better(metric, entry["value"], winner["value"])):
                winner = entry
        summary = {"sweep": self.name, "kind": "search" if spec else "grid", "state": self.state, "keys": keys,
                   "metric": f"{SELECTION_SPLIT}_{metric}" if metric else None,
                   "higher_is_better": higher_is_better(metric) if metric else None, "runs": entries, "best": winner}
        if spec:
            summary.update(trials=spec["trials"], parallel=spec["parallel"], pruner=spec["pruner"],
                           storage=spec.get("storage"), error=self.error, spaces=spec["spaces"])
        return summary

    def _repr_html_(self) -> str:
        from ..rendering import escape, html_table

        summary = self.summary()
        headers, rows = summary_table(summary)
        best = summary["best"]
        verdict = (f"best: <b>{escape(best['name'])}</b> ({escape(summary['metric'])} {format_number(best['value'])})"
                   if best else "no run has a validation score yet")
        state = f" ({escape(summary['state'])})" if summary["kind"] == "search" else ""
        return f"<div><b>sweep {escape(self.name)}</b>{state}: {verdict}{html_table(headers, rows)}</div>"


def summary_table(summary: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """A sweep summary as a table for people: one row per run (or run-less failed trial), its settings and score;
    the best marked."""
    keys = summary["keys"]
    best_id = summary["best"]["id"] if summary["best"] else None
    headers = ["", "id", "name", "status", *keys, summary["metric"] or "metric"]
    rows = [["*" if entry["id"] == best_id and best_id else "", entry["id"] or "-", entry["name"] or f"trial {entry['trial']}",
             entry["status"], *(entry["settings"].get(key) for key in keys), format_number(entry["value"])]
            for entry in summary["runs"]]
    return headers, rows


def sweep_names(store: RunStore) -> list[str]:
    """Every sweep of a store: the searches (folders under .sweeps) and the tags of its runs, oldest first."""
    listed, _ = store.list_runs(sort="created", descending=False)
    names = dict.fromkeys(row["sweep"] for row in listed if row["sweep"])
    searches = store.root / SWEEPS_DIR
    if searches.is_dir():
        for folder in sorted(searches.iterdir(), key=lambda f: (f / SPEC_FILE).stat().st_mtime if (f / SPEC_FILE).exists() else 0):
            if (folder / SPEC_FILE).is_file():
                names.setdefault(folder.name, None)
    return list(names)


# ----- starting a sweep ---------------------------------------------------------------------------------


def start_sweep(base: Config, grid: Iterable[str] | Mapping[str, Any] | None = None,
                search: Iterable[str] | Mapping[str, Any] | None = None, trials: int | None = None,
                name: str | None = None, on_start: OnStart | None = None, parallel: int = 1,
                pruner: str = "median", storage: str | None = None, seed: int | None = None) -> Sweep:
    """Start a grid's runs (all at once), or an optuna search of ``trials`` runs, ``parallel`` at a time, in a
    driver process of its own; each run is ``base`` with its setting, tagged with the sweep.

    Every setting is checked against the schema, and a search's storage opened, before anything starts.
    """
    if trials is not None and trials < 1:
        raise ConfigError(f"--optuna takes the number of trials, 1 or more; got {trials}")
    if grid and (search or trials):
        raise ConfigError("a sweep is a grid (--grid) or an optuna search (--optuna N --search ...), not both")
    if not grid and not (search and trials):
        raise ConfigError("give one or more --grid KEY=V1,V2, or --optuna N with one or more --search KEY=LOW:HIGH")
    if parallel < 1:
        raise ConfigError(f"--parallel takes how many trials run at once, 1 or more; got {parallel}")
    if pruner not in PRUNERS:
        raise ConfigError(f"--pruner must be one of {', '.join(PRUNERS)}; got {pruner!r}")
    name = check_name(name or f"{base.run_name}-sweep-{time.strftime('%Y%m%d-%H%M%S')}".replace("/", "-"))
    sweep = Sweep(name, store=RunStore(base.runs_dir))
    if sweep._rows() or sweep.folder.exists():
        raise ConfigError(f"sweep '{name}' already exists in {sweep.store.root}; give the new one another name")
    if grid:
        settings = expand_grid(parse_grid(grid))
        configs = [setting_config(base, setting, name, i) for i, setting in enumerate(settings, 1)]
        for setting, config in zip(settings, configs):
            run = runs.start(config)
            if on_start is not None:
                on_start(run, setting)
        return sweep
    base = base.with_absolute_paths()  # the driver starts runs from its own folder
    spec = {"name": name, "config": base.to_dict(), "spaces": spaces_record(parse_search(search or {}, base)),
            "trials": trials, "parallel": parallel, "pruner": pruner, "seed": seed, "storage": hide_password(storage),
            "direction": "maximize" if higher_is_better(base.best_metric) else "minimize", "created": time.time()}
    sweep.folder.mkdir(parents=True)
    try:
        write_spec(sweep.folder, spec)
        open_study(sweep.folder, spec, storage)  # optuna missing, a bad URL: the caller's error, before a driver starts
    except BaseException:
        import shutil

        shutil.rmtree(sweep.folder, ignore_errors=True)
        raise
    spawn_driver(sweep.folder, storage)
    return sweep


def spawn_driver(folder: Path, storage: str | None = None) -> None:
    """Start the search's driver in a session of its own: it outlives the kernel or terminal that started it."""
    write_driver(folder, state="starting", error=None)  # until the driver takes over its record
    env = {**os.environ, **({STORAGE_VARIABLE: storage} if storage else {})}
    with open(folder / DRIVER_LOG, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "ftkit.sweeps.driver", str(folder)], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                   cwd=os.getcwd(), env=env)
    runs._reap_later(process)


def _counted(number: int | None) -> int | None:
    """optuna's 0-based trial number as people count it, as in the run's name (``<sweep>-1`` is trial 1)."""
    return None if number is None else number + 1


def _score(summary: Mapping[str, Any], metric: str | None) -> float | None:
    """A run's best score on the selection split by ``metric`` (its index summary's best metric), if it has one."""
    best = summary.get("best_metric")
    return best["value"] if best and best["name"] == f"{SELECTION_SPLIT}_{metric}" else None


def get(name: str, runs_dir: str | os.PathLike | None = None) -> Sweep:
    """A sweep by name, from any process (after a kernel restart too): its runs, its search's state and trials."""
    sweep = Sweep(name, runs_dir)
    if not sweep.is_search and not sweep._rows():
        known = sweep_names(sweep.store) if sweep.store.root.is_dir() else []
        raise FtkitError(f"no sweep '{name}' in {sweep.store.root}" + (f"; its sweeps: {', '.join(known)}" if known else ""))
    return sweep


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


__all__ = ["SearchSpace", "Sweep", "check_key", "expand_grid", "get", "parse_grid", "parse_search", "resolve_runs",
           "start_sweep", "summary_table", "sweep_names"]
