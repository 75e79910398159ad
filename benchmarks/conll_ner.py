"""CoNLL-2003 NER with `model: default`: test entity F1, wall time, tokens/s and peak memory.

Trains through the product path (`ftkit.train`, its own worker process) on the full train split
and evaluates on the test split, once per adapter. Run by hand:

    .venv/bin/python benchmarks/conll_ner.py                        # ftkit defaults, full and lora, 1 epoch
    .venv/bin/python benchmarks/conll_ner.py --adapters full --set training.epochs=3
    .venv/bin/python benchmarks/conll_ner.py --set training.max_train_samples=2000   # a quick look
    .venv/bin/python benchmarks/conll_ner.py --adapters lora --seeds 1 2 3           # mean and spread
"""

from __future__ import annotations

import argparse
import json
import statistics
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
    parser.add_argument("--seeds", type=int, nargs="+", default=[None], help="one run per seed (default: the config's)")
    args = parser.parse_args()
    runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="ftkit-bench-")
    rows = []
    for adapter, seed in ((adapter, seed) for adapter in args.adapters for seed in args.seeds):
        training = {"epochs": args.epochs, **({"seed": seed} if seed is not None else {})}
        config = ftkit.load_config(
            {"name": f"bench-conll-{adapter}", "task": "ner", "model": "default",
             "data": {"train": str(DATA / "train.txt"), "validation": str(DATA / "valid.txt"),
                      "test": str(DATA / "test.txt")},
             "adapter": {"kind": adapter}, "training": training, "output": {"dir": runs_dir}},
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
        parameters = record.get("parameters", {})
        rows.append({
            "adapter": adapter, "seed": config.training.seed, "epochs": config.training.epochs,
            "learning_rate": config.learning_rate, "validation_f1": run.metrics["validation"]["f1"],
            "test_f1": test["f1"], "test_precision": test["precision"], "test_recall": test["recall"],
            "wall_seconds": wall, "train_seconds": usage.get("train_runtime_seconds"),
            "train_tokens_per_second": usage.get("train_tokens_per_second"),
            "peak_rss_gb": (usage.get("peak_rss_bytes") or 0) / 2**30,
            "trainable_parameters": parameters.get("trainable"),
            "trainable_share": parameters["trainable"] / parameters["total"] if parameters.get("total") else None,
        })
        print(json.dumps(rows[-1]), flush=True)
    print("\nadapter  seed  epochs  lr       test F1  P       R       wall s  train s  tokens/s  peak RSS GB  trainable")
    for r in rows:
        print(f"{r['adapter']:<8} {r['seed']:<5} {r['epochs']:<7g} {r['learning_rate']:<8.0e} {r['test_f1']:.4f}   "
              f"{r['test_precision']:.4f}  {r['test_recall']:.4f}  {r['wall_seconds']:<7.0f} "
              f"{r['train_seconds'] or 0:<8.0f} {r['train_tokens_per_second'] or 0:<9.0f} {r['peak_rss_gb']:<12.2f} "
              f"{r['trainable_parameters'] or 0:,} ({100 * (r['trainable_share'] or 0):.2f}%)")
    for adapter in args.adapters:
        f1s = [r["test_f1"] for r in rows if r["adapter"] == adapter]
        if len(f1s) > 1:
            print(f"{adapter}: test F1 mean {statistics.mean(f1s):.4f}, spread (population sd) {statistics.pstdev(f1s):.4f} "
                  f"over {len(f1s)} seeds")


if __name__ == "__main__":
    main()
