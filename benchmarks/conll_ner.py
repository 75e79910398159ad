"""CoNLL-2003 NER with `model: default`: test entity F1, wall time, tokens/s and peak memory.

Trains through the product path (`ftkit.train`, its own worker process) on the full train split
and evaluates on the test split, once per adapter. Run by hand:

    .venv/bin/python benchmarks/conll_ner.py                        # ftkit defaults, full and lora, 1 epoch
    .venv/bin/python benchmarks/conll_ner.py --adapters full --set training.epochs=3
    .venv/bin/python benchmarks/conll_ner.py --set training.max_train_samples=2000   # a quick look
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import ftkit

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapters", nargs="+", default=["full", "lora"])
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--runs-dir", default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="ftkit-bench-")
    rows = []
    for adapter in args.adapters:
        config = ftkit.load_config(
            {"name": f"bench-conll-{adapter}", "task": "ner", "model": "default",
             "data": {"train": str(DATA / "train.txt"), "validation": str(DATA / "valid.txt"),
                      "test": str(DATA / "test.txt")},
             "adapter": {"kind": adapter}, "training": {"epochs": args.epochs}, "output": {"dir": runs_dir}},
            overrides=args.overrides,
        )
        started = time.perf_counter()
        run = ftkit.train(config).wait()
        wall = time.perf_counter() - started
        if run.status != "completed":
            raise SystemExit(f"{adapter}: run {run.status}: {run.error}\n{run.log_tail()}")
        record = json.loads((run.dir / "run.json").read_text())
        usage = record.get("resources", {})
        test = run.metrics["test"]
        rows.append({
            "adapter": adapter, "epochs": config.training.epochs, "learning_rate": config.learning_rate,
            "test_f1": test["f1"], "test_precision": test["precision"], "test_recall": test["recall"],
            "wall_seconds": wall, "train_seconds": usage.get("train_runtime_seconds"),
            "train_tokens_per_second": usage.get("train_tokens_per_second"),
            "peak_rss_gb": (usage.get("peak_rss_bytes") or 0) / 2**30,
            "trainable_parameters": record.get("parameters", {}).get("trainable"),
        })
        print(json.dumps(rows[-1]), flush=True)
    print("\nadapter  epochs  lr       test F1  P       R       wall s  train s  tokens/s  peak RSS GB")
    for r in rows:
        print(f"{r['adapter']:<8} {r['epochs']:<7g} {r['learning_rate']:<8.0e} {r['test_f1']:.4f}   "
              f"{r['test_precision']:.4f}  {r['test_recall']:.4f}  {r['wall_seconds']:<7.0f} "
              f"{r['train_seconds'] or 0:<8.0f} {r['train_tokens_per_second'] or 0:<9.0f} {r['peak_rss_gb']:.2f}")


if __name__ == "__main__":
    main()
