"""The supervisor's watch over its worker: progress, not a thread that beats regardless, proves a run alive.

The worker touches its progress mark (`PROGRESS_MARK_FILE`) as it trains and evaluates. Once training has
begun, a mark older than ``resources.stall_timeout`` (by default 10 times the longest pause between marks
so far, and at least `STALL_MIN_S`) shows the run as stalled (a "stalled" phase, which its next progress
clears). A stop that the worker does not act on ends it anyway: after a grace period (short for a stalled
run) the worker's process group gets SIGTERM, then SIGKILL, so that stop always ends a run and its device
slots are released. Plain Python; no torch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field

from ..config import Config
from ..runstore import RunStore
from ..runstore.events import STALLED_PHASE
from ..runstore.layout import PROGRESS_MARK_FILE

LOOK_EVERY_S = 1.0
STALL_MIN_S = 300.0  # a checkpoint of a large model, or a slow shared disk, may pause the marks for minutes
STOP_GRACE_MIN_S = 120.0  # a stop asked of a training worker: the step under way and a checkpoint first
STALLED_STOP_GRACE_S = 10.0  # a stalled worker will not act on the stop file
KILL_GRACE_S = 15.0  # after SIGTERM, before SIGKILL


@dataclass
class WorkerWatch:
    store: RunStore
    run_id: str
    config: Config
    worker: subprocess.Popen
    longest_pause: float = 0.0
    last_mark: float | None = None
    stalled: bool = False
    stop_seen: float | None = None
    terminated: float | None = None
    killed: bool = False
    forced: list[str] = field(default_factory=list)

    def wait(self) -> int:
        """Wait for the worker to end, watching its progress and any stop; its exit code."""
        mark = self.store.run_dir(self.run_id) / PROGRESS_MARK_FILE
        mark.unlink(missing_ok=True)  # this attempt's marks only
        while True:
            try:
                return self.worker.wait(timeout=LOOK_EVERY_S)
            except subprocess.TimeoutExpired:
                pass
            try:
                marked = mark.stat().st_mtime
            except OSError:
                marked = None  # not training yet: reading data, tokenising, loading the model
            self.look(marked, time.time())

    def stall_limit(self) -> float:
        explicit = self.config.resources.stall_timeout
        return float(explicit) if explicit else max(STALL_MIN_S, 10 * self.longest_pause)

    def look(self, marked: float | None, now: float) -> None:
        if marked is not None:
            if self.last_mark is not None and marked != self.last_mark:
                self.longest_pause = max(self.longest_pause, marked - self.last_mark)
                self.stalled = False  # its progress event has ended the phase
            self.last_mark = marked
            quiet = now - marked
            if not self.stalled and quiet > self.stall_limit():
                self.stalled = True
                self.store.append_event(self.run_id, {"type": "phase", "phase": STALLED_PHASE,
                                                      "detail": f"no progress for {quiet:.0f} s"})
        if not self.store.stop_requested(self.run_id):
            return
        self.stop_seen = self.stop_seen or now
        grace = STALLED_STOP_GRACE_S if self.stalled else max(STOP_GRACE_MIN_S, 3 * self.longest_pause)
        since_progress = now - max(self.stop_seen, marked or 0.0)
        if self.terminated is None and since_progress > grace:
            self.terminated = now
            self._signal(signal.SIGTERM, f"it had not stopped {since_progress:.0f} s after the stop request")
        elif self.terminated is not None and not self.killed and now - self.terminated > KILL_GRACE_S:
            self.killed = True
            self._signal(signal.SIGKILL, f"it outlived SIGTERM by {KILL_GRACE_S:.0f} s")

    def _signal(self, signum: int, why: str) -> None:
        """Signal the worker's process group (its data loader workers, torchrun's ranks): the worker leads it."""
        self.forced.append(f"{signal.Signals(signum).name}: {why}")
        try:
            os.killpg(self.worker.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    @property
    def forced_stop(self) -> str | None:
        """How the stop was forced, if it was: the reason recorded with the stopped run."""
        return "; then ".join(self.forced) or None
