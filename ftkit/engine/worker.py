"""The processes behind a run: a light supervisor, and the training worker it watches.

`python -m ftkit.engine.worker supervise RUN_DIR` runs in its own session (it survives the kernel or
terminal that started it), starts `python -m ftkit.engine.worker train RUN_DIR`, and when the worker
ends without reporting (kill -9, the OOM killer, a crash in native code) marks the run failed
with the cause. The worker is the only process that imports the training stack.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path

from . import launch
from ..config import load_config
from ..errors import FtkitError
from ..store import FINAL_STATUSES, RunStore


def supervise(run_dir: Path, resume: bool) -> int:
    store, run_id = RunStore(run_dir.parent), run_dir.name
    _, start_offset = store.read_events(run_id)  # what this attempt's worker reports comes after here
    config = load_config(run_dir / "config.yaml")
    distributed = launch.is_distributed(config)
    if distributed:  # torchrun starts one worker per device; they report through rank 0 and rank-<i>.err
        launch.clear_rank_errors(run_dir)
        command = launch.torchrun_command(config, run_dir, resume)
    else:
        command = [sys.executable, "-m", "ftkit.engine.worker", "train", str(run_dir)] + (["--resume"] if resume else [])
    worker = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    store.set_record_fields(run_id, supervisor_pid=os.getpid(), pid=worker.pid, exit_reason=None)

    def forward_stop(signum, frame):  # SIGTERM/SIGINT to the supervisor = a graceful stop request
        store.request_stop(run_id)

    signal.signal(signal.SIGTERM, forward_stop)
    signal.signal(signal.SIGINT, forward_stop)
    code = worker.wait()
    events, _ = store.read_events(run_id, start_offset)
    if not any(e["type"] == "status" and e["status"] in FINAL_STATUSES for e in events):
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else "?"
            reason = f"the training process was killed by signal {-code} ({name})"
            if -code == signal.SIGKILL:
                reason += ": kill -9, or the system ran out of memory"
        else:
            reason = f"the training process exited with code {code} without reporting; see train.log"
        rank_error = launch.rank_failure(run_dir, store.log_tail(run_id, 200)) if distributed else None
        if rank_error:
            reason = f"{rank_error} (the distributed launch exited with code {code}; see train.log and rank-*.err)"
        store.set_record_fields(run_id, exit_reason=reason)
        store.set_status(run_id, "failed", error=reason)
    return 0


def train(run_dir: Path, resume: bool) -> int:
    store, run_id = RunStore(run_dir.parent), run_dir.name
    # SIGTERM straight to the worker also means: checkpoint, then stop.
    signal.signal(signal.SIGTERM, lambda signum, frame: store.request_stop(run_id))
    try:
        from .training import run_training

        status = run_training(store, run_id, resume=resume)
    except FtkitError as exc:
        store.set_status(run_id, "failed", error=str(exc))
        print(f"ftkit: {exc}", file=sys.stderr)
        return 1
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the store
        traceback.print_exc()
        message = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else ""
        store.set_status(run_id, "failed", error=f"{type(exc).__name__}: {message}".rstrip(": "))
        return 1
    print(f"ftkit: run {run_id} {status}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ftkit.engine.worker")
    parser.add_argument("mode", choices=("supervise", "train"))
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    run_dir = args.run_dir.resolve()
    return (supervise if args.mode == "supervise" else train)(run_dir, args.resume)


if __name__ == "__main__":
    sys.exit(main())
