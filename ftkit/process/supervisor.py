"""A run's supervisor: the light process that owns a run for as long as it lives.

``python -m ftkit.process.supervisor RUN_DIR [--resume]`` runs in its own session (it survives the
kernel or terminal that started it), takes the run's life lock, waits for the run's turn on its
devices (`ftkit.runstore.queue`), starts the worker (``python -m ftkit.engine.worker train RUN_DIR``,
or torchrun for several processes, `ftkit.process.torchrun`), and when the worker ends without
reporting (kill -9, the OOM killer, a crash in native code) marks the run failed with the cause. The
worker writes its run's events; the supervisor records how it ended. It never imports torch, so a
follower sees "starting" a fraction of a second after the launch.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from ..config import load_config
from ..runstore import RunBusy, RunStore
from ..runstore import queue as device_queue
from ..runstore.events import FINAL_STATUSES
from ..runstore.layout import CONFIG_FILE, LOG_FILE, RANK_ERROR_GLOB
from . import torchrun
from .watch import WorkerWatch


# glibc's malloc serves large blocks (a 47 MB embedding gradient, a long batch's activations) with
# fresh mmaps and gives the top of its heap back to the system as soon as it is free, so a worker
# faulted its memory in anew every step: 1.4 million page faults and 6% of the steps' wall time in
# one epoch of 1,500 CoNLL sentences on 2 cores (benchmarks/RESULTS.md, issue 32). The worker keeps
# up to 256 MiB of what it frees and reuses it (about 70 MB more peak memory), and still gives back a
# larger spike; a value the user set wins, and C libraries other than glibc ignore these names.
WORKER_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


def worker_environment(devices: device_queue.DeviceHold) -> dict[str, str]:
    """The worker's environment: the devices held for it, and `WORKER_MALLOC` where the user set none."""
    env = devices.worker_env() or dict(os.environ)
    return {**WORKER_MALLOC, **env}


def command(run_dir: Path, resume: bool = False) -> list[str]:
    """The command that supervises the run in ``run_dir`` (what `ftkit.runs` spawns)."""
    return [sys.executable, "-m", "ftkit.process.supervisor", str(run_dir)] + (["--resume"] if resume else [])


def supervise(run_dir: Path, resume: bool, main_address: str | None = None) -> int:
    """Own the run until it ends; ``main_address``: node 0's host when a cluster job learns it only on starting."""
    store, run_id = RunStore(run_dir.parent), run_dir.name
    # First of all, before any wait: this process owns the run until it exits (the life lock, this
    # machine's identity and a heartbeat); a second supervisor of the same run leaves it alone.
    try:
        store.hold_run(run_id)
    except RunBusy as exc:
        print(f"ftkit: {exc}", file=sys.stderr, flush=True)
        return 1
    start_offset = store.read_state(run_id)[1]  # what this attempt's worker reports comes after here
    config = load_config(run_dir / CONFIG_FILE)
    if main_address:
        config = config.replace({"resources.main_address": main_address})

    def forward_stop(signum, frame):  # SIGTERM/SIGINT to the supervisor = a graceful stop request
        store.request_stop(run_id)

    signal.signal(signal.SIGTERM, forward_stop)
    signal.signal(signal.SIGINT, forward_stop)
    # The run's turn on its devices: None when it left the queue without starting (stopped, deleted).
    # A cluster job skips the queue: the cluster placed it on the devices it allocated.
    in_a_job = config.resources.executor != "local"
    devices = device_queue.DeviceHold() if in_a_job else device_queue.wait_for_devices(store, run_id, config)
    if in_a_job and store.stop_requested(run_id):  # stopped while the job waited in the cluster's queue
        store.set_status(run_id, "stopped")
        return 0
    if devices is None:
        return 0
    # The first thing a follower sees once the devices are free, a fraction of a second after the
    # launch: this process imports no torch (the worker's imports alone take seconds).
    store.append_event(run_id, {"type": "phase", "phase": "starting", **({"detail": "resuming"} if resume else {})})
    distributed = torchrun.is_distributed(config)
    if distributed:  # torchrun starts one worker per device; they report through rank 0 and rank-<i>.err
        torchrun.clear_rank_errors(run_dir)
        command = torchrun.torchrun_command(config, run_dir, resume)
    else:
        command = [sys.executable, "-m", "ftkit.engine.worker", "train", str(run_dir)] + (["--resume"] if resume else [])
    # The worker holds the device slots too: they stay taken while either process lives.
    # It leads a process group of its own (its data loader workers, torchrun's ranks): a forced stop ends them all.
    worker = subprocess.Popen(command, stdin=subprocess.DEVNULL, env=worker_environment(devices), pass_fds=devices.fds,
                              process_group=0)
    store.set_record_fields(run_id, supervisor_pid=os.getpid(), pid=worker.pid, exit_reason=None)
    watch = WorkerWatch(store, run_id, config, worker)
    code = watch.wait()
    events, _ = store.read_events(run_id, start_offset)
    if not any(e["type"] == "status" and e["status"] in FINAL_STATUSES for e in events):
        if watch.forced_stop:  # stop always ends a run: the worker did not, so its process group was ended
            reason = f"stopped by force ({watch.forced_stop}); the last checkpoint stands"
            store.set_record_fields(run_id, exit_reason=reason)
            store.set_status(run_id, "stopped", error=reason)
            return 0
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else "?"
            reason = f"the training process was killed by signal {-code} ({name})"
            if -code == signal.SIGKILL:
                reason += ": kill -9, or the system ran out of memory"
        else:
            reason = f"the training process exited with code {code} without reporting; see {LOG_FILE}"
        rank_error = torchrun.rank_failure(run_dir, store.log_tail(run_id, 200)) if distributed else None
        if rank_error:
            reason = (f"{rank_error} (the distributed launch exited with code {code}; "
                      f"see {LOG_FILE} and {RANK_ERROR_GLOB})")
        store.set_record_fields(run_id, exit_reason=reason)
        store.set_status(run_id, "failed", error=reason)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ftkit.process.supervisor", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    return supervise(args.run_dir.resolve(), args.resume)


if __name__ == "__main__":
    sys.exit(main())
