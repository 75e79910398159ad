"""What a sweep varies: a grid's values (every combination runs) and a search's spaces (optuna picks),
each key and value checked against the config schema before any run starts."""

from __future__ import annotations

import difflib
import itertools
import typing
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from ..config import Config, parse_value, schema_fields
from ..errors import ConfigError

SET_BY_SWEEP = ("name", "output.sweep")  # every run of a sweep gets its own name and the sweep's tag




def setting_config(base: Config, setting: Mapping[str, Any], name: str, number: int) -> Config:
    """``base`` at one setting, as run ``<name>-<number>`` of the sweep ``name``."""
    try:
        return base.replace({**setting, "name": f"{name}-{number}", "output.sweep": name})
    except ConfigError as exc:
        described = ", ".join(f"{key}={value}" for key, value in setting.items())
        raise ConfigError(f"the setting {described}: {exc}") from None


def parse_grid(items: Iterable[str] | Mapping[str, Any]) -> dict[str, list[Any]]:
    """``["training.learning_rate=1e-4,2e-4", ...]`` (or a mapping of key -> values) as key -> values.

    Values are read as YAML reads them; commas inside brackets stay with their value
    (``adapter.target_modules=[q,v],[q,k,v]``).
    """
    pairs = (items.items() if isinstance(items, Mapping)
             else (_key_and_text(item, "--grid", "training.learning_rate=1e-4,2e-4") for item in items))
    grid: dict[str, list[Any]] = {}
    for key, values in pairs:
        key = check_key(key, "--grid")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; list its values once: {key}=A,B")
        values = _split_values(values) if isinstance(values, str) else (
            list(values) if isinstance(values, (list, tuple)) else [values])
        if not values:
            raise ConfigError(f"--grid {key}: give one or more values, e.g. {key}=A,B")
        grid[key] = values
    return grid


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination, the last key changing fastest."""
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


@dataclass(frozen=True)
class SearchSpace:
    """Where optuna looks for one key: a number range (``log`` for a log scale) or a list of choices."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] | None = None

    def suggest(self, trial: Any) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)


def parse_search(items: Iterable[str] | Mapping[str, Any], base: Config) -> list[SearchSpace]:
    """``["training.learning_rate=1e-5:1e-3:log", "adapter.r=4:32", "adapter.kind=lora,full"]`` as
    search spaces; each bound and choice is checked against the schema (``base`` with it set)."""
    pairs = (items.items() if isinstance(items, Mapping)
             else (_key_and_text(item, "--search", "training.learning_rate=1e-5:1e-3:log") for item in items))
    spaces: dict[str, SearchSpace] = {}
    for key, text in pairs:
        key = check_key(key, "--search")
        if key in spaces:
            raise ConfigError(f"--search {key} is given twice")
        space = _space(key, str(text))
        probes = space.choices if space.choices is not None else (space.low, space.high)
        for value in probes:
            try:
                base.replace({key: int(value) if space.integer else value})
            except ConfigError as exc:
                raise ConfigError(f"--search {key}={text}: {exc}") from None
        spaces[key] = space
    if not spaces:
        raise ConfigError("an optuna search needs one or more --search KEY=LOW:HIGH[:log]")
    return list(spaces.values())


def _space(key: str, text: str) -> SearchSpace:
    if "," in text or ":" not in text:
        return SearchSpace(key, choices=tuple(_split_values(text)))
    parts = text.split(":")
    log = len(parts) == 3 and parts[2].strip().lower() == "log"
    if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
        raise ConfigError(f"--search {key}={text}: write a range as LOW:HIGH or LOW:HIGH:log, or choices as A,B,C")
    low, high = parse_value(parts[0].strip()), parse_value(parts[1].strip())
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise ConfigError(f"--search {key}={text}: a range's bounds are numbers, e.g. {key}=1e-5:1e-3:log")
    if not low < high:
        raise ConfigError(f"--search {key}={text}: the low bound must be below the high one")
    if log and low <= 0:
        raise ConfigError(f"--search {key}={text}: a log scale needs a low bound above 0")
    kinds = _number_kinds(key)
    if not kinds:
        raise ConfigError(f"--search {key}: '{key}' is not a number; search it over choices, e.g. {key}=A,B")
    integer = kinds == {int}
    if integer and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"--search {key}={text}: '{key}' is a whole number; give whole bounds")
    return SearchSpace(key, float(low), float(high), log, integer)


def _number_kinds(key: str) -> set[type]:
    hint = next(hint for name, hint, _ in schema_fields() if name == key)
    return {kind for kind in (typing.get_args(hint) or (hint,)) if kind in (int, float)}


def check_key(key: str, flag: str) -> str:
    """``key`` if it names a config field a sweep may vary; else a one-line error with a suggestion."""
    key = str(key).strip()
    keys = [name for name, _, _ in schema_fields()]
    if key in SET_BY_SWEEP:
        raise ConfigError(f"{flag} {key}: the sweep sets it for each run (name the sweep with --name)")
    if key in keys:
        return key
    inside = [name for name in keys if name.startswith(f"{key}.")]
    if inside:
        raise ConfigError(f"{flag} {key}: '{key}' is a section; name a key in it, e.g. {inside[0]}")
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    raise ConfigError(f"{flag}: unknown config key '{key}'.{f' Did you mean {close[0]!r}?' if close else ''}")


def _key_and_text(item: str, flag: str, example: str) -> tuple[str, str]:
    key, sep, text = str(item).partition("=")
    if not sep or not key.strip() or not text.strip():
        raise ConfigError(f"{flag} {item!r} must look like KEY=VALUES, e.g. {flag} {example}")
    return key.strip(), text.strip()


def _split_values(text: str) -> list[Any]:
    """Comma-separated values read as YAML; a comma inside brackets or braces belongs to its value."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += (char in "[{") - (char in "]}")
        if char == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += char
    values.append(current)
    return [parse_value(value.strip()) for value in values if value.strip()]


