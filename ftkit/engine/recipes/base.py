"""The `Recipe` interface: what the engine asks of a training method.

A recipe turns a prepared run (its canonical splits, tokenizer and Config, and the task object) into
the model, the features its trainer reads and the trainer itself. The engine around it stays the same
for every method: the run folder, events, stop and resume, the test evaluation and the run card.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

if TYPE_CHECKING:
    from transformers import Trainer, TrainerCallback

    from ...config import Config
    from ...tasks.base import Task
    from ..training import Prepared

Report = Callable[..., None]  # report(phase, done, total, detail, cached): see training.prepare


class Recipe(ABC):
    """One training method. Subclasses set ``name`` and implement the abstract methods."""

    name: ClassVar[str]  # the registry key (``Task.recipe``)
    records_dynamics: ClassVar[bool] = False  # its trainer is FtkitTrainer, which records training dynamics

    @abstractmethod
    def features(self, raw: Any, tokenizer: Any, config: "Config", task: "Task", labels: Sequence[str],
                 report: Report) -> Any:
        """The splits as this recipe's trainer reads them (a DatasetDict); every split of ``raw`` is kept."""

    @abstractmethod
    def model(self, source: str, config: "Config", task: "Task", labels: Sequence[str]) -> Any:
        """The model to train, loaded from ``source``, with what ``config.adapter`` trains made trainable."""

    @abstractmethod
    def build_trainer(self, prepared: "Prepared", output_dir: Path,
                      callbacks: Sequence["TrainerCallback"] = ()) -> "Trainer":
        """A transformers Trainer (or a subclass: TRL's) over ``prepared``, writing checkpoints to ``output_dir``."""

    def train_lengths(self, trainer: "Trainer") -> list[int]:
        """Tokens one forward pass reads per training example: the numerator of tokens per second."""
        return list(trainer.train_dataset["length"][:])

    def evaluation_features(self, trainer: "Trainer", prepared: "Prepared", split: str) -> Any:
        """The split as the trainer evaluates it (a preference trainer tokenises it first)."""
        return prepared.features[split]

    def __repr__(self) -> str:
        return f"<recipe {self.name}>"


def trainer_callbacks(config: "Config", callbacks: Sequence["TrainerCallback"]) -> list["TrainerCallback"]:
    """The engine's callbacks, plus early stopping when ``training.early_stopping_patience`` asks for it."""
    from transformers import EarlyStoppingCallback

    callbacks = list(callbacks)
    if config.training.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.training.early_stopping_patience))
    return callbacks
