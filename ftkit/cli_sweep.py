"""`ftkit sweep`: start a grid or an optuna search, and show, follow, stop or resume one by name.

A search runs in its own driver process (`ftkit.sweeps.driver`): this command starts it and returns,
or with ``--follow`` prints each trial as it changes until the search ends.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from .errors import ConfigError
from .terminal import print_json, print_table

FOLLOW_POLL_S = 2.0


def add_arguments(sweep: argparse.ArgumentParser) -> None:
    sweep.add_argument("config", nargs="?", help="config file (YAML or JSON) of a new sweep")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                       help="a config key and its values, e.g. --grid training.learning_rate=1e-4,2e-4 (repeatable: "
                       "every combination runs)")
    sweep.add_argument("--optuna", type=int, metavar="N", help="search with optuna instead: N trials, run by a "
                       "driver process that outlives this command (pip install optuna)")
    sweep.add_argument("--search", action="append", default=[], metavar="KEY=LOW:HIGH[:log]",
                       help="--optuna: where to look, a range (add :log for a log scale) or choices KEY=A,B (repeatable)")
    sweep.add_argument("--parallel", type=int, default=1, metavar="P", help="--optuna: trials at once (default 1), "
                       "placed by the device queue: one per GPU, or resources.runs_per_device per device")
    sweep.add_argument("--pruner", default="median", choices=("median", "hyperband", "none"),
                       help="--optuna: stop unpromising trials at an evaluation (default median)")
    sweep.add_argument("--storage", metavar="URL", help="--optuna: an RDB URL for the study (e.g. postgresql://...), "
                       "to share it between machines; default: a journal file in the run store")
    sweep.add_argument("--seed", type=int, help="--optuna: the sampler's seed")
    sweep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key for every run, e.g. --set training.epochs=1 (repeatable)")
    sweep.add_argument("--name", help="the sweep's name (default: the run name, -sweep- and the time)")
    sweep.add_argument("--follow", action="store_true", help="wait until the sweep ends, printing each run as it "
                       "changes, then show the summary")
    sweep.add_argument("--show", metavar="NAME", help="show an existing sweep's runs and the best one")
    sweep.add_argument("--resume", metavar="NAME", help="continue a search whose driver died or was stopped")
    sweep.add_argument("--stop", metavar="NAME", help="stop a sweep: no more trials, its running runs stop")


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweeps import get, start_sweep

    named = [flag for flag in ("show", "resume", "stop") if getattr(args, flag)]
    if len(named) > 1 or (named and args.config):
        raise ConfigError("give a config to start a sweep, or one of --show NAME, --resume NAME, --stop NAME")
    if named:
        sweep = get(getattr(args, named[0]), args.runs_dir)
        if args.stop:
            sweep.stop()
        elif args.resume:
            sweep.resume(args.storage)
    else:
        if not args.config:
            raise ConfigError("give the sweep's config file, or --show/--resume/--stop NAME")
        sweep = _start(args, start_sweep)
    if args.follow:
        _follow(sweep, quiet=args.json)
    summary = sweep.summary()
    if args.json:
        print_json(summary)
    elif args.follow or args.show:
        _print_summary(summary)
    elif summary["kind"] == "search":
        print(f"sweep {sweep.name}: {summary['state']}, {summary['trials']} trials, {summary['parallel']} at a time; "
              f"`ftkit sweep --show {sweep.name}` shows it, `--follow` waits for it")
    else:
        print(f"sweep {sweep.name}: {len(summary['runs'])} runs; `ftkit compare --sweep {sweep.name}` compares them")
    failed = any(entry["status"] == "failed" for entry in summary["runs"]) or summary["state"] in ("failed", "interrupted")
    return 1 if args.follow and failed else 0


def _start(args: argparse.Namespace, start_sweep: Any) -> Any:
    from .config import load_config

    config = load_config(args.config, overrides=args.overrides)
    if args.runs_dir:
        config = config.replace({"output.dir": args.runs_dir})

    def started(run: Any, setting: dict[str, Any]) -> None:
        if not args.json:
            print(f"started run {run.id} ({run.name}): " + ", ".join(f"{k}={v}" for k, v in setting.items()), flush=True)

    return start_sweep(config, args.grid, args.search, args.optuna, args.name, on_start=started, parallel=args.parallel,
                       pruner=args.pruner, storage=args.storage, seed=args.seed)


def _follow(sweep: Any, quiet: bool) -> None:
    """Until the sweep ends: a line for each run whose status changes (a search's state too)."""
    from .sweeps import ACTIVE_STATES

    seen: dict[Any, str] = {}
    while True:
        summary = sweep.summary()
        for entry in summary["runs"]:
            key = entry["id"] or entry["trial"]
            if seen.get(key) != entry["status"] and not quiet:
                settings = ", ".join(f"{k}={v}" for k, v in entry["settings"].items())
                print(f"{entry['name'] or 'trial ' + str(entry['trial'])}: {entry['status']} ({settings})", flush=True)
            seen[key] = entry["status"]
        active = summary["state"] in ACTIVE_STATES or any(e["status"] in ("queued", "running") for e in summary["runs"])
        if not active:
            return
        time.sleep(FOLLOW_POLL_S)


def _print_summary(summary: dict[str, Any]) -> None:
    from .rendering import format_number
    from .sweeps import summary_table

    headers, rows = summary_table(summary)
    print_table([headers] + rows)
    if summary["kind"] == "search":
        print(f"search: {summary['state']}" + (f" ({summary['error']})" if summary.get("error") else ""))
    best = summary["best"]
    print(f"best: {best['name']} ({best['id']}), {summary['metric']} {format_number(best['value'])}" if best
          else "no run reached a validation score")
