"""Training throughput (non-padding tokens/s): ftkit vs the classic tutorial loop vs plain Trainers.

Two levels, each printed as ratios measured side by side in one command:

- ``loop``: the training loop alone, inside this one process: the same model (`model: default`),
  data (a seeded CoNLL-2003 train subset), batch size and number of steps for ftkit's Trainer set-up,
  the tutorial loop, a plain Trainer, and a plain Trainer with length grouping switched on. Worker
  start-up, tokenisation, evaluation and the run store are not in these figures.
- ``process``: the whole product path, from command to completed run: `ftkit train --follow` (its
  worker, tokenisation, events and store, the per-epoch evaluation and checkpoint, test predictions)
  against `benchmarks/reference_trainer.py` run as its own process for each reference (the same
  train/validation/test files, 1 epoch, ftkit's default settings, validation and test scored).
  ``--repeats N`` runs N rounds (each reference, then ftkit, one after another) and prints medians,
  and a phase table: ftkit's phases from its run's events beside the length-grouped Trainer's from
  the marks reference_trainer.py prints. ``--profile PREFIX`` adds a py-spy profile of one more run
  of each, in CPU seconds per part (imports, forward, backward, optimizer step, evaluation, ...).

    .venv/bin/python benchmarks/throughput.py [--level loop|process|both] [--steps 60] [--batch-size 32]
    .venv/bin/python benchmarks/throughput.py --level process --sentences 1500
    .venv/bin/python benchmarks/throughput.py --level process --repeats 3 --references grouped [--sentences 6000]
    .venv/bin/python benchmarks/throughput.py --level process --repeats 1 --references grouped --profile /tmp/prof
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ftkit.runstore.layout import EVENTS_FILE, RUN_FILE

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003"
HERE = Path(__file__).resolve().parent


def tutorial_loop(prepared, batch_size: int, steps: int) -> float:
    """The classic notebook recipe: pad every sentence to 128, naive labels, a plain AdamW loop, fp32."""
    from ftkit.engine.models import build_model, resolve_model_source

    raw, tokenizer = prepared.raw["train"], prepared.tokenizer
    label2id = {label: i for i, label in enumerate(prepared.labels)}
    encoded = tokenizer(list(raw["tokens"]), is_split_into_words=True, padding="max_length", truncation=True,
                        max_length=128, return_tensors="pt")
    labels = torch.tensor([([label2id[t] for t in tags] + [0] * 128)[:128] for tags in raw["tags"]])
    dataset = torch.utils.data.TensorDataset(encoded["input_ids"], encoded["attention_mask"], labels)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)
    torch.manual_seed(0)
    model = build_model(resolve_model_source("default"), "ner", prepared.labels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    model.train()
    started = time.perf_counter()
    for step, (ids, mask, y) in enumerate(loader):
        if step == steps:
            break
        loss = model(input_ids=ids, attention_mask=mask, labels=y).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return time.perf_counter() - started


def plain_trainer(prepared, batch_size: int, steps: int, out: str, grouped: bool = False) -> float:
    """A plain Trainer: aligned labels, the token-classification collator, random order unless ``grouped``."""
    from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments

    from ftkit.engine.models import build_model, resolve_model_source

    torch.manual_seed(0)
    model = build_model(resolve_model_source("default"), "ner", prepared.labels)
    args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch_size, max_steps=steps,
                             learning_rate=5e-5, save_strategy="no", eval_strategy="no", report_to="none",
                             disable_tqdm=True, use_cpu=not torch.cuda.is_available(), logging_strategy="no",
                             **({"train_sampling_strategy": "group_by_length"} if grouped else {}))
    trainer = Trainer(model=model, args=args, train_dataset=prepared.features["train"],
                      data_collator=DataCollatorForTokenClassification(prepared.tokenizer))
    return trainer.train().metrics["train_runtime"]


def ftkit_trainer(prepared, out: str) -> float:
    from ftkit.engine.training import build_trainer

    return build_trainer(prepared, Path(out)).train().metrics["train_runtime"]


def loop_config(steps: int, batch_size: int, **training: object):
    """The loop level's run: `model: default`, full fine-tuning, one pass over a CoNLL-2003 train subset of
    ``steps`` batches, hardly any evaluation, saving or logging (``training`` adds or overrides keys)."""
    from ftkit.config import load_config

    return load_config({
        "task": "ner", "model": "default", "adapter": {"kind": "full"},
        "data": {"train": str(DATA / "train.txt"), "validation": str(DATA / "valid.txt")},
        "training": {"batch_size": batch_size, "max_steps": steps, "max_train_samples": steps * batch_size,
                     "max_eval_samples": 32, "eval_steps": 10**6, "save_steps": 10**6, "logging_steps": 10**6,
                     **training},
    })


def loop_level(args) -> None:
    from ftkit.engine.training import prepare

    samples = args.steps * args.batch_size
    prepared = prepare(loop_config(args.steps, args.batch_size))
    tokens = sum(prepared.features["train"]["length"])  # one pass over the subset = `steps` batches
    with tempfile.TemporaryDirectory() as out:
        times = {
            "tutorial loop (pad to 128, fp32 AdamW loop)": tutorial_loop(prepared, args.batch_size, args.steps),
            "plain Trainer (dynamic padding, random order)": plain_trainer(prepared, args.batch_size, args.steps, out),
            "plain Trainer (dynamic padding, length-grouped)":
                plain_trainer(prepared, args.batch_size, args.steps, out, grouped=True),
            "ftkit (dynamic padding, length-grouped)": ftkit_trainer(prepared, out),
        }
    ftkit_rate = tokens / times["ftkit (dynamic padding, length-grouped)"]
    print(f"training loop alone: {samples} sentences, {tokens} non-padding tokens, batch {args.batch_size}, "
          f"{args.steps} steps, device {'cuda' if torch.cuda.is_available() else 'cpu'}, "
          f"torch threads {torch.get_num_threads()}")
    for name, seconds in times.items():
        rate = tokens / seconds
        print(f"{name:<48} {seconds:7.1f} s  {rate:8.0f} tokens/s  ftkit = {ftkit_rate / rate:4.2f}x")


def write_subset(source: Path, target: Path, count: int, seed: int) -> None:
    """A seeded sample of ``count`` sentences of a CoNLL file, written as CoNLL."""
    sentences = [block for block in source.read_text(encoding="utf-8").split("\n\n")
                 if block.strip() and not block.startswith("-DOCSTART-")]
    chosen = random.Random(seed).sample(sentences, min(count, len(sentences)))
    target.write_text("\n\n".join(block.strip("\n") for block in chosen) + "\n", encoding="utf-8")


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(launch time, seconds to exit, output) of one command run to its end."""
    launched = time.time()
    started = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}")
    return launched, seconds, done.stdout


