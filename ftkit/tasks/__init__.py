"""The task registry: a task's name -> the class that knows everything that differs between tasks.

As in peft's ``mapping.py`` and transformers' lazy Auto mappings, the registry holds names and
``"module:Class"`` strings only; a task's module is imported on first use. That keeps this module
free of ftkit imports (but errors), so ``ftkit.config`` can take its ``task`` choices from here. The
layers point down only: config -> tasks (this registry, the task modules and what they share:
loading.py, alignment.py, stats.py, preview.py, scoring.py, losses.py) -> data (task-neutral readers).

Adding a task is one module in this folder plus one line in ``TASK_CLASSES`` (see
CONTRIBUTING.tasks.md). Nothing outside ``ftkit/tasks/`` branches on a task's name: it calls
``get_task(name)`` and asks the `Task`.
"""

from __future__ import annotations

import difflib
import importlib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, NamedTuple

from ..errors import ConfigError

if TYPE_CHECKING:
    from .base import Task


class TaskEntry(NamedTuple):
    """Where a task's class lives, and the few words the config's ``task`` help text shows for it."""

    target: str  # "package.module:Class", imported on first use
    summary: str  # e.g. "token classification"


TASK_CLASSES: dict[str, TaskEntry] = {
    "ner": TaskEntry("ftkit.tasks.ner:NerTask", "token classification"),
    "classification": TaskEntry("ftkit.tasks.classification:ClassificationTask", "one label per text"),
    "sft": TaskEntry("ftkit.tasks.sft:SftTask", "generative fine-tuning of a causal LM on chats or prompts"),
    "dpo": TaskEntry("ftkit.tasks.preference:DpoTask", "preference tuning of a causal LM on chosen/rejected pairs"),
    "orpo": TaskEntry("ftkit.tasks.preference:OrpoTask", "preference tuning without a reference model (SFT + odds ratio)"),
    "kto": TaskEntry("ftkit.tasks.preference:KtoTask", "preference tuning on single answers labelled good or bad"),
}
TASK_NAMES: tuple[str, ...] = tuple(TASK_CLASSES)  # the config schema's `task` choices, in this order
DEFAULT_TASK = "ner"


def get_task(task: "str | Task") -> "Task":
    """The `Task` registered under ``task`` (a Task is returned as is); a ConfigError names the known ones."""
    if not isinstance(task, str):
        return task
    entry = TASK_CLASSES.get(task)
    if entry is None:
        names = list(TASK_CLASSES)
        close = difflib.get_close_matches(task, names, n=1, cutoff=0.6)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown task '{task}': use {_either(names)}.{hint}")
    return _load(entry.target, task)


def all_tasks() -> list["Task"]:
    """Every registered task, in registry order (imports each task module; they are light)."""
    return [get_task(name) for name in TASK_CLASSES]


def task_help() -> str:
    """The registered tasks in words, for the config's help text: "ner (token classification) or ..."."""
    return _either([f"{name} ({entry.summary})" for name, entry in TASK_CLASSES.items()])


def task_for_architectures(architectures: Iterable[str]) -> "Task | None":
    """The task whose model class a saved config's ``architectures`` names (e.g. BertForTokenClassification)."""
    for name in architectures:
        for task in all_tasks():
            if name.endswith(task.architecture_suffix):
                return task
    return None


def task_for_peft_type(peft_task_type: str | None) -> "Task | None":
    """The task a LoRA checkpoint was trained for, from its ``adapter_config.json`` ``task_type``."""
    return next((task for task in all_tasks() if task.peft_task_type == peft_task_type), None)


def task_for_file(path: str) -> str:
    """The task a data file is read as when none is named (``%ftkit data``): by its suffix, else the default."""
    suffix = Path(path).suffix.lower()
    return next((task.name for task in all_tasks() if suffix in task.file_suffixes), DEFAULT_TASK)


@lru_cache(maxsize=None)
def _load(target: str, name: str) -> "Task":
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"task '{name}' is registered as {target}, which cannot be imported: {exc}") from exc
    task = cls()
    if task.name != name:
        raise ConfigError(f"task '{name}' is registered as {target}, whose name is '{task.name}'")
    return task


def _either(words: list[str]) -> str:
    return " or ".join(words) if len(words) < 3 else f"{', '.join(words[:-1])} or {words[-1]}"


__all__ = ["DEFAULT_TASK", "TASK_CLASSES", "TASK_NAMES", "TaskEntry", "all_tasks", "get_task", "task_for_architectures",
           "task_for_file", "task_for_peft_type", "task_help"]
