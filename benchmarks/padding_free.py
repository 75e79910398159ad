"""Padding-free (packed) NER batches against padded ones, on this machine: steps/s side by side.

The same model (`model: default`, full fine-tuning), the same seeded CoNLL-2003 train subset, batch
size and steps as `throughput.py --level loop`, through ftkit's own Trainer set-up (`build_trainer`),
once with ``training.padding_free: never`` (dynamic padding, length-grouped batches) and once with
``always`` (each batch one packed row; ftkit's probe must say the model keeps packed sentences
apart, or it refuses). The variants alternate for ``--rounds`` rounds in one process, so load on
the machine falls on both alike; the first step of each run (warm-up) is not timed.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/padding_free.py [--steps 60] [--batch-size 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import loop_config  # noqa: E402

VARIANTS = {"padded (padding_free: never)": "never", "packed (padding_free: always)": "always"}


class StepTimer(TrainerCallback):
    """Seconds from the end of the first step to the end of the last: steps/s without the warm-up."""

    def __init__(self) -> None:
        self.started = self.ended = 0.0
        self.steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if state.global_step == 1:
            self.started = now
        self.ended, self.steps = now, state.global_step - 1

    @property
    def rate(self) -> float:
        return self.steps / (self.ended - self.started)


class CountingCollator:
    """The training collator, counting the tokens of the batches it builds (padding included)."""

    def __init__(self, collator) -> None:
        self.collator, self.tokens = collator, 0

    def __call__(self, features):
        batch = self.collator(features)
        self.tokens += batch["input_ids"].numel()
        return batch


def timed_run(choice: str, steps: int, batch_size: int, out: str) -> tuple[float, int]:
    """steps/s of one training run, and the tokens its training batches held (padding included)."""
    from ftkit.engine.training import build_trainer, prepare

    torch.manual_seed(0)
    prepared = prepare(loop_config(steps, batch_size, padding_free=choice, device="cpu"))
    timer = StepTimer()
    trainer = build_trainer(prepared, Path(out) / choice, callbacks=[timer])
    if (trainer.train_data_collator is not None) != (choice == "always"):
        raise SystemExit(f"padding_free: {choice} did not give the batches it names")
    counting = CountingCollator(trainer.train_data_collator or trainer.data_collator)
    trainer.train_data_collator = counting
    trainer.train()
    return timer.rate, counting.tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    tokens: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="ftkit-padding-free-") as out:
        for _ in range(args.rounds):
            for name, choice in VARIANTS.items():
                rate, tokens[name] = timed_run(choice, args.steps, args.batch_size, out)
                rates[name].append(rate)
    print(f"padding-free NER batches on {'cuda' if torch.cuda.is_available() else 'cpu'}: model default, "
          f"{args.steps} steps of {args.batch_size} CoNLL-2003 sentences, {args.rounds} alternating rounds, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f} at the end")
    for name, values in rates.items():
        print(f"{name:<32} {statistics.median(values):6.3f} steps/s  (rounds: {', '.join(f'{v:.3f}' for v in values)})"
              f"  tokens in its batches {tokens[name]:,}")
    padded, packed = (statistics.median(rates[name]) for name in VARIANTS)
    print(f"packed / padded = {packed / padded:.2f}x")


if __name__ == "__main__":
    main()
