"""Benchmark: reading a run with 1,000,000 events (a week of training) — target < 1 s to open its
notebook monitor, and < 1 s to compare 20 such runs (what the panel's compare view reloads).

Each run's events.jsonl is what a worker writes over a long run: progress lines, a training log
every 100 lines, a validation evaluation with per-entity figures every 2,000 and a checkpoint every
10,000; the run's final status then goes through the store, whose writer keeps the run's summary
(`ftkit.runstore.events.SummaryWriter`). "before" is what every reader did until now: fold the
whole stream (the monitor) or parse its log and eval lines (compare).

    .venv/bin/python benchmarks/long_runs.py [--events 1000000] [--runs 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from ftkit.comparison import comparison
from ftkit.config import Config
from ftkit.notebook.widgets.monitor import RunMonitor
from ftkit.runs import Run
from ftkit.runstore import RunStore
from ftkit.runstore.events import Curves, RunState, decode_events, read_events
from ftkit.runstore.layout import EVENTS_FILE, SUMMARY_FILE

ENTITIES = ("PER", "LOC", "ORG", "MISC")


def event_lines(count: int, start: float) -> bytes:
    """``count`` event lines as a worker writes them, one step per 10 lines, half a second apart."""
    lines = []
    for i in range(count):
        step, t = i // 10 + 1, start + i * 0.5
        if i % 10_000 == 9_999:
            event = {"t": t, "type": "checkpoint", "step": step, "checkpoint": f"checkpoint-{step}", "size": 8_400_000,
                     "metrics": {"f1": 0.5}, "kept": [step - 1000, step]}
        elif i % 2_000 == 1_999:
            metrics = {"loss": 1.0 / step, "f1": 1 - 1.0 / step, **{f"{e}_f1": 0.5 for e in ENTITIES}}
            event = {"t": t, "type": "eval", "split": "validation", "step": step, "best_metric_name": "f1",
                     "metrics": metrics}
        elif i % 100 == 99:
            event = {"t": t, "type": "log", "step": step, "loss": 2.0 / step, "learning_rate": 5e-5, "grad_norm": 1.5}
        else:
            event = {"t": t, "type": "progress", "step": step, "total_steps": count // 10, "epoch": step / 5000,
                     "loss": 2.0 / step, "samples_per_second": 64.0, "eta_seconds": 1000.0}
        lines.append(json.dumps(event))
    return ("\n".join(lines) + "\n").encode()


def timed(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        store = RunStore(Path(root) / "runs")
        first = store.create_run(Config(name="week-0"))
        store.set_status(first, "running", pid=os.getpid())
        events = store.run_dir(first) / EVENTS_FILE
        with open(events, "ab") as f:
            f.write(event_lines(args.events, time.time()))
        began = time.perf_counter()
        store.set_status(first, "completed")  # the writer folds what it has not seen and writes the summary
        summary_seconds = time.perf_counter() - began
        ids = [first]
        for i in range(1, args.runs):  # the same stream under other runs (hard links: no copies)
            run_id = store.create_run(Config(name=f"week-{i}"))
            for name in (EVENTS_FILE, SUMMARY_FILE):
                (store.run_dir(run_id) / name).unlink(missing_ok=True)
                os.link(store.run_dir(first) / name, store.run_dir(run_id) / name)
            ids.append(run_id)
        runs = [Run(run_id, store) for run_id in ids]
        RunMonitor(runs[0], follow=False).close()  # imports and Bokeh's first figure, outside the timing

        def open_monitor() -> None:
            RunMonitor(runs[0], follow=False).close()

        def old_curves() -> None:
            curves = Curves()
            for event in decode_events(events.read_bytes(), ("log", "eval")):
                curves.apply(event)

        result = {
            "events": args.events, "runs": args.runs, "events_mb": round(events.stat().st_size / 2**20, 1),
            "summary_kb": round((store.run_dir(first) / SUMMARY_FILE).stat().st_size / 2**10, 1),
            "writer_catch_up_s": round(summary_seconds, 3),
            "open_monitor_s": round(timed(open_monitor, args.repeats), 3),
            "compare_s": round(timed(lambda: comparison(runs), args.repeats), 3),
            "before_fold_s": round(timed(lambda: RunState.from_events(read_events(events)), 1), 3),
            "before_compare_s": round(timed(old_curves, 1) * args.runs, 3),
            "load_average": os.getloadavg()[0],
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