REFERENCES = {"tutorial": "tutorial loop (reference_trainer.py --variants tutorial)",
              "trainer": "plain Trainer (reference_trainer.py --variants trainer)",
              "grouped": "plain Trainer, length-grouped (--variants grouped)"}
FTKIT = "ftkit train --follow"
# The phase table's rows: (phase, its end in ftkit's events, its end in reference_trainer.py's marks).
PHASES = [
    ("process start, imports", "worker imported torch and transformers", "imports done"),
    ("data read, tokenised, model loaded", "first step begins", "train tokenised"),
    ("first step", "first step done", "first step done"),
    ("steady steps", "last step done", "last step done"),
    ("validation", "validation scored", "validation scored"),
    ("checkpoint", "checkpoint written", None),
    ("test predictions", "test scored", "test scored"),
    ("predictions file, card, exit", "exit", "exit"),
]


def process_level(args) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    references = [name for name in args.references if name in REFERENCES]
    seconds: dict[str, list[float]] = {REFERENCES[name]: [] for name in references} | {FTKIT: []}
    timelines: dict[str, list[dict[str, float]]] = {"ftkit": [], "grouped": []}
    peak_memory: dict[str, list[float]] = {"ftkit": [], "grouped": []}  # GiB, each process's peak RSS
    with tempfile.TemporaryDirectory(prefix="ftkit-throughput-") as folder:
        files = {}
        for split, source, count in (("train", "train.txt", args.sentences), ("validation", "valid.txt", args.eval_sentences),
                                     ("test", "test.txt", args.eval_sentences)):
            files[split] = Path(folder) / f"{split}.txt"
            write_subset(DATA / source, files[split], count, seed=0)
        config = {"task": "ner", "model": "default", "data": {k: str(v) for k, v in files.items()},
                  "training": {"epochs": 1}, "output": {"dir": str(Path(folder) / "runs")}}
        (Path(folder) / "run.yaml").write_text(json.dumps(config), encoding="utf-8")
        ftkit = [str(Path(sys.executable).with_name("ftkit")), "train", str(Path(folder) / "run.yaml"), "--follow"]
        reference = [sys.executable, str(HERE / "reference_trainer.py"), "--json",
                     *(f"--{k}={v}" for k, v in files.items())]
        for repeat in range(args.repeats):  # one after another: the references, then ftkit
            for name in references:
                launched, took, output = timed([*reference, "--variants", name], env)
                seconds[REFERENCES[name]].append(took)
                if name == "grouped":
                    result = json.loads(output.strip().splitlines()[-1])
                    timelines["grouped"].append({k: v - launched for k, v in result["phases"].items()} | {"exit": took})
                    peak_memory["grouped"].append(result["peak_rss_bytes"] / 2**30)
            launched, took, _ = timed(ftkit, env)
            seconds[FTKIT].append(took)
            events_file = sorted((Path(folder) / "runs").glob(f"*/{EVENTS_FILE}"), key=lambda p: p.stat().st_mtime)[-1]
            timelines["ftkit"].append(dict(ftkit_timeline(events_file, launched)) | {"exit": took})
            record = json.loads((events_file.parent / RUN_FILE).read_text(encoding="utf-8"))
            peak_memory["ftkit"].append(record["resources"]["peak_rss_bytes"] / 2**30)
            print(f"repeat {repeat + 1}: " + ", ".join(f"{name} {values[-1]:.1f} s" for name, values in seconds.items())
                  + f" (load average {os.getloadavg()[0]:.1f})", flush=True)
        if args.profile:  # one more round of each, sampled: not timed
            profiles = {"ftkit": sampled(ftkit, env, f"{args.profile}.ftkit.txt", "ftkit.engine.worker"),
                        "grouped": sampled([*reference, "--variants", "grouped"], env, f"{args.profile}.grouped.txt")}
    ftkit_seconds = statistics.median(seconds[FTKIT])
    print(f"whole process, command to completed run: {args.sentences} train sentences, "
          f"{args.eval_sentences} validation and test sentences, 1 epoch, ftkit defaults; "
          f"median of {args.repeats}, each run alone, one after another")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"{name:<60} {median:7.1f} s  ftkit = {median / ftkit_seconds:4.2f}x   "
              f"({', '.join(f'{v:.1f}' for v in values)})")
    print("where the seconds went (median of each phase's length; ftkit from its events, the grouped Trainer "
          "from reference_trainer.py's marks):")
    print(f"  {'phase':<40} {'ftkit':>7} {'grouped':>8}")
    for phase, ftkit_end, grouped_end in PHASES:
        print(f"  {phase:<40} {phase_length(timelines['ftkit'], PHASES, ftkit_end, 1):7.2f} "
              f"{phase_length(timelines['grouped'], PHASES, grouped_end, 2):8.2f}")
    print(f"  {'whole process':<40} {ftkit_seconds:7.2f} "
          f"{statistics.median(seconds[REFERENCES['grouped']]) if 'grouped' in references else float('nan'):8.2f}")
    print(f"  {'peak memory of the training process, GiB':<40} "
          + " ".join(f"{statistics.median(peak_memory[side]) if peak_memory[side] else float('nan'):{width}.2f}"
                     for side, width in (("ftkit", 7), ("grouped", 8))))
    if args.profile:
        print(f"a profile of one more run of each (py-spy, CPU seconds in the training process; raw stacks in "
              f"{args.profile}.*.txt):")
        for part in profiles["ftkit"]:
            print(f"  {part:<40} {profiles['ftkit'][part]:7.2f} {profiles['grouped'][part]:8.2f}")


