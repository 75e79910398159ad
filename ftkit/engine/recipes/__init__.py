"""The training recipes: a recipe is *how* a run trains, as a task is *what* it learns.

A task names its recipe (``Task.recipe``); the engine looks the task up once, asks it for its recipe,
and hands both down (`ftkit.engine.training.Prepared`). As for tasks, the registry holds names and
``"module:Class"`` strings only, and a recipe's module (which imports the training stack) is imported
on first use.

Adding a training method is one module in this folder plus one line in ``RECIPES`` (see
CONTRIBUTING.md, "Adding a training method").
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import TYPE_CHECKING

from ...errors import ConfigError

if TYPE_CHECKING:
    from .base import Recipe

RECIPES: dict[str, str] = {
    "supervised": "ftkit.engine.recipes.supervised:SupervisedRecipe",  # NER, classification and SFT: the Trainer
    "dpo": "ftkit.engine.recipes.dpo:DpoRecipe",
    "orpo": "ftkit.engine.recipes.orpo:OrpoRecipe",
    "kto": "ftkit.engine.recipes.kto:KtoRecipe",
}


def get_recipe(name: str) -> "Recipe":
    """The `Recipe` registered under ``name``; a ConfigError names the known ones."""
    target = RECIPES.get(name)
    if target is None:
        raise ConfigError(f"unknown training recipe '{name}': the registered ones are {', '.join(RECIPES)}")
    return _load(target, name)


@lru_cache(maxsize=None)
def _load(target: str, name: str) -> "Recipe":
    module_name, _, class_name = target.partition(":")
    try:
        recipe = getattr(importlib.import_module(module_name), class_name)()
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"recipe '{name}' is registered as {target}, which cannot be imported: {exc}") from exc
    if recipe.name != name:
        raise ConfigError(f"recipe '{name}' is registered as {target}, whose name is '{recipe.name}'")
    return recipe


__all__ = ["RECIPES", "get_recipe"]
