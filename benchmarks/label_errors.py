"""Which training examples hurt (issue 26): are the flipped labels found, does leaving them out help, and
what does recording cost.

Everything goes through ftkit's product path: ``ftkit.train(config)`` with the noisy training data as a
DataFrame (saved into the run's folder), ``run.data_map()`` for the ranking, ``run.retrain(exclude=...)``
for the child; every run has ftkit's default settings (``model: default``, MiniLM-L6, 3 epochs) unless
said. Data from ``shared/data`` (read-only, never copied into the repository):

- ``sst2``: a seeded 2,000-example subset of SST-2's train split with 5% of its labels flipped (seeded);
  validation is SST-2's dev split, test its test split. Precision at 5% (of the 5% of examples ranked as
  likeliest label errors, the share that are flipped ones) and recall at 10% (of the flipped examples,
  the share in the top 10%).
- ``select``: the same on another draw of the subset and the noise (``--select-seed``): the ranking
  variants (cleanlab's score on the mean probabilities of every pass or on the first pass's, out of
  sample; cartography's mean confidence) are compared there, and the default (`ftkit.datamap.ISSUE_METHOD`,
  ``ISSUE_PASSES``) chosen on it, never on the figures reported for ``sst2`` and ``conll``.
- ``retrain``: for training seeds 1, 2, 3, the noisy SST-2 subset's run (parent) and its child without
  the top 5% (``run.retrain(exclude=run.data_map().nsmallest(100, "issue_score"))``); test accuracy of each.
- ``conll``: a seeded 2,000-sentence subset of CoNLL-2003 train, 5% of its sentences (among those with
  an entity) with every entity's type changed to another type; precision at 5%; evaluation on 500
  validation and test sentences (``training.max_eval_samples``) to keep the run short.
- ``cost``: the ``conll`` settings' training time (the Trainer's train runtime less evaluation) with
  ``training.record_dynamics`` off, then on, twice over (``--repeats``), one run at a time, and the time
  the recorder itself spent (recording in the training step and writing the file).

    .venv/bin/python benchmarks/label_errors.py                     # everything (about 45 minutes on 2 cores)
    .venv/bin/python benchmarks/label_errors.py --parts select sst2 --json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
SHARED = HERE.parents[1] / "shared" / "data"
SST2, CONLL = SHARED / "sst2", SHARED / "conll2003"
NOISE = 0.05
PARTS = ("select", "sst2", "retrain", "conll", "cost")


def noisy_sst2(seed: int, size: int) -> tuple["object", set[int]]:
    """A seeded subset of SST-2 train with NOISE of its labels flipped; returns it and the flipped rows."""
    import pandas as pd

    train = pd.read_csv(SST2 / "train.tsv", sep="\t", quoting=3, keep_default_na=False)
    subset = train.sample(n=size, random_state=seed).reset_index(drop=True)
    rng = random.Random(seed)
    flipped = set(rng.sample(range(size), int(NOISE * size)))
    subset["label"] = [1 - label if row in flipped else label for row, label in enumerate(subset["label"])]
    return subset, flipped


def noisy_conll(seed: int, size: int) -> tuple[list[dict], set[int]]:
    """A seeded subset of CoNLL-2003 train with the entity types of NOISE of its sentences changed."""
    import ftkit

    train = ftkit.load_data(str(CONLL / "train.txt"), task="ner")["train"]
    rng = random.Random(seed)
    rows = [train[i] for i in sorted(rng.sample(range(len(train)), size))]
    types = sorted({tag[2:] for row in rows for tag in row["tags"] if tag != "O"})
    with_entities = [i for i, row in enumerate(rows) if any(tag != "O" for tag in row["tags"])]
    changed = set(rng.sample(with_entities, int(NOISE * size)))
    for i in changed:
        mapping = {kind: rng.choice([t for t in types if t != kind]) for kind in types}
        rows[i] = {"tokens": rows[i]["tokens"],
                   "tags": [tag if tag == "O" else f"{tag[:2]}{mapping[tag[2:]]}" for tag in rows[i]["tags"]]}
    return [{"tokens": list(r["tokens"]), "tags": list(r["tags"])} for r in rows], changed


def ranking_scores(frame, flipped: set[int]) -> dict[str, float]:
    """Precision at 5% and recall at 10% of the flipped rows, ranking by ``issue_score`` (lowest first)."""
    ranked = frame.sort_values(["issue_score", "example"], kind="stable")["example"].tolist()
    top5, top10 = ranked[:int(NOISE * len(ranked))], ranked[:int(2 * NOISE * len(ranked))]
    return {"precision_at_5": sum(r in flipped for r in top5) / max(1, len(top5)),
            "recall_at_10": sum(r in flipped for r in top10) / max(1, len(flipped))}


def variants(run, flipped: set[int]) -> dict[str, dict[str, float]]:
    """Each ranking on the run's recorded dynamics: cleanlab's scores on the mean or first-pass probabilities,
    and cartography's mean confidence."""
    from ftkit.datamap import measures, passes, read_records

    records, level = read_records(run.dir)
    per_pass = passes(records)
    found = {}
    for method in ("self_confidence", "normalized_margin", "confidence_weighted_entropy"):
        for which in ("all", "first"):
            frame = measures(per_pass, level, method, which).reset_index()
            found[f"cleanlab {method}, {which} passes"] = ranking_scores(frame, flipped)
    frame = measures(per_pass, level).reset_index()
    frame["issue_score"] = frame["confidence"]
    found["cartography mean confidence"] = ranking_scores(frame, flipped)
    return found


