"""Searches that use every device and prune (issue 27): 12 optuna trials with ``--parallel 2`` and the median
pruner against the same 12 trials one after another without pruning, both through ftkit's product path
(`ftkit.sweeps.start_sweep`, the driver process, ordinary runs placed by the device queue).

Data: a seeded subset of CoNLL-2003 train (``--train`` sentences) and of its validation split (``--validation``),
written to a scratch folder (``shared/data`` is never copied into the repository); no test split is used.
Model: ``default`` (MiniLM-L6), full fine-tuning, ``--epochs`` epochs, an evaluation every ``--eval-steps``
steps (what the pruner sees). The search: learning rate 1e-5..1e-3 (log) and warmup 0..0.2, TPE with the
same seed in both arms. Each arm has its own run store (each tokenises once). After one untimed warm-up
run, the sequential arm runs first, then the parallel one (``resources.runs_per_device: 2``: two runs share the CPU, each with half
its cores); the load average is printed beside each.

    .venv/bin/python benchmarks/sweep.py            # about 20 minutes on 2 cores
    .venv/bin/python benchmarks/sweep.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
CONLL = HERE.parents[1] / "shared" / "data" / "conll2003"
SEARCH = {"training.learning_rate": "1e-5:1e-3:log", "training.warmup": "0:0.2"}


def sentences(path: Path) -> list[str]:
    blocks = path.read_text(encoding="utf-8").split("\n\n")
    return [block.strip() for block in blocks if block.strip() and not block.startswith("-DOCSTART-")]


def write_subset(source: Path, target: Path, size: int, seed: int) -> str:
    chosen = random.Random(seed).sample(sentences(source), size)
    target.write_text("\n\n".join(chosen) + "\n", encoding="utf-8")
    return str(target)


def arm(base: dict, runs_dir: Path, parallel: int, pruner: str, trials: int, seed: int) -> dict:
    from ftkit.config import load_config
    from ftkit.sweeps import start_sweep

    config = load_config({**base, "resources": {"runs_per_device": parallel}, "output": {"dir": str(runs_dir)}})
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    sweep = start_sweep(config, search=SEARCH, trials=trials, name=f"parallel-{parallel}-{pruner}",
                        parallel=parallel, pruner=pruner, seed=seed).wait()
    wall = time.perf_counter() - started
    summary = sweep.summary()
    statuses = [entry["status"] for entry in summary["runs"]]
    return {"parallel": parallel, "pruner": pruner, "wall_s": round(wall, 1), "best": summary["best"]["value"],
            "best_run": summary["best"]["name"], "completed": statuses.count("completed"),
            "pruned": statuses.count("pruned"), "failed": statuses.count("failed"),
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
            "trials": [{"name": e["name"], "status": e["status"], "value": e["value"], **e["settings"],
                        **timeline(sweep.store, e["id"], started)} for e in summary["runs"]]}


def timeline(store, run_id: str, origin: float) -> dict:
    """When the run was launched, started training and ended, in seconds since the sweep started."""
    wall = time.time() - (time.perf_counter() - origin)
    events, _ = store.read_events(run_id)
    statuses = [e for e in events if e["type"] == "status"]
    record = store.read_record(run_id)
    return {"launched_s": round(record["created"] - wall, 1),
            "running_s": next((round(e["t"] - wall, 1) for e in statuses if e["status"] == "running"), None),
            "ended_s": round(statuses[-1]["t"] - wall, 1) if statuses else None}


def warm_up(base: dict, runs_dir: Path) -> None:
    """One untimed run first, so that neither arm pays for a cold disk cache (torch, the model) alone."""
    import ftkit

    ftkit.train({**base, "output": {"dir": str(runs_dir)}}).wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--train", type=int, default=400, help="training sentences")
    parser.add_argument("--validation", type=int, default=200, help="validation sentences")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--eval-steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="the subsets' and the sampler's seed")
    parser.add_argument("--arms", nargs="+", default=["sequential", "parallel"], choices=["sequential", "parallel"],
                        help="run one arm alone (its figures only, no ratio)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="ftkit-bench-sweep-") as scratch:
        folder = Path(scratch)
        base = {"task": "ner", "model": "default", "name": "conll-subset",
                "data": {"train": write_subset(CONLL / "train.txt", folder / "train.txt", args.train, args.seed),
                         "validation": write_subset(CONLL / "valid.txt", folder / "valid.txt", args.validation,
                                                    args.seed)},
                "training": {"epochs": args.epochs, "batch_size": 16, "max_seq_length": 64,
                             "eval_steps": args.eval_steps, "logging_steps": args.eval_steps, "device": "cpu"}}
        warm_up(base, folder / "warm-up")
        sequential = arm(base, folder / "sequential", 1, "none", args.trials, args.seed) if "sequential" in args.arms else None
        parallel = arm(base, folder / "parallel", 2, "median", args.trials, args.seed) if "parallel" in args.arms else None
    if sequential is None or parallel is None:
        print(json.dumps(sequential or parallel, indent=2))
        return
    result = {"machine": f"{os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"), "sequential": sequential,
              "parallel": parallel, "time_ratio": round(parallel["wall_s"] / sequential["wall_s"], 3),
              "best_gap_points": round(100 * (sequential["best"] - parallel["best"]), 2)}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for name in ("sequential", "parallel"):
        row = result[name]
        print(f"{name:10} parallel {row['parallel']} pruner {row['pruner']:6} wall {row['wall_s']:7.1f} s  best "
              f"validation f1 {row['best']:.4f} ({row['best_run']})  completed {row['completed']} pruned "
              f"{row['pruned']} failed {row['failed']}  load {row['load_before']} -> {row['load_after']}")
    print(f"time ratio (parallel + pruning / sequential): {result['time_ratio']:.3f}   best-score gap: "
          f"{result['best_gap_points']:+.2f} points")


if __name__ == "__main__":
    main()
