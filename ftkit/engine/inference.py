"""Predictions on raw text with a trained checkpoint: a `Predictor` loads the model and asks its task
(``Task.predict``) what a prediction is: entities with character offsets for NER, labels with
probabilities for classification.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .adapters import load_for_inference, task_of
from ..errors import FtkitError
from ..runstore.layout import choose_checkpoint
from ..tasks import get_task

if TYPE_CHECKING:
    from ..runs import Run



class Predictor:
    """A trained model ready to predict; ``task`` is read from the model when not given."""

    def __init__(self, model: Any, tokenizer: Any, task: str | None = None, max_length: int | None = None,
                 max_new_tokens: int | None = None):
        import torch

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval()
        self._describe(model.config, tokenizer, task or task_of(_architectures(model), type(model).__name__),
                       max_length, max_new_tokens)

    def _describe(self, config: Any, tokenizer: Any, task: str, max_length: int | None = None,
                  max_new_tokens: int | None = None) -> None:
        """What any predictor knows besides its model: the tokenizer, task, labels and length limits."""
        self.tokenizer = tokenizer
        self.task = task
        self.id2label = {int(k): v for k, v in config.id2label.items()}
        # Tokenizers without a recorded limit report a huge model_max_length; positions are the real cap.
        limits = (getattr(config, "max_position_embeddings", None), tokenizer.model_max_length, max_length)
        self.max_length = min((int(limit) for limit in limits if limit and limit < 1_000_000), default=512)
        self.max_new_tokens = max_new_tokens  # generative tasks: the longest answer (None: the task's default)
        self._generator: Any = None

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> "Predictor":
        model, tokenizer = load_for_inference(path)
        return cls(model, tokenizer)

    @classmethod
    def from_run(cls, run: "Run", checkpoint: str | int | None = None) -> "Predictor":
        """The run's final best model, or a checkpoint named by step or path."""
        predictor = cls.from_checkpoint(checkpoint_path(run, checkpoint))
        predictor.max_new_tokens = getattr(getattr(run.config, "training", None), "max_new_tokens", None)
        return predictor

    def generator(self) -> Any:
        """A `Generator` over this model and tokenizer (its chat template): what generative tasks predict with."""
        if self._generator is None:
            from .generation import Generator

            getattr(self.model, "get_base_model", lambda: self.model)().config.use_cache = True  # off in training
            self._generator = Generator(self.model, self.tokenizer, self.device)
        return self._generator

    @property
    def labels(self) -> list[str]:
        return [self.id2label[i] for i in sorted(self.id2label)]

    def predict(self, texts: str | list[str], batch_size: int = 32) -> Any:
        """The task's predictions: entities (NER) or ``{"label", "scores"}`` (classification); for one text,
        or a list per text."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        if not all(isinstance(text, str) for text in batch):
            raise FtkitError("predict() takes a text or a list of texts")
        results = get_task(self.task).predict(self, batch, batch_size)
        return results[0] if single else results

    def probabilities(self, encoded: Any) -> Any:
        """Softmax over the model's labels for a tokenised batch, on the CPU: per row, or per token."""
        import torch

        with torch.inference_mode():
            logits = self.model(**{k: v.to(self.device) for k, v in encoded.items()}).logits
            return torch.softmax(logits.float(), dim=-1).cpu()


def _architectures(model: Any) -> list[str]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return [type(base).__name__, *(getattr(base.config, "architectures", None) or [])]


def checkpoint_path(run: "Run", checkpoint: str | int | None = None) -> Path:
    """Which folder of ``run`` to load, read from the run's own store and folder.

    By default the trainer's ``best`` (or ``final``) folder, else the best-scoring checkpoint for
    the run's metric, else the last one (`ftkit.runstore.layout.choose_checkpoint`, the one rule). ``checkpoint``
    may be a step number, ``checkpoint-<step>`` or a path.
    """
    return choose_checkpoint(run.dir, run.checkpoints, run.config.best_metric, checkpoint, run.id)
