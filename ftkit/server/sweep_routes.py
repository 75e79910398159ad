"""The side panel's sweep view over HTTP: every sweep of the store, one sweep's table of trials, stopping one.

Each answer is `ftkit.sweeps.Sweep.summary`: the sweep's kind (grid or search) and state, the keys it
searched (or that differ between its runs), each run's (or run-less failed trial's) settings, status
(a trial the pruner stopped reads "pruned") and validation metric, and the best run; a search adds its
trials, parallel, pruner and storage. The routes are listed with the others in ``routes.py``.

A sweep's name comes from the URL and names a folder (``<store>/.sweeps/<name>/``): the route's pattern
is the one `ftkit.sweeps.study.check_name` allows, so it never holds a slash and never starts with a dot.
A GET writes nothing; a sweep that cannot be read (its spec or trials half written by hand, a run deleted
meanwhile) is a 409 on its own, and an entry with its ``error`` in the list, so one bad sweep hides no other.
"""

from __future__ import annotations

from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized

from ..errors import FtkitError
from ..runstore import RunStore
from ..sweeps import ACTIVE_STATES, Sweep, sweep_names
from ..sweeps.study import NAME
from .handler import ApiError, FtkitHandler

SWEEP_NAME_PATTERN = NAME.pattern  # what a sweep's name may be: never a slash, never a leading dot
ACTIVE_RUN_STATUSES = ("queued", "running")
UNREADABLE = (FtkitError, OSError, ValueError, KeyError, TypeError)  # what a half-written sweep folder can raise


def sweep_summary(store: RunStore, name: str) -> dict[str, Any]:
    """The sweep's summary; 404 for a name with neither runs nor a search folder, 409 when it cannot be read."""
    sweep = Sweep(name, store=store)
    try:
        summary = sweep.summary()
    except UNREADABLE as exc:
        if not sweep.is_search and name not in sweep_names(store):
            raise _not_found(store, name) from None
        raise ApiError(409, "sweep_unreadable", f"sweep '{name}' cannot be read: {exc}") from None
    if summary["kind"] == "grid" and not summary["runs"]:
        raise _not_found(store, name)
    return summary


def _not_found(store: RunStore, name: str) -> ApiError:
    return ApiError(404, "sweep_not_found", f"no sweep '{name}' in {store.root}")


def all_summaries(store: RunStore) -> dict[str, Any]:
    """Every sweep's summary, oldest first; one that cannot be read is listed with its error and no runs."""
    sweeps = []
    for name in sweep_names(store):
        try:
            sweeps.append(sweep_summary(store, name))
        except ApiError as exc:
            if exc.status_code == 404:  # its last run deleted meanwhile
                continue
            sweeps.append({"sweep": name, "kind": "search" if Sweep(name, store=store).is_search else "grid",
                           "state": "unreadable", "keys": [], "metric": None, "higher_is_better": None, "runs": [],
                           "best": None, "error": exc.message})
    return {"sweeps": sweeps}


def is_active(summary: dict[str, Any]) -> bool:
    """Whether stopping the sweep would stop anything: a search's driver at work, or a run queued or running."""
    return summary["state"] in ACTIVE_STATES or any(entry["status"] in ACTIVE_RUN_STATUSES for entry in summary["runs"])


def stop_sweep(store: RunStore, name: str) -> dict[str, Any]:
    """Stop the sweep (`Sweep.stop`) and answer its summary; 409 when nothing of it is at work."""
    summary = sweep_summary(store, name)
    if not is_active(summary):
        raise ApiError(409, "sweep_not_active",
                       f"sweep '{name}' is {summary['state']} and none of its runs is queued or running; nothing to stop")
    Sweep(name, store=store).stop()
    return sweep_summary(store, name)


class SweepsHandler(FtkitHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.in_thread(all_summaries, self.store))


class SweepHandler(FtkitHandler):
    """One sweep's table; polled by the panel's sweep view while the sweep is at work."""

    @tornado.web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        self.reply(await self.in_thread(sweep_summary, self.store, name))


class SweepStopHandler(FtkitHandler):
    """A search asks no more trials and stops those running (each saves a checkpoint); a grid's runs stop."""

    @tornado.web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        self.reply(await self.in_thread(stop_sweep, self.store, name), status=202)
