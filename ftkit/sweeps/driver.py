"""A search's driver: the light process that runs one optuna search for as long as it takes.

``python -m ftkit.sweeps.driver SWEEP_DIR`` runs in a session of its own (a kernel restart or a closed
terminal leaves it going), takes the search's lock (one driver at a time) and loops:

- keep up to ``parallel`` trials in flight, each an ordinary run (`ftkit.runs.start`) that the device
  queue, or the cluster, places; TPE is told about running trials (constant liar), so parallel
  trials do not all ask for the same point;
- read each running trial's validation evaluations from its events and report them to optuna; a
  trial the pruner gives up on is stopped through the run's normal stop (it saves a checkpoint);
- tell optuna how each trial ended: its best validation score, pruned, or failed.

A driver started on a search whose driver died takes up what that one left: a trial whose run exists
is followed, not started again (its run is found by id, or by its name if the driver died before
writing the id down); a trial whose run never started starts now, with the setting it was given.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import runs
from ..config import Config
from ..errors import ConfigError
from ..runstore import RunStore
from ..runstore.files import lock, write_json_atomic
from ..runstore.layout import SELECTION_SPLIT
from . import _score
from .spaces import setting_config
from .study import (DRIVER_LOCK, STOP_FILE, TRIAL_STATES, TRIALS_FILE, driver_fields, import_optuna, open_study,
                    read_spec, spaces_of, trial_run_name, write_driver)

POLL_SECONDS = 0.25  # how soon a pruned trial stops and the next one starts; each look reads a few small files
OWNER = "ftkit_sweep"  # a trial's user attribute: the sweep folder whose driver asked it


@dataclass
class Flight:
    """A trial in flight: its optuna handle, its run, and how far its events have been read."""

    trial: Any
    run: runs.Run
    offset: int = 0
    reported: set[int] = field(default_factory=set)
    pruned: bool = False


class Driver:
    def __init__(self, folder: Path):
        self.folder = folder
        self.spec = read_spec(folder)
        self.name = self.spec["name"]
        self.base = Config.from_dict(self.spec["config"])
        self.spaces = spaces_of(self.spec)
        self.store = RunStore(self.base.runs_dir)
        self.metric = self.base.best_metric
        self.optuna = import_optuna()
        self.study = open_study(folder, self.spec)
        self.flights: dict[int, Flight] = {}
        self.stopping = False

    def run(self) -> str:
        """Search until every trial has ended (or a stop was asked); returns the search's final state."""
        self.take_up_unfinished()
        while True:
            if not self.stopping and (self.folder / STOP_FILE).exists():
                self.stopping = True
                write_driver(self.folder, state="stopping")
            for number, flight in list(self.flights.items()):
                if self.follow(flight):
                    del self.flights[number]
            while not self.stopping and len(self.flights) < self.spec["parallel"] and self.asked() < self.spec["trials"]:
                self.launch(self.study.ask())
            self.write_trials()
            if not self.flights and (self.stopping or self.asked() >= self.spec["trials"]):
                return "stopped" if self.stopping else "finished"
            if self.stopping:
                for flight in self.flights.values():
                    flight.run.stop()
            time.sleep(POLL_SECONDS)

    def asked(self) -> int:
        return len(self.study.get_trials(deepcopy=False))

    def take_up_unfinished(self) -> None:
        """The trials an earlier driver of this search left running: follow their runs, or start the runs they never got."""
        owner = str(self.folder)
        for frozen in self.study.get_trials(deepcopy=False, states=(self.optuna.trial.TrialState.RUNNING,)):
            if frozen.user_attrs.get(OWNER, owner) != owner:
                continue  # another driver's trial, in a study shared through an RDB
            trial = self.optuna.trial.Trial(self.study, frozen._trial_id)
            run = self.run_of(frozen)
            if run is None:
                self.launch(trial)
            else:
                self.flights[frozen.number] = Flight(trial, run, reported=set(frozen.intermediate_values),
                                                     pruned="pruned_at" in frozen.user_attrs)

    def run_of(self, frozen: Any) -> runs.Run | None:
        run_id = frozen.user_attrs.get("run")
        if run_id:
            return runs.Run(run_id, self.store)
        name = trial_run_name(self.name, frozen.number)
        listed, _ = self.store.list_runs(sort="created", descending=False)
        found = [row["id"] for row in listed if row["sweep"] == self.name and row["name"] == name]
        return runs.Run(found[0], self.store) if found else None

    def launch(self, trial: Any) -> None:
        """Give ``trial`` its setting and start its run (a setting the schema refuses fails the trial, not the search)."""
        trial.set_user_attr(OWNER, str(self.folder))
        setting = {space.key: space.suggest(trial) for space in self.spaces}
        try:
            config = setting_config(self.base, setting, self.name, trial.number + 1)
        except ConfigError as exc:
            trial.set_user_attr("error", str(exc))
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
            return
        run = runs.start(config)
        trial.set_user_attr("run", run.id)
        self.flights[trial.number] = Flight(trial, run)
        print(f"trial {trial.number + 1}: run {run.id} {setting}", flush=True)

    def follow(self, flight: Flight) -> bool:
        """Report the trial's new validation scores, prune it if optuna says so; True once its run has ended and
        optuna has been told how."""
        events, flight.offset = flight.run.events(flight.offset)
        for event in events:
            value = (event.get("metrics") or {}).get(self.metric)
            step = event.get("step")
            if event["type"] != "eval" or event.get("split") != SELECTION_SPLIT or value is None or step is None:
                continue
            if step not in flight.reported:
                flight.trial.report(float(value), int(step))
                flight.reported.add(step)
            if not flight.pruned and not self.stopping and flight.trial.should_prune():
                flight.pruned = True
                flight.trial.set_user_attr("pruned_at", step)
                flight.run.stop()
                print(f"trial {flight.trial.number + 1}: pruned at step {step} ({self.metric} {value:.4g})", flush=True)
        if not flight.run.done:
            return False
        states = self.optuna.trial.TrialState
        info = flight.run.info()
        value = _score(info, self.metric)
        if info["status"] == "completed" and value is not None:  # pruned at its last evaluation: it finished anyway
            self.study.tell(flight.trial, value, skip_if_finished=True)
        elif info["status"] == "stopped":  # pruned, or stopped by hand: its last report stands
            self.study.tell(flight.trial, state=states.PRUNED, skip_if_finished=True)
        else:
            flight.trial.set_user_attr("error", info.get("error") or f"the run ended {info['status']} without a "
                                                                     f"validation {self.metric}")
            self.study.tell(flight.trial, state=states.FAIL, skip_if_finished=True)
        return True

    def write_trials(self) -> None:
        """The trials as they stand, for readers without optuna (`Sweep.trials`, the panel)."""
        rows = [{"number": t.number, "state": TRIAL_STATES.get(t.state.name, t.state.name.lower()), "params": t.params,
                 "value": t.value, "run": t.user_attrs.get("run"), "error": t.user_attrs.get("error"),
                 "pruned_at": t.user_attrs.get("pruned_at")}
                for t in self.study.get_trials(deepcopy=False)]
        write_json_atomic(self.folder / TRIALS_FILE, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ftkit.sweeps.driver", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    folder = parser.parse_args(argv).folder.resolve()
    handle = open(folder / DRIVER_LOCK, "a")
    if not lock(handle, wait=False):
        print(f"ftkit: sweep {folder.name} already has a driver (another process holds {folder / DRIVER_LOCK})",
              file=sys.stderr, flush=True)
        return 1
    write_driver(folder, **driver_fields(), state="searching", error=None, started=time.time())
    # SIGTERM or SIGINT: stop as `Sweep.stop` does (the running trials save a checkpoint), then exit.
    signal.signal(signal.SIGTERM, lambda *_: (folder / STOP_FILE).touch())
    signal.signal(signal.SIGINT, lambda *_: (folder / STOP_FILE).touch())
    try:
        state = Driver(folder).run()
    except Exception as exc:  # noqa: BLE001 - recorded for `Sweep.wait` and the panel, then the traceback to the log
        traceback.print_exc()
        write_driver(folder, state="failed", error=f"{type(exc).__name__}: {exc}")
        return 1
    write_driver(folder, state=state)
    print(f"sweep {folder.name}: {state}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
