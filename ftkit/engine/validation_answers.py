"""Answer quality while a generative model trains: answers generated for a validation sample, scored.

The loss says how likely the reference answers are; users want to know what the model answers.
At every ``training.generate_every``-th evaluation (each one when the best checkpoint is chosen by
a generated score, such as ``validation_exact_match``), the trainer's model answers a fixed,
seeded sample of the validation split (``training.generate_examples``, 64 by default, which
bounds the cost), and the task scores the answers as it scores the test split's. The scores join
the evaluation's metrics (so they are curves, and can pick the best checkpoint); a few answers
and the seconds it took reach the run's events with the evaluation (`EventCallback`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..data.splits import subset
from ..runstore.layout import SELECTION_SPLIT
from ..tasks.base import EvalContext

if TYPE_CHECKING:
    from .training import Prepared

SHOWN_ANSWERS = 8  # answers an evaluation event carries: enough to read, small enough for every event


class ValidationAnswers:
    """Called by the trainer at each evaluation; returns the generated scores (or nothing this time)."""

    def __init__(self, prepared: "Prepared", every: int):
        config = prepared.config
        self.task, self.config, self.tokenizer = prepared.task, config, prepared.tokenizer
        sample = subset(prepared.raw[SELECTION_SPLIT], config.training.generate_examples, config.training.seed)
        # Longest first (by the characters of what is asked), so each generation batch holds prompts of
        # similar length: less left padding to run through the model.
        sizes = [len(str(value)) for value in sample[self.task.columns[0]]]
        self.sample = sample.select(sorted(range(len(sample)), key=sizes.__getitem__, reverse=True))
        self.every = every
        self.evaluations = 0
        self.latest: list[dict[str, Any]] | None = None  # the answers of the last generating evaluation, once read

    @classmethod
    def of(cls, prepared: "Prepared") -> "ValidationAnswers | None":
        """The sampler a run's config asks for: ``generate_every``, or a generated score that picks the best."""
        training = prepared.config.training
        generated = prepared.config.best_metric in getattr(prepared.task, "generated_metrics", ())
        if not (training.generate_every or generated) or SELECTION_SPLIT not in prepared.raw:
            return None
        return cls(prepared, 1 if generated else training.generate_every)

    def __call__(self, trainer: Any) -> dict[str, float]:
        self.evaluations += 1
        if self.evaluations % self.every:
            return {}
        from .generation import Generator

        started = time.perf_counter()
        generator = Generator(trainer.model, self.tokenizer, trainer.args.device)
        context = EvalContext(self.sample, self.config, self.tokenizer, lambda: generator)
        metrics, rows = self.task.sampled_answers(context)
        self.latest = self.task.error_rows(rows)[:SHOWN_ANSWERS]
        return {**metrics, "generation_seconds": time.perf_counter() - started}

    def take_latest(self) -> list[dict[str, Any]] | None:
        """The answers generated since the last call (None when this evaluation generated none)."""
        latest, self.latest = self.latest, None
        return latest


__all__ = ["SHOWN_ANSWERS", "ValidationAnswers"]
