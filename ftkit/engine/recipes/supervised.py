"""The supervised recipe: the task's own tokenisation, model, collator and loss on `FtkitTrainer`.

NER, classification and SFT train this way: each row becomes model inputs and labels (the task's
``encoder``), batches are padded per batch (or packed, where the task and model allow), and the
model's loss (or the task's ``loss_function``) is minimised.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from transformers import TrainerCallback

from ...errors import FtkitError
from ...runstore.layout import CACHE_DIR
from ...tasks.alignment import tokenize_dataset
from .. import adapters, evaluate, models
from ..arguments import padding_free, training_arguments
from ..lm_loss import computes_plain_lm_loss
from ..packing import packed_collator
from ..trainer import FtkitTrainer
from ..validation_answers import ValidationAnswers
from .base import Recipe, Report, trainer_callbacks

if TYPE_CHECKING:
    from ...config import Config
    from ...tasks.base import Task
    from ..training import Prepared


class SupervisedRecipe(Recipe):
    name = "supervised"
    records_dynamics = True

    def features(self, raw: Any, tokenizer: Any, config: "Config", task: "Task", labels: Sequence[str],
                 report: Report) -> Any:
        max_length = min(config.training.max_seq_length, models.model_max_length(tokenizer))
        features = tokenize_dataset(raw, tokenizer, {label: i for i, label in enumerate(labels)}, task, max_length,
                                    cache_dir=config.runs_dir / CACHE_DIR / "tokenized",
                                    options=task.encoder_options(config),
                                    on_progress=lambda split, done, total, cached: report("tokenising", done, total,
                                                                                          split, cached))
        if not len(features["train"]):
            raise FtkitError(f"no training example is left after tokenising: every one was cut at max_seq_length "
                             f"{max_length} before anything it trains on; raise training.max_seq_length")
        for split in ("validation", "test"):
            if split in features:
                # Longest first, evaluated in this order (see FtkitTrainer): little padding, and the
                # predictions line up with these rows, which carry their sentence ids.
                features[split] = features[split].sort("length", reverse=True)
        return features

    def model(self, source: str, config: "Config", task: "Task", labels: Sequence[str]) -> Any:
        model = models.build_model(source, task.name, list(labels))
        task.configure_model(model)
        return adapters.apply_adapter(model, config.adapter, task.name)

    def build_trainer(self, prepared: "Prepared", output_dir: Path,
                      callbacks: Sequence[TrainerCallback] = ()) -> FtkitTrainer:
        config, task = prepared.config, prepared.task
        args = training_arguments(config, output_dir, validation_examples=prepared.validation_examples)
        callbacks = trainer_callbacks(config, callbacks)
        cuda = not args.use_cpu
        compute_metrics = evaluate.make_compute_metrics(task, dict(enumerate(prepared.labels)))
        trainer = FtkitTrainer(
            loss_metrics=task.loss_metrics,
            sparse_lm_loss=task.sparse_lm_loss and task.loss_function() is None
            and computes_plain_lm_loss(prepared.model),
            model=prepared.model,
            args=args,
            train_dataset=prepared.features["train"],
            eval_dataset=prepared.features.get("validation"),
            processing_class=prepared.tokenizer,
            data_collator=task.collator(prepared.tokenizer, pad_to_multiple_of=8 if cuda else None),
            compute_loss_func=task.loss_function(),
            compute_metrics=compute_metrics,
            # Metrics read argmax ids (classification: probabilities); without metrics there is nothing to reduce.
            preprocess_logits_for_metrics=evaluate.make_preprocess_logits(task) if compute_metrics else None,
            callbacks=callbacks,
        )
        trainer.checkpoint_record = prepared.checkpoint_record()
        trainer.validation_answers = ValidationAnswers.of(prepared)
        if padding_free(config, prepared.model, cuda):
            # Training batches only: evaluation keeps one padded row per sentence, which predictions map back to.
            trainer.train_data_collator = packed_collator()
        return trainer


__all__ = ["SupervisedRecipe"]
