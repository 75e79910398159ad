"""What a training worker's own settings buy (issue 32): the allocator that keeps freed memory
(`ftkit.process.supervisor.WORKER_MALLOC`) and fused AdamW (`ftkit.engine.arguments`).

The same epoch of ftkit's training loop, built as a run's worker builds it (`prepare`, `build_trainer`,
the data map recorded; no evaluation or checkpoint), each variant in a fresh process, one after another:
ftkit's worker as it is, glibc's malloc left as it comes, and per-tensor AdamW. Prints the training
seconds, the median step, the process's minor page faults, kernel CPU seconds and peak RSS, and the
final train loss (the settings must not change what is learned).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/worker_settings.py [--sentences 1500] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import DATA, write_subset  # noqa: E402

from ftkit.process.supervisor import WORKER_MALLOC  # noqa: E402

# name: (malloc settings in the environment, optimizer)
VARIANTS = {
    "ftkit worker (kept memory, fused AdamW)": (WORKER_MALLOC, None),
    "glibc malloc as it comes": ({}, None),
    "per-tensor AdamW (adamw_torch)": (WORKER_MALLOC, "adamw_torch"),
}


def train_once(config_path: Path, optim: str | None) -> dict[str, float]:
    """One epoch in this process; what it cost."""
    from transformers import TrainerCallback

    from ftkit.config import load_config
    from ftkit.engine.dynamics import recorder_for
    from ftkit.engine.training import build_trainer, prepare

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.seconds, self.began = [], 0.0

        def on_step_begin(self, *args, **kwargs):
            self.began = time.perf_counter()

        def on_step_end(self, *args, **kwargs):
            self.seconds.append(time.perf_counter() - self.began)

    prepared = prepare(load_config(json.loads(config_path.read_text(encoding="utf-8"))))
    with tempfile.TemporaryDirectory() as folder:
        recorder, steps = recorder_for(prepared, Path(folder)), StepTimes()
        trainer = build_trainer(prepared, Path(folder), [recorder, steps])
        trainer.dynamics = recorder
        trainer.args.eval_strategy = trainer.args.save_strategy = "no"
        trainer.args.load_best_model_at_end = False
        trainer.args.optim = optim or trainer.args.optim
        output = trainer.train()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"seconds": output.metrics["train_runtime"], "median_step": statistics.median(steps.seconds),
            "page_faults": usage.ru_minflt, "kernel_seconds": usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
            "train_loss": output.training_loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=1500, help="CoNLL-2003 train sentences (seeded sample)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds, each variant once")
    parser.add_argument("--child", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--optim", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(train_once(Path(args.child), args.optim)))
        return
    plain = {name: value for name, value in os.environ.items() if name not in WORKER_MALLOC}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="ftkit-worker-settings-") as folder:
        train = Path(folder) / "train.txt"
        write_subset(DATA / "train.txt", train, args.sentences, seed=0)
        config = Path(folder) / "run.json"
        config.write_text(json.dumps({"task": "ner", "model": "default", "data": {"train": str(train)},
                                      "training": {"epochs": 1}}), encoding="utf-8")
        for repeat in range(args.repeats):
            for name, (malloc, optim) in VARIANTS.items():
                command = [sys.executable, __file__, "--child", str(config)] + (["--optim", optim] if optim else [])
                done = subprocess.run(command, env={**plain, **malloc, "HF_HUB_OFFLINE": "1"}, capture_output=True,
                                      text=True, check=True)
                results[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"round {repeat + 1}, {name}: {results[name][-1]['seconds']:.1f} s "
                      f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    print(f"one epoch of {args.sentences} CoNLL-2003 sentences in ftkit's training loop, median of {args.repeats}:")
    columns = {"seconds": ".1f", "median_step": ".3f", "page_faults": ",.0f", "kernel_seconds": ".1f",
               "peak_rss_mb": ",.0f", "train_loss": ".4f"}
    print(f"  {'variant':<42}" + "".join(f"{column:>15}" for column in columns))
    for name, runs in results.items():
        print(f"  {name:<42}" + "".join(f"{statistics.median(run[column] for run in runs):>15{form}}"
                                        for column, form in columns.items()))


if __name__ == "__main__":
    main()