def train(config: dict, **overrides) -> "object":
    import ftkit

    run = ftkit.train(config, **overrides).wait()
    if run.status != "completed":
        raise SystemExit(f"run {run.id} {run.status}: {run.error}\n{run.log_tail(30)}")
    return run


def sst2_config(train_rows, seed: int, runs_dir: str) -> dict:
    return {"task": "classification", "model": "default", "name": f"sst2-noisy-seed{seed}",
            "data": {"train": train_rows, "validation": str(SST2 / "dev.tsv"), "test": str(SST2 / "test.tsv")},
            "training": {"seed": seed}, "output": {"dir": runs_dir}}


def test_accuracy(run) -> float:
    return float(run.metrics["test"]["accuracy"])


def recording_cost(config: dict, extra: dict, repeats: int) -> dict:
    """Training time (the Trainer's runtime less its evaluations) with recording off and on, alternated
    (off first) ``repeats`` times each, and the time the recorder itself spent (recording and writing)."""
    seconds: dict[bool, list[float]] = {False: [], True: []}
    recorder: list[float] = []
    load = os.getloadavg()
    for _ in range(repeats):
        for on in (False, True):
            run = train({**config, "name": f"conll-cost-{'on' if on else 'off'}"},
                        overrides={**extra, "training.record_dynamics": on})
            usage = run.store.read_record(run.id)["resources"]
            seconds[on].append(usage["train_runtime_seconds"] - usage["evaluation_seconds"])
            if on:
                recorder.append(usage["dynamics_seconds"])
    return {"without_recording_s": seconds[False], "with_recording_s": seconds[True],
            "ratio": statistics.mean(seconds[True]) / statistics.mean(seconds[False]),
            "recorder_s": recorder, "recorder_share": statistics.mean(recorder) / statistics.mean(seconds[True]),
            "load_average_before": load, "load_average_after": os.getloadavg()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--size", type=int, default=2000, help="training examples (sentences) per noisy subset")
    parser.add_argument("--noise-seed", type=int, default=0, help="the subset and the flipped labels reported")
    parser.add_argument("--select-seed", type=int, default=100, help="the draw the ranking is chosen on")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="training seeds of the retrain part")
    parser.add_argument("--repeats", type=int, default=2, help="cost: runs with recording off, then on, this many times")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    runs_dir = tempfile.mkdtemp(prefix="ftkit-label-errors-")
    import yaml

    extra = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.overrides)}
    results: dict = {"size": args.size, "noise": NOISE, "load_average_at_start": os.getloadavg()}
    started = time.time()

    def report(name: str, value) -> None:
        results[name] = value
        if not args.json:
            print(f"{name}: {json.dumps(value, indent=1)}", flush=True)

    if "select" in args.parts:
        rows, flipped = noisy_sst2(args.select_seed, args.size)
        run = train(sst2_config(rows, 1, runs_dir), overrides=extra)
        report("select (sst2, another draw)", variants(run, flipped))
    if {"sst2", "retrain"} & set(args.parts):
        rows, flipped = noisy_sst2(args.noise_seed, args.size)
        parents, children = [], []
        for seed in (args.seeds if "retrain" in args.parts else args.seeds[:1]):
            parent = train(sst2_config(rows, seed, runs_dir), overrides=extra)
            frame = parent.data_map()
            if not parents:
                report("sst2", {"default": ranking_scores(frame, flipped), "variants": variants(parent, flipped)})
            parents.append(test_accuracy(parent))
            if "retrain" in args.parts:
                top = frame.nsmallest(int(NOISE * len(frame)), "issue_score")
                child = parent.retrain(exclude=top, **{key.replace(".", "__"): v for key, v in extra.items()})
                child.wait()
                children.append(test_accuracy(child))
        if "retrain" in args.parts:
            report("retrain (test accuracy)", {
                "seeds": args.seeds, "parent": parents, "child": children,
                "parent_mean": statistics.mean(parents), "child_mean": statistics.mean(children),
                "parent_sd": statistics.pstdev(parents), "child_sd": statistics.pstdev(children)})
    if {"conll", "cost"} & set(args.parts):
        rows, changed = noisy_conll(args.noise_seed, args.size)
        config = {"task": "ner", "model": "default", "name": "conll-noisy",
                  "data": {"train": rows, "validation": str(CONLL / "valid.txt"), "test": str(CONLL / "test.txt")},
                  "training": {"max_eval_samples": 500}, "output": {"dir": runs_dir}}
        if "conll" in args.parts:
            recorded = train(config, overrides=extra)
            report("conll", {"default": ranking_scores(recorded.data_map(), changed),
                             "variants": variants(recorded, changed)})
        if "cost" in args.parts:
            report("cost (conll)", recording_cost(config, extra, args.repeats))
    results["minutes"] = (time.time() - started) / 60
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
