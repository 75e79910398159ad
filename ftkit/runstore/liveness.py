"""Whether a run's processes still live, on this machine or on another that shares the store.

run.json records the supervisor's host and boot time and each process's pid with its start time, and
the supervisor touches a heartbeat file. A reader on that machine checks the pids (a pid the system
has since given to another process does not count); elsewhere it judges by the heartbeat's age
(:func:`heartbeat_timeout`). Processes are looked at through ``psutil``, so this works on Linux, macOS
and Windows alike.
"""

from __future__ import annotations

import math
import os
import socket
import time
from pathlib import Path
from typing import Any

import psutil

from ..errors import RunError
from .events import ACTIVE_STATUSES
from .layout import HEARTBEAT_FILE, LOG_FILE, PROGRESS_MARK_FILE

DIED_WITHOUT_REPORTING = "the training process died without reporting (killed, or out of memory)"


HEARTBEAT_INTERVAL_S = 5.0  # how often a supervisor touches its heartbeat (see heartbeat_interval)


# Twelve missed beats: long enough for a loaded shared file system (NFS caches file times for a few
# seconds), clocks a few seconds apart and a supervisor stalled by swapping; short enough that a run
# whose machine died shows as failed elsewhere within a minute. FTKIT_HEARTBEAT_TIMEOUT changes it
# (give every machine that shares the store the same value).
DEFAULT_HEARTBEAT_TIMEOUT_S = 60.0


def process_start_time(pid: int) -> float | None:
    """When ``pid`` started (seconds since the epoch, as psutil reports it); None if it is gone."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, ValueError):
        return None


def process_alive(pid: int | None, started: float | None = None) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, counts as gone) and, given its start
    time (`process_start_time`), is still that process rather than a later one the system gave that pid."""
    if not pid:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
        return started is None or process.create_time() == started
    except psutil.AccessDenied:
        return True  # another user's process that the system will not describe: the pid is all there is
    except (psutil.Error, ValueError):
        return False


def host_identity() -> dict[str, str | None]:
    """This machine as run.json records it: ``host`` (its name; FTKIT_HOST_ID overrides it, so a test or
    a soak can play another machine) and ``boot_id`` (when it booted: after a reboot no recorded pid
    means anything)."""
    try:
        boot_id = f"{psutil.boot_time():.0f}"
    except (psutil.Error, OSError):
        boot_id = None
    return {"host": os.environ.get("FTKIT_HOST_ID") or socket.gethostname(), "boot_id": boot_id}


def heartbeat_timeout() -> float:
    """Seconds without a heartbeat after which a reader on another machine reports a run gone:
    FTKIT_HEARTBEAT_TIMEOUT, else `DEFAULT_HEARTBEAT_TIMEOUT_S`."""
    text = os.environ.get("FTKIT_HEARTBEAT_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_HEARTBEAT_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise RunError(f"FTKIT_HEARTBEAT_TIMEOUT must be a positive number of seconds, not '{text}'")
    return seconds


def heartbeat_interval() -> float:
    """How often a supervisor beats: every 5 s, or a quarter of a shorter timeout, so several beats fit in one."""
    return min(HEARTBEAT_INTERVAL_S, heartbeat_timeout() / 4)


def dead_run_error(record: dict[str, Any], folder: Path) -> str | None:
    """Why a queued or running run has stopped without a word, or None while it lives (or is neither).

    A queued run that no supervisor has taken up (no host recorded) is gone once it has waited longer
    than `heartbeat_timeout`. Once a supervisor has recorded its host, a reader on another machine
    judges by the heartbeat's age alone; on that machine a reboot (another boot id) ended every
    process, and otherwise the supervisor's and worker's pids, each with its start time, tell.
    """
    status = record.get("status")
    if status not in ACTIVE_STATUSES:
        return None
    host, since = record.get("host"), record.get("queued_at") or record.get("created") or now()
    job = record.get("job")
    if host is None and status == "queued" and job:  # sent to a cluster: it waits as long as the cluster keeps it
        here = host_identity()["host"]
        if job.get("pid") and job.get("host") == here and not process_alive(job["pid"], job.get("pid_started")):
            return f"its {job['executor']} job {job['job_id']} ended before the run started; see {job['folder']}"
        return None
    if host is None and status == "queued":
        waited, limit = now() - since, heartbeat_timeout()
        return None if waited <= limit else (f"queued for {waited:.0f} s and no supervisor took it up "
                                             f"(FTKIT_HEARTBEAT_TIMEOUT is {limit:g} s); see {LOG_FILE}")
    here = host_identity()
    if host is not None and host != here["host"]:
        # The supervisor's heartbeat or the worker's own progress: a worker still training on a machine whose
        # supervisor was killed keeps its run alive, so no second worker starts beside it.
        beats = []
        for name in (HEARTBEAT_FILE, PROGRESS_MARK_FILE):
            try:
                beats.append((folder / name).stat().st_mtime)
            except OSError:
                pass
        age, limit = now() - max(beats, default=since), heartbeat_timeout()
        return None if age <= limit else (f"no heartbeat for {age:.0f} s from its supervisor or its training process "
                                          f"on {host} (FTKIT_HEARTBEAT_TIMEOUT is {limit:g} s): presumed dead")
    if host is not None and record.get("boot_id") not in (None, here["boot_id"]):
        return f"{host} has restarted since the run was {status}: its processes are gone"
    if any(process_alive(record.get(key), record.get(f"{key}_started")) for key in ("pid", "supervisor_pid")):
        return None
    if status == "queued":
        return (f"its supervisor (pid {record.get('supervisor_pid')}) died before the training process reported "
                "(killed, or out of memory)")
    return record.get("exit_reason") or DIED_WITHOUT_REPORTING


def with_start_times(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with each pid's start time beside it (``pid_started``, ``supervisor_pid_started``), so
    that a pid the system later gives another process is never taken for the run's."""
    for key in ("pid", "supervisor_pid"):
        if key in fields:
            fields[f"{key}_started"] = process_start_time(fields[key]) if fields[key] else None
    return fields


def beat(path: Path, interval: float) -> None:
    """A supervisor's heartbeat: touch ``path`` every ``interval`` seconds for as long as the process lives."""
    while True:
        time.sleep(interval)
        try:
            path.touch()  # a new time on an existing file: no disk space needed
        except OSError:
            pass  # a hiccup of a shared file system, or the run was deleted: the next beat tries again


def now() -> float:
    return time.time()
