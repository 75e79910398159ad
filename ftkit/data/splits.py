"""Split names and what is done to whole splits: canonical names, a held-out validation split, subsets.

Task-neutral: the splits are `Table`s or ``datasets.Dataset``s, whatever their columns. ``datasets``
is imported only where a DatasetDict is built, so ``ftkit.config`` can take `SPLITS` from here.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Mapping, TypeVar

from ..errors import ConfigError, DataError

if TYPE_CHECKING:
    import datasets

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                 "val": "validation", "dev": "validation", "eval": "validation", "test": "test", "testing": "test"}

Split = TypeVar("Split")


def split_order(split: str) -> int:
    """Sort key: train, validation, test, then any other split."""
    return SPLITS.index(split) if split in SPLITS else len(SPLITS)


def canonical_splits(tables: dict[str, Split], source: str, split_names: Mapping[str, str] | None = None) -> dict[str, Split]:
    """Keep the splits ftkit knows, under their canonical names: those ``data.split_names`` maps
    (``{validation: validation_matched}``), then the usual names (dev/valid -> validation)."""
    named = {}
    for canonical, name in (split_names or {}).items():
        if canonical not in SPLITS:
            raise ConfigError(f"data.split_names maps '{canonical}', which is not one of {', '.join(SPLITS)}")
        if name not in tables:
            raise DataError(f"{source} has no split '{name}' (data.split_names.{canonical}); its splits: "
                            f"{', '.join(tables)}")
        named[canonical] = tables[name]
    taken = set((split_names or {}).values())
    for name, table in tables.items():
        if name in taken:
            continue
        canonical = SPLIT_ALIASES.get(name.lower())
        if canonical and canonical not in named:
            named[canonical] = table
    if not named:
        raise DataError(f"{source} has splits {', '.join(tables)}, none of them train, validation or test")
    return named


def one_split(read: Split | dict[str, Split], split: str, source: Any) -> Split:
    """The ``split`` of a source read for that one split: itself, its split of that name, or its only split."""
    if not isinstance(read, dict):
        return read
    if split in read:
        return read[split]
    if len(read) == 1:
        return next(iter(read.values()))
    raise DataError(f"{source} has several splits ({', '.join(read)}) and none is '{split}'")


def hold_out(train: "datasets.Dataset", fraction: float, seed: int) -> tuple["datasets.Dataset", "datasets.Dataset"]:
    """Split off a seeded ``fraction`` of train as validation; both keep the original row order."""
    if not 0 < fraction < 1:
        raise ConfigError(f"validation_fraction must be between 0 and 1; got {fraction}")
    if len(train) < 2:
        raise DataError(f"train has {len(train)} example; cannot hold out a validation split: give data.validation")
    size = min(len(train) - 1, max(1, round(len(train) * fraction)))
    held = set(random.Random(seed).sample(range(len(train)), size))
    keep = [i for i in range(len(train)) if i not in held]
    return train.select(keep), train.select(sorted(held))


def subset(dataset: "datasets.Dataset", n: int | None, seed: int = 42) -> "datasets.Dataset":
    """A seeded random ``n`` rows (in their original order); the whole dataset when n is None or larger."""
    if n is None or n >= len(dataset):
        return dataset
    if n <= 0:
        raise ConfigError(f"a subset needs a positive number of examples; got {n}")
    return dataset.select(sorted(random.Random(seed).sample(range(len(dataset)), n)))


def with_validation(splits: dict[str, "datasets.Dataset"], fraction: float | None, seed: int) -> "datasets.DatasetDict":
    """The splits in canonical order, holding out validation from train when there is none."""
    import datasets

    if fraction and "validation" not in splits and "train" in splits:
        splits["train"], splits["validation"] = hold_out(splits["train"], fraction, seed)
    return datasets.DatasetDict({name: splits[name] for name in sorted(splits, key=split_order)})
