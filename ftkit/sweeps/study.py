"""A search on disk and its optuna study.

A search lives in its run store, beside the runs it starts::

    .sweeps/<name>/
      sweep.json      the spec: base config, search spaces, trials, parallel, pruner, seed, storage
      study.journal   optuna's JournalStorage (unless the spec names an RDB URL)
      driver.json     the driver's record: host, pid and start time, state, error (the driver writes it)
      driver.lock     held by the driver for as long as it lives: one driver per search
      driver.log      the driver's output
      trials.json     the trials as the driver last saw them (for readers without optuna: the panel)
      STOP            asks the driver to stop its trials and ask no more

The study is the truth about trials (optuna's own storage: an RDB URL shares one study between
machines); the runs are the truth about training. A trial's run is named ``<sweep>-<trial number + 1>``,
so a driver that died between starting a run and recording it finds the run again by its name.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigError, FtkitError
from ..runstore.files import is_locked, write_json_atomic
from ..runstore.layout import SWEEPS_DIR
from ..runstore.liveness import host_identity, process_alive, process_start_time
from .spaces import SearchSpace

SPEC_FILE = "sweep.json"
JOURNAL_FILE = "study.journal"
DRIVER_FILE = "driver.json"
DRIVER_LOCK = "driver.lock"
DRIVER_LOG = "driver.log"
TRIALS_FILE = "trials.json"  # the trials as the driver last saw them, for readers without optuna (the panel)
STOP_FILE = "STOP"  # asks the driver to stop: no more trials, and the running ones stopped
PRUNERS = ("median", "hyperband", "none")
# An RDB URL's password is never written down: the driver gets the URL through this variable.
STORAGE_VARIABLE = "FTKIT_SWEEP_STORAGE"
HIDDEN_PASSWORD = "***"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
OPTUNA_MISSING = "an optuna search needs optuna: pip install optuna (or pip install 'ftkit[search]')"
# What a trial's state reads as in a sweep's table (optuna's COMPLETE is a finished trial).
TRIAL_STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


def sweep_dir(root: Path, name: str) -> Path:
    return Path(root) / SWEEPS_DIR / name


def check_name(name: str) -> str:
    """A sweep's name names its folder: letters, digits, '.', '_' and '-'."""
    if not NAME.fullmatch(name):
        raise ConfigError(f"sweep name {name!r}: use letters, digits, '.', '_' and '-' (it names the sweep's folder), "
                          "starting with a letter or digit")
    return name


def trial_run_name(sweep: str, number: int) -> str:
    """The name of the run of optuna trial ``number`` (0-based): how a driver finds a trial's run again."""
    return f"{sweep}-{number + 1}"


def import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise FtkitError(OPTUNA_MISSING) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# ----- the spec ---------------------------------------------------------------------------------------


def write_spec(folder: Path, spec: Mapping[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / SPEC_FILE, dict(spec))


def read_spec(folder: Path) -> dict[str, Any]:
    import json

    return json.loads((folder / SPEC_FILE).read_text(encoding="utf-8"))


def spaces_of(spec: Mapping[str, Any]) -> list[SearchSpace]:
    return [SearchSpace(**{**space, "choices": tuple(space["choices"]) if space["choices"] is not None else None})
            for space in spec["spaces"]]


def spaces_record(spaces: list[SearchSpace]) -> list[dict[str, Any]]:
    return [asdict(space) for space in spaces]


def hide_password(url: str | None) -> str | None:
    """``url`` as it may be written down: an RDB URL's password replaced by ***."""
    if not url:
        return url
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = f"{parts.username}:{HIDDEN_PASSWORD}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def storage_url(spec: Mapping[str, Any]) -> str | None:
    """The study's RDB URL (None: the journal file in the sweep's folder); a hidden password comes back from
    `STORAGE_VARIABLE`, which the driver inherits from whoever started or resumed it."""
    written = spec.get("storage")
    if not written:
        return None
    given = os.environ.get(STORAGE_VARIABLE)
    if given and hide_password(given) == written:
        return given
    if HIDDEN_PASSWORD in written:
        raise ConfigError(f"sweep '{spec['name']}' keeps its study at {written}; its password is never written down: "
                          f"give the URL again (--storage URL, or {STORAGE_VARIABLE})")
    return written


def open_study(folder: Path, spec: Mapping[str, Any], url: str | None = None) -> Any:
    """The search's optuna study, created on first use: TPE told about running trials (constant liar), the pruner
    the spec names, and optuna's own storage (a journal file in the sweep's folder, or the RDB URL)."""
    optuna = import_optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    url = url or storage_url(spec)
    storage = url or JournalStorage(JournalFileBackend(str(folder / JOURNAL_FILE)))
    sampler = optuna.samplers.TPESampler(seed=spec.get("seed"), constant_liar=True)
    return optuna.create_study(storage=storage, study_name=spec["name"], sampler=sampler,
                               pruner=make_pruner(spec.get("pruner", "median")), direction=spec["direction"],
                               load_if_exists=True)


def make_pruner(kind: str) -> Any:
    """Median (optuna's default: stop a trial below the median of earlier trials at the same step), Hyperband, or none."""
    optuna = import_optuna()
    if kind not in PRUNERS:
        raise ConfigError(f"--pruner must be one of {', '.join(PRUNERS)}; got {kind!r}")
    return {"median": optuna.pruners.MedianPruner, "hyperband": optuna.pruners.HyperbandPruner,
            "none": optuna.pruners.NopPruner}[kind]()


# ----- the driver's record ----------------------------------------------------------------------------


def read_driver(folder: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads((folder / DRIVER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_driver(folder: Path, **fields: Any) -> None:
    """The driver's record (the driver alone writes it): its process and where the search stands."""
    record = {**read_driver(folder), **fields, "updated": time.time()}
    write_json_atomic(folder / DRIVER_FILE, record)


def driver_fields() -> dict[str, Any]:
    pid = os.getpid()
    return {**host_identity(), "pid": pid, "pid_started": process_start_time(pid)}


def driver_alive(folder: Path) -> bool:
    """Whether a driver holds the search (its lock); on this machine, its recorded pid must live too."""
    if not is_locked(folder / DRIVER_LOCK):
        return False
    record = read_driver(folder)
    if record.get("host") == host_identity()["host"] and record.get("pid"):
        return process_alive(record["pid"], record.get("pid_started"))
    return True
