"""Odds-ratio preference optimisation (``task: orpo``) on TRL's ORPOTrainer (in ``trl.experimental``).

ORPO needs no reference model: its loss is the chosen answer's SFT loss plus a term that raises the
odds of the chosen answer over the rejected one (weighted by ``training.beta``), so it can start
from a base model without an SFT stage and costs one model's forward passes.
"""

from __future__ import annotations

import os
from typing import Any

from ..trainer import ftkit_trainer
from .preference import PreferenceRecipe


class OrpoRecipe(PreferenceRecipe):
    name = "orpo"

    def trainer_classes(self) -> tuple[type, type]:
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # the notice is for TRL's users, not ftkit's
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ftkit_trainer(ORPOTrainer), ORPOConfig

    def evaluation_features(self, trainer: Any, prepared: Any, split: str) -> Any:
        """The split through ORPO's own preprocessing (its trainer has no per-dataset method for it)."""
        from trl.data_utils import maybe_apply_chat_template, maybe_extract_prompt

        dataset = prepared.features[split].map(maybe_extract_prompt)
        dataset = dataset.map(maybe_apply_chat_template, fn_kwargs={"processing_class": trainer.processing_class})
        return dataset.map(trainer.tokenize_row)

    def train_lengths(self, trainer: Any) -> list[int]:
        """Chosen and rejected sequences, each with its prompt."""
        dataset = trainer.train_dataset
        return [len(chosen) + len(rejected) for chosen, rejected in
                zip(dataset["chosen_input_ids"][:], dataset["rejected_input_ids"][:])]
