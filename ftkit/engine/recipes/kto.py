"""Kahneman-Tversky optimisation (``task: kto``) on TRL's KTOTrainer: answers labelled good or bad, unpaired.

KTO needs no pairs: each row is a prompt, one answer and whether it is desirable, which is how
thumbs-up/down feedback comes. Like DPO it keeps a reference (the adapter switched off with LoRA).
"""

from __future__ import annotations

from typing import Any

from ..trainer import ftkit_trainer
from .preference import PreferenceRecipe


class KtoRecipe(PreferenceRecipe):
    name = "kto"
    answer_columns = ("completion_ids",)

    def trainer_classes(self) -> tuple[type, type]:
        from trl import KTOConfig, KTOTrainer

        return ftkit_trainer(KTOTrainer), KTOConfig

    def method_arguments(self, config: Any) -> dict[str, Any]:
        arguments = super().method_arguments(config)
        arguments["train_sampling_strategy"] = "sequential"  # its KL term pairs each example with its batch neighbours
        if config.training.loss_type:
            arguments["loss_type"] = config.training.loss_type
        return arguments
