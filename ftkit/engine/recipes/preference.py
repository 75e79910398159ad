"""What the preference recipes share: TRL's trainer over pairs (or labelled answers), ftkit's run around it.

TRL does the method: tokenising prompts and answers through the chat template, the reference
log-probabilities, the loss and its reward metrics. ftkit does the rest, as for every recipe: the
data checks (the task's), the model and adapter, the arguments from the one config schema, events
and the run folder, atomic checkpoints that record their task and method.

With LoRA, TRL is handed the base model and a ``peft_config``: it wraps the model itself, and the
reference is that model with the adapter switched off, never a second copy in memory. With full
weights the method's reference (where it has one) is a frozen copy, which TRL loads.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from transformers import TrainerCallback

from ...errors import ConfigError
from .. import adapters, models
from ..arguments import training_arguments
from ..validation_answers import ValidationAnswers
from .base import Recipe, Report, trainer_callbacks

if TYPE_CHECKING:
    from ...config import Config
    from ...tasks.base import Task
    from ..training import Prepared


class PreferenceRecipe(Recipe):
    """A TRL preference trainer as a recipe; subclasses name the trainer and the method's arguments."""

    answer_columns: ClassVar[tuple[str, ...]] = ("chosen_ids", "rejected_ids")  # TRL's tokenised answers

    @abstractmethod
    def trainer_classes(self) -> tuple[type, type]:
        """(the TRL trainer with ftkit's checkpoints mixed in, its arguments class)."""

    def method_arguments(self, config: "Config") -> dict[str, Any]:
        """The method's own fields of its TRL config, from ftkit's schema (``training.beta``, ...)."""
        arguments: dict[str, Any] = {"max_length": config.training.max_seq_length,
                                     "train_sampling_strategy": "random",  # TRL's rows carry no length column
                                     # TRL turns it on; the supervised recipe leaves it off, and so do we.
                                     "activation_checkpointing": False}
        if config.training.beta is not None:
            arguments["beta"] = config.training.beta
        return arguments

    def features(self, raw: Any, tokenizer: Any, config: "Config", task: "Task", labels: Sequence[str],
                 report: Report) -> Any:
        """The canonical rows in TRL's conversational form; TRL tokenises them when the trainer is built."""
        import datasets

        report("tokenising", detail="checking prompts render with the chat template")
        for split, dataset in raw.items():
            task.check_renders(dataset, tokenizer, split)
        return datasets.DatasetDict({split: task.trainer_rows(dataset) for split, dataset in raw.items()})

    def model(self, source: str, config: "Config", task: "Task", labels: Sequence[str]) -> Any:
        model = models.build_model(source, task.name, [])
        task.configure_model(model)
        if config.adapter.kind == "lora":
            return model  # TRL wraps it (see build_trainer), so that the reference is the adapter switched off
        if config.adapter.kind != "full":
            raise ConfigError(f"task {task.name} trains lora or full weights, not adapter '{config.adapter.kind}'")
        return adapters.apply_adapter(model, config.adapter, task.name)

    def build_trainer(self, prepared: "Prepared", output_dir: Path,
                      callbacks: Sequence[TrainerCallback] = ()) -> Any:
        config = prepared.config
        trainer_class, args_class = self.trainer_classes()
        args = training_arguments(config, output_dir, args_class, prepared.validation_examples,
                                  **self.method_arguments(config))
        callbacks = trainer_callbacks(config, callbacks)
        lora = (adapters.lora_config(prepared.model, config.adapter, prepared.task)
                if config.adapter.kind == "lora" and not adapters.is_peft_model(prepared.model) else None)
        with models.quiet_loading():
            trainer = trainer_class(model=prepared.model, args=args, train_dataset=prepared.features["train"],
                                    eval_dataset=prepared.features.get("validation"),
                                    processing_class=prepared.tokenizer, callbacks=callbacks, peft_config=lora)
        model = prepared.model = trainer.model  # the peft-wrapped model: what is saved and evaluated
        if lora is None and adapters.is_peft_model(model) and "ref" in model.peft_config:
            # A trained adapter given back (ftkit eval): TRL copies it as the reference; the reference is the base.
            model.delete_adapter("ref")
        trainer.checkpoint_record = prepared.checkpoint_record()
        trainer.validation_answers = ValidationAnswers.of(prepared)
        return trainer

    def evaluation_features(self, trainer: Any, prepared: "Prepared", split: str) -> Any:
        """A split tokenised by the trainer as its evaluation set was (TRL tokenises only what it was given)."""
        return trainer._prepare_dataset(prepared.features[split], trainer.processing_class, trainer.args, split)

    def train_lengths(self, trainer: Any) -> list[int]:
        """Prompt and answer tokens per example, the prompt once per answer (each is a sequence of its own)."""
        dataset = trainer.train_dataset
        prompts = dataset["prompt_ids"][:]
        answers = [dataset[column][:] for column in self.answer_columns]
        return [sum(len(prompt) + len(answer[i]) for answer in answers) for i, prompt in enumerate(prompts)]
