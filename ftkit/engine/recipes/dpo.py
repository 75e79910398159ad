"""Direct preference optimisation (``task: dpo``) on TRL's DPOTrainer.

The policy learns to prefer each pair's chosen answer over the rejected one, relative to a frozen
reference (the starting model); ``training.beta`` sets how far it may move from it and
``training.loss_type`` picks the variant (sigmoid: DPO; ipo, hinge, robust, ...: see TRL).
"""

from __future__ import annotations

from typing import Any

from ..trainer import ftkit_trainer
from .preference import PreferenceRecipe


class DpoRecipe(PreferenceRecipe):
    name = "dpo"

    def trainer_classes(self) -> tuple[type, type]:
        from trl import DPOConfig, DPOTrainer

        return ftkit_trainer(DPOTrainer), DPOConfig

    def method_arguments(self, config: Any) -> dict[str, Any]:
        arguments = super().method_arguments(config)
        if config.training.loss_type:
            arguments["loss_type"] = [config.training.loss_type]
        return arguments
