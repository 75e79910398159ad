"""`ftkit init TASK`: a commented starter config, written from the schema itself.

Every key of ``ftkit.config`` appears with its help text as a comment: the few a first run needs
are set, the rest are commented out at their defaults. Keys that only other tasks read (their
``form_fields``, and not this task's) are left out. Nothing here is written per task by hand, so a new config key or a
new task shows up in the starter as soon as it is in the schema or the registry.
"""

from __future__ import annotations

import dataclasses
import textwrap
import typing
from typing import Any

from .config import Config
from .tasks import TASK_CLASSES, all_tasks, get_task

# Keys set (not commented out) in a starter: what a first run needs.
STARTER_KEYS = ("task", "model", "name", "data.train", "data.validation", "data.test", "training.epochs",
                "training.batch_size")
WIDTH = 100


def starter_config(task: str) -> str:
    """A commented YAML config for ``task`` that `load_config` reads as it is."""
    chosen = get_task(task)
    other_tasks_keys = {key for other in all_tasks() if other.name != chosen.name
                        for key in other.form_fields} - set(chosen.form_fields)
    suffix = chosen.file_suffixes[0] if chosen.file_suffixes else ".jsonl"
    values: dict[str, Any] = {
        "task": chosen.name, "model": "default", "name": f"my-{chosen.name}",
        "data.train": f"./data/train{suffix}", "data.validation": f"./data/validation{suffix}",
        "data.test": f"./data/test{suffix}", "training.epochs": 3,
    }
    lines = [
        f"# ftkit starter config: {chosen.name} ({TASK_CLASSES[chosen.name].summary}).",
        "# Train with `ftkit train THIS_FILE` (or `ftkit.train(\"THIS_FILE\")` in a notebook).",
        "# Point data.train/validation/test at your own files; relative paths resolve against this file's folder.",
        "# Commented-out keys show their defaults; uncomment one to change it.",
    ]
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        if dataclasses.is_dataclass(hints[f.name]):
            section = hints[f.name]
            leaves = [(f"{f.name}.{leaf.name}", leaf) for leaf in dataclasses.fields(section)
                      if f"{f.name}.{leaf.name}" not in other_tasks_keys]
            # The header stays even when every key under it is commented out (YAML reads it as empty).
            lines += ["", *_comment(f.metadata.get("help", ""), ""), f"{f.name}:"]
            for key, leaf in leaves:
                lines += _entry(key, leaf, values, indent="  ")
        elif f.name not in other_tasks_keys:
            lines += _entry(f.name, f, values, indent="")
    return "\n".join(lines) + "\n"


def _entry(key: str, f: dataclasses.Field, values: dict[str, Any], indent: str) -> list[str]:
    value = values.get(key, _default(f))
    line = f"{key.rsplit('.', 1)[-1]}: {_yaml(value)}"
    choices = f.metadata.get("choices")
    help_text = f.metadata.get("help", "") + (f" Choices: {', '.join(choices)}." if choices else "")
    return [*_comment(help_text, indent), f"{indent}{'' if key in STARTER_KEYS else '# '}{line}"]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _comment(text: str, indent: str) -> list[str]:
    prefix = f"{indent}# "
    return textwrap.wrap(text, WIDTH, initial_indent=prefix, subsequent_indent=prefix, break_on_hyphens=False)


def _yaml(value: Any) -> str:
    """One value in YAML's flow style (``null``, ``5.0e-4``, ``[a, b]``, ``{a: 1}``)."""
    import yaml

    return yaml.safe_dump([value], default_flow_style=True, width=10**6).strip()[1:-1]