# What the profile table names, each by frames of its stacks, in order of precedence: a sample counts for the
# first part that a frame of its stack names (an import during evaluation is an import, a forward pass during
# evaluation is evaluation).
PROFILE_PARTS = [
    ("imports", ("_find_and_load",)),
    ("model loaded", ("from_pretrained",)),
    ("validation and test predictions", ("Trainer.evaluate (", "evaluate_split", "save_predictions",
                                         "predicted_batches", "entity_f1")),
    ("checkpoint", ("_save_checkpoint",)),
    ("model card", ("write_run_card",)),
    ("training dynamics (data map)", ("DynamicsRecorder",)),
    ("events and run store", ("append_event", "set_status", "set_record_fields")),
    ("data read and tokenised", ("prepare (ftkit/engine/training.py", "read_conll", "encode (")),
    ("gradient clipping", ("_clip_grad_norm",)),
    ("optimizer step", ("Optimizer.step", "AcceleratedOptimizer.step")),
    ("backward", ("backward (",)),
    ("forward (and loss)", ("compute_loss",)),
]


def sampled(command: list[str], env: dict[str, str], output: str, process: str | None = None) -> dict[str, float]:
    """CPU seconds per `PROFILE_PARTS` part of one run of ``command`` sampled by py-spy (100 Hz)."""
    subprocess.run(["py-spy", "record", "--subprocesses", "--nonblocking", "--format", "raw", "--rate", "100",
                    "-o", output, "--", *command], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return profile_parts(Path(output), process)


def profile_parts(raw_stacks: Path, process: str | None = None) -> dict[str, float]:
    """Seconds per part of py-spy's raw stacks at 100 Hz: of the process whose command line has ``process``
    (all processes without one), "other" for samples no part names."""
    parts: dict[str, float] = {name: 0.0 for name, _ in PROFILE_PARTS} | {"other": 0.0}
    for line in raw_stacks.read_text(encoding="utf-8").splitlines():
        stack, count = line.rsplit(" ", 1)
        frames = stack.split(";")
        if process and not any(frame.startswith("process") and process in frame for frame in frames):
            continue
        part = next((name for name, patterns in PROFILE_PARTS
                     if any(pattern in frame for frame in frames for pattern in patterns)), "other")
        parts[part] += int(count) / 100
    return parts


def phase_length(timelines: list[dict[str, float]], phases, end: str | None, column: int) -> float:
    """The median length of the phase ending at ``end``: from the end of the latest earlier phase the
    timeline has (0: the launch) to ``end``; 0 for a phase this side does not have."""
    if end is None or not timelines:
        return 0.0 if end is None else float("nan")
    ends = [row[column] for row in phases]
    earlier = [name for name in ends[:ends.index(end)] if name]
    lengths = []
    for timeline in timelines:
        start = max((timeline[name] for name in earlier if name in timeline), default=0.0)
        lengths.append(timeline[end] - start if end in timeline else float("nan"))
    return statistics.median(lengths)


def ftkit_timeline(events_file: Path, launched: float) -> list[tuple[str, float]]:
    """When each stage of the ftkit run ended, from its events' timestamps."""
    events = [json.loads(line) for line in events_file.read_text(encoding="utf-8").splitlines() if line.strip()]

    def first(name: str, match) -> tuple[str, float] | None:
        found = next((e for e in events if match(e)), None)
        return (name, found["t"] - launched) if found else None

    stages = [
        first("run created, supervisor started (first event)", lambda e: True),
        first("worker imported torch and transformers", lambda e: e["type"] == "status" and e["status"] == "running"),
        first("data read and tokenised, model loading", lambda e: e.get("phase") == "loading model"),
        first("first step begins", lambda e: e.get("phase") == "first step"),
        first("first step done", lambda e: e["type"] == "progress" and e.get("step", 0) >= 1),
        first("last step done", lambda e: e["type"] == "progress" and e.get("step") == e.get("total_steps")),
        first("validation scored", lambda e: e["type"] == "eval" and e["split"] == "validation"),
        first("checkpoint written", lambda e: e["type"] == "checkpoint"),
        first("test scored", lambda e: e["type"] == "eval" and e["split"] == "test"),
        first("completed (predictions written)", lambda e: e["type"] == "status" and e["status"] == "completed"),
    ]
    return [stage for stage in stages if stage]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--level", choices=("loop", "process", "both"), default="both")
    parser.add_argument("--steps", type=int, default=60, help="loop level: optimiser steps")
    parser.add_argument("--batch-size", type=int, default=32, help="loop level: batch size")
    parser.add_argument("--sentences", type=int, default=1500, help="process level: training sentences")
    parser.add_argument("--eval-sentences", type=int, default=500, help="process level: validation and test sentences")
    parser.add_argument("--repeats", type=int, default=1, help="process level: rounds, each reference then ftkit")
    parser.add_argument("--references", nargs="+", default=list(REFERENCES), choices=list(REFERENCES),
                        help="process level: the reference processes to run (grouped gives the phase table)")
    parser.add_argument("--profile", metavar="PREFIX", help="process level: also profile one run of ftkit and of the "
                        "grouped Trainer with py-spy (pip install py-spy), raw stacks to PREFIX.*.txt")
    args = parser.parse_args()
    if args.level in ("loop", "both"):
        loop_level(args)
    if args.level in ("process", "both"):
        process_level(args)


if __name__ == "__main__":
    main()
