"""Time to the first feedback and to the first training step, from `ftkit.train(...)` and from `%finetune`.

The default model on the CoNLL-2003 train split (valid.txt as validation), `max_steps` small; the
run is asked to stop once its first step is done. Each way of launching runs twice on the same runs
folder: the first launch tokenises (an empty cache), the second finds the same data and model and
reuses the tokenised splits. Times are read from the run's events.jsonl (wall clock, this machine)
against the moment of the call: the first event (the supervisor's "starting" phase), the first
progress event, the first training step (the first progress event with step >= 1), and when each
phase began.

    .venv/bin/python benchmarks/first_step.py [--max-steps 20] [--no-magic]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FTKIT_DATA_DIR") or REPO.parent / "shared" / "data") / "conll2003"


def timeline(store, run_id: str, started: float, timeout: float = 900) -> dict[str, float]:
    """Seconds from ``started`` to the first event, each phase, the first progress event and the first step.

    Waits for the first step, then asks the run to stop and waits for it to end (so launches never overlap).
    """
    marks: dict[str, float] = {}
    offset, deadline = 0, time.monotonic() + timeout
    while "first step done" not in marks:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no first step within {timeout} s:\n{store.log_tail(run_id)}")
        events, offset = store.read_events(run_id, offset)
        for event in events:
            at = event["t"] - started
            marks.setdefault("first event", at)
            if event["type"] == "phase":
                marks.setdefault(f"phase: {event['phase']}", at)
                if event["phase"] == "tokenising" and event.get("cached"):
                    marks["tokenised splits from the cache"] = marks.get("tokenised splits from the cache", 0) + 1
            elif event["type"] == "progress":
                marks.setdefault("first progress event", at)
                if (event.get("step") or 0) >= 1:
                    marks.setdefault("first step done", at)
            elif event["type"] == "status" and event["status"] == "failed":
                raise RuntimeError(f"the run failed: {event.get('error')}\n{store.log_tail(run_id)}")
        time.sleep(0.05)
    store.request_stop(run_id)
    while store.status(run_id)[0] not in ("completed", "stopped", "failed"):
        time.sleep(0.2)
    return marks


def launch_with_train(runs_dir: Path, max_steps: int) -> dict[str, float]:
    import ftkit
    from ftkit.runstore import RunStore

    config = {"task": "ner", "model": "default", "name": "first-step",
              "data": {"train": str(DATA / "train.txt"), "validation": str(DATA / "valid.txt")},
              "training": {"max_steps": max_steps, "batch_size": 16}, "output": {"dir": str(runs_dir)}}
    started = time.time()
    run = ftkit.train(config)
    returned = time.time() - started
    marks = timeline(RunStore(runs_dir), run.id, started)
    return {"call returned": returned, **marks}


def launch_with_magic(client, runs_dir: Path, max_steps: int) -> dict[str, float]:
    from ftkit.runstore import RunStore

    store = RunStore(runs_dir)
    known = {r["id"] for r in store.list_runs()[0]}
    command = (f"%finetune --data {DATA}/train.txt --validation {DATA}/valid.txt --task ner "
               f"--max-steps {max_steps} --batch-size 16 --name first-step-magic --runs-dir {runs_dir} -o run")
    started = time.time()
    msg_id = client.execute(command)
    while True:  # the cell is done once the run's monitor is on screen (displayed before the reply)
        reply = client.get_shell_msg(timeout=120)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    shown = time.time() - started
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"%finetune failed: {reply['content']}")
    runs = [r["id"] for r in store.list_runs()[0] if r["id"] not in known]
    return {"monitor shown (cell done)": shown, **timeline(store, runs[0], started)}


def describe(label: str, marks: dict[str, float]) -> str:
    cached = int(marks.pop("tokenised splits from the cache", 0))
    order = sorted(marks.items(), key=lambda item: item[1])
    lines = [f"{label}: first event {marks.get('first event', float('nan')):.2f} s, first progress event "
             f"{marks.get('first progress event', float('nan')):.2f} s, first step {marks.get('first step done', float('nan')):.2f} s"
             f"{f' ({cached} tokenised splits from the cache)' if cached else ''}"]
    lines += [f"    {at:7.2f} s  {name}" for name, at in order]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=20, help="training steps (the run stops after the first)")
    parser.add_argument("--no-magic", action="store_true", help="skip the %%finetune launches (no kernel)")
    parser.add_argument("--keep", action="store_true", help="keep the runs folder (each stopped run saves a "
                        "checkpoint: about 1 GB in all)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    print(f"{time.strftime('%Y-%m-%d %H:%M')} · {platform.node()} · {platform.processor() or platform.machine()} · "
          f"{os.cpu_count()} CPUs · load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} · "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    results = []
    runs_dir = Path(tempfile.mkdtemp(prefix="ftkit-first-step-"))
    for attempt in ("first launch", "second launch"):
        results.append((f"ftkit.train, {attempt}", launch_with_train(runs_dir / "train", args.max_steps)))
        print(describe(*results[-1]), flush=True)
    if not args.no_magic:
        from jupyter_client.manager import KernelManager

        env = {**os.environ, "FTKIT_MONITOR": "widget", "PYTHONPATH": str(REPO)}
        manager = KernelManager(kernel_name="python3")
        manager.start_kernel(env=env, cwd=str(runs_dir))
        client = manager.client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=120)
            client.execute_interactive("%load_ext ftkit", timeout=120, output_hook=lambda msg: None)
            for attempt in ("first launch", "second launch"):
                results.append((f"%finetune, {attempt}", launch_with_magic(client, runs_dir / "magic", args.max_steps)))
                print(describe(*results[-1]), flush=True)
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=True)
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
          + (f"; runs in {runs_dir}" if args.keep else ""))
    if not args.keep:
        import shutil

        shutil.rmtree(runs_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
