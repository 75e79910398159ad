"""Peak memory and time of reading and tokenising a 2 GB JSONL the way a run does, then a few training steps.

Writes a text-classification JSONL of ``--size-gb`` (about 1 KB a record, one record with an emoji, which
makes a str of the whole file 4 bytes a character) into ``--folder``, then, in a fresh process, runs
`ftkit.engine.training.prepare` on it: what the worker does before its first step (read the splits, check
them, hold out validation, tokenise, load the model). Reported: wall time, peak RSS (``ru_maxrss``: it
counts the memory-mapped Arrow pages the process touched, which the kernel can drop at will) and the
peak of anonymous memory (``RssAnon``, sampled every 50 ms: what the process cannot give back).
``--steps`` then trains a run of that many steps on the file through `ftkit.train` (the caches of the
first pass are reused). ``--before PATH`` measures the same step with another copy of ftkit (e.g. this
repository's last commit: ``git archive HEAD ftkit | tar -x -C /tmp/before``) on ``--before-mb`` of the
same records.

    python benchmarks/reading.py [--size-gb 2] [--folder /tmp/ftkit-reading] [--steps 5]
                                 [--before /tmp/before --before-mb 200]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

WORDS = ("the film was long and the actors were good but the story lost its way in the middle part of "
         "an otherwise fine evening at the cinema with friends who liked it more than I did").split()


def write_records(path: Path, size: int, emoji_at: float = 0.5) -> None:
    """``size`` bytes of ``{"text", "label"}`` lines, seeded; one text, ``emoji_at`` of the way in, has an emoji."""
    if path.exists() and path.stat().st_size >= size:
        return
    rng = random.Random(0)
    written, emoji_done = 0, False
    with path.open("w", encoding="utf-8") as handle:
        while written < size:
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(120, 220)))
            if not emoji_done and written >= size * emoji_at:
                text, emoji_done = text + " 😀", True
            line = json.dumps({"text": text, "label": "pos" if rng.random() < 0.5 else "neg"}, ensure_ascii=False) + "\n"
            handle.write(line)
            written += len(line.encode("utf-8"))


def config_for(path: Path, folder: Path, steps: int | None = None):
    from ftkit.config import load_config

    return load_config(None, name="reading-benchmark", task="classification", model="default",
                       data={"train": str(path), "validation_fraction": 0.001},
                       training={"max_seq_length": 64, "batch_size": 8, "max_eval_samples": 64,
                                 "max_steps": steps or 1, "logging_steps": 1},
                       output={"dir": str(folder / "runs")})


class PeakAnon:
    """The largest ``RssAnon`` of this process (Linux ``/proc/self/status``), sampled by a thread."""

    def __init__(self, every: float = 0.05):
        self.peak, self.every, self.done = 0, every, threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self) -> None:
        while not self.done.is_set():
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    self.peak = max(self.peak, int(line.split()[1]) * 1024)
            self.done.wait(self.every)

    def stop(self) -> int:
        self.done.set()
        self.thread.join()
        return self.peak


def measure(path: Path, folder: Path) -> dict:
    """In this (fresh) process: `prepare` on ``path``, timed, with its peak memory."""
    peak_anon = PeakAnon()
    started = time.perf_counter()
    from ftkit.engine.training import prepare

    config = config_for(path, folder)
    prepared = prepare(config)
    seconds = time.perf_counter() - started
    return {"file_bytes": path.stat().st_size, "seconds": round(seconds, 1),
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "peak_anon_bytes": peak_anon.stop(),
            "examples": {split: len(prepared.features[split]) for split in prepared.features}}


def in_child(path: Path, folder: Path, pythonpath: str | None = None) -> dict:
    """`measure` in a fresh Python (peak figures of one process must not mix), its JSON read back."""
    env = dict(os.environ, HF_DATASETS_CACHE=str(folder / "hf-cache"))
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run([sys.executable, __file__, "--child", str(path), "--folder", str(folder)], env=env,
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"the measured process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def train(path: Path, folder: Path, steps: int) -> dict:
    """A real run of ``steps`` steps on the file (supervisor and worker processes), as a user starts one."""
    import ftkit

    os.environ["HF_DATASETS_CACHE"] = str(folder / "hf-cache")
    started = time.perf_counter()
    run = ftkit.train(config_for(path, folder, steps)).wait()
    return {"status": run.status, "seconds": round(time.perf_counter() - started, 1), "run": run.id}


def gib(value: int) -> str:
    return f"{value / 2**30:.2f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/ftkit-reading"))
    parser.add_argument("--steps", type=int, default=5, help="train a run of this many steps on it (0: none)")
    parser.add_argument("--before", help="a folder holding another ftkit package, measured the same way")
    parser.add_argument("--before-mb", type=int, default=200)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.folder)))
        return
    args.folder.mkdir(parents=True, exist_ok=True)
    path = args.folder / "train.jsonl"
    write_records(path, int(args.size_gb * 2**30))
    for cache in ("runs", "hf-cache", "before"):  # cold: no split, Arrow or tokenised cache of an earlier pass
        shutil.rmtree(args.folder / cache, ignore_errors=True)
    result = {"after": in_child(path, args.folder)}
    print(f"{path.name}, {gib(result['after']['file_bytes'])}: {result['after']['seconds']} s, peak RSS "
          f"{gib(result['after']['peak_rss_bytes'])} (anonymous {gib(result['after']['peak_anon_bytes'])}), "
          f"examples {result['after']['examples']}", flush=True)
    if args.before:
        small = args.folder / f"train-{args.before_mb}mb.jsonl"
        write_records(small, args.before_mb * 2**20)
        before = result["before"] = in_child(small, args.folder / "before", args.before)
        scale = result["after"]["file_bytes"] / before["file_bytes"]
        print(f"before, {small.name}, {gib(before['file_bytes'])}: {before['seconds']} s, peak RSS "
              f"{gib(before['peak_rss_bytes'])} (anonymous {gib(before['peak_anon_bytes'])}); x{scale:.1f} for "
              f"{gib(result['after']['file_bytes'])}: about {gib(before['peak_rss_bytes'] * scale)}", flush=True)
    if args.steps:
        result["training"] = train(path, args.folder, args.steps)
        print(f"a run of {args.steps} steps on it: {result['training']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
