"""Choosing defaults by the protocol: validation data only, three seeds, one factor at a time.

Each setting is a normal ftkit run (`ftkit.train`, the product path) given a train file and a
validation file and **no test file**, so the test split cannot leak into the choice. A study starts
from a base setting and changes one factor at a time; each setting runs once per seed and prints the
mean and spread (population standard deviation) of the validation metric. The chosen setting is then
checked once on the test split and on data it was not chosen on (`conll_ner.py`, `generalise.py`).

    .venv/bin/python benchmarks/choose_defaults.py --study lora
    .venv/bin/python benchmarks/choose_defaults.py --study full --train-samples 3000 --validation-samples 800
    .venv/bin/python benchmarks/choose_defaults.py --study lora --train-samples 4000 --validation-samples 1000 --seeds 1 2 3
    .venv/bin/python benchmarks/choose_defaults.py --base adapter.kind=lora --factor training.learning_rate=5e-4,1e-3,2e-3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import ftkit

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003"

# What was tried for encoder LoRA, in order: where the adapter sits (attention alone, or attention and
# the feed-forward layers: `output.dense` ends both the attention block and the layer), then its rate,
# then its rank. Full fine-tuning: its rate (2e-4 was first picked on test F1, one seed), then the batch size.
STUDIES = {
    "lora": {
        "base": ["adapter.kind=lora"],
        "factors": [
            "adapter.target_modules=[query,key,value];[query,key,value,intermediate.dense,output.dense]",
            "training.learning_rate=5e-4,1e-3,2e-3",
            "adapter.r=8,16,32",
        ],
    },
    "full": {
        "base": ["adapter.kind=full"],
        "factors": ["training.learning_rate=1e-4,2e-4,4e-4", "training.batch_size=16,32"],
    },
}


def parse_factor(text: str) -> tuple[str, list[str]]:
    """``key=v1,v2`` (or ``key=v1;v2`` when the values hold commas) -> (key, values)."""
    key, _, values = text.partition("=")
    return key, values.split(";" if ";" in values else ",")


def run_setting(overrides: list[str], args, runs_dir: str) -> dict:
    """The validation metric of one setting, once per seed."""
    scores = []
    for seed in args.seeds:
        config = ftkit.load_config(
            {"name": "defaults-" + "-".join(o.split("=")[-1] for o in overrides)[:60], "task": "ner",
             "model": "default", "data": {"train": args.train, "validation": args.validation},
             "training": {"epochs": args.epochs, "seed": seed, "max_train_samples": args.train_samples,
                          "max_eval_samples": args.validation_samples},
             "output": {"dir": runs_dir, "save_predictions": False}},
            overrides=[*overrides, *args.overrides])
        run = ftkit.train(config).wait()
        if run.status != "completed":
            raise SystemExit(f"{overrides} seed {seed}: run {run.status}: {run.error}")
        scores.append(run.metrics["validation"][args.metric])
        print(json.dumps({"setting": overrides, "seed": seed, f"validation_{args.metric}": scores[-1]}), flush=True)
    return {"setting": overrides, "scores": scores, "mean": statistics.mean(scores),
            "spread": statistics.pstdev(scores) if len(scores) > 1 else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", choices=sorted(STUDIES), help="a prepared study (base + factors)")
    parser.add_argument("--base", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--factor", action="append", default=[], metavar="KEY=V1,V2")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="fixed for every setting")
    parser.add_argument("--train", default=str(DATA / "train.txt"))
    parser.add_argument("--validation", default=str(DATA / "valid.txt"))
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--validation-samples", type=int, default=None)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--metric", default="f1")
    parser.add_argument("--runs-dir", default=None)
    args = parser.parse_args()
    study = STUDIES.get(args.study, {"base": [], "factors": []})
    base, factors = [*study["base"], *args.base], [*study["factors"], *args.factor]
    if not factors:
        parser.error("give --study or at least one --factor")
    runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="ftkit-defaults-")
    chosen: dict[str, str] = {}
    table = []
    measured: dict[frozenset, dict] = {}  # a setting met again under a later factor is not run twice

    def measure(overrides: list[str]) -> dict:
        key = frozenset(overrides)
        if key not in measured:
            measured[key] = run_setting(overrides, args, runs_dir)
        return measured[key]

    for factor in factors:  # one factor at a time, the earlier factors fixed at their winners
        key, values = parse_factor(factor)
        fixed = [*base, *(f"{k}={v}" for k, v in chosen.items())]
        results = [measure([*fixed, f"{key}={value}"]) for value in values]
        best = max(range(len(values)), key=lambda i: results[i]["mean"])
        chosen[key] = values[best]
        table += [(key, value, result) for value, result in zip(values, results)]
    print(f"\nvalidation {args.metric}, seeds {args.seeds}, base {base or 'ftkit defaults'}")
    print(f"{'factor':<28} {'value':<28} {'mean':>7} {'spread':>7}  per seed")
    for key, value, result in table:
        mark = " <- chosen" if chosen[key] == value else ""
        print(f"{key:<28} {value:<28} {result['mean']:>7.4f} {result['spread']:>7.4f}  "
              f"{' '.join(f'{s:.4f}' for s in result['scores'])}{mark}")
    print("chosen:", " ".join(f"{k}={v}" for k, v in chosen.items()))


if __name__ == "__main__":
    main()
