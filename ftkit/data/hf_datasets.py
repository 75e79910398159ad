"""Hugging Face ``datasets`` sources as `Table`s: a folder saved with ``save_to_disk()``, a hub dataset,
an in-memory Dataset or DatasetDict. ``datasets`` is imported when one is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError
from ..hub import is_offline
from .formats import Table
from .splits import canonical_splits


def dataset_table(dataset: Any, source: str, path: str | None = None) -> Table:
    """A ``datasets.Dataset`` as a Table; its features (ClassLabel names) come along."""
    return Table(dataset.to_dict(), source, path, features=dataset.features)


def dataset_dict_tables(dataset_dict: Any, source: str, options: Any, path: str | None = None) -> dict[str, Table]:
    """A ``datasets.DatasetDict``'s splits as Tables under their canonical names (``options.split_names``)."""
    tables = {name: dataset_table(ds, f"the '{name}' split", path) for name, ds in dataset_dict.items()}
    return canonical_splits(tables, source, getattr(options, "split_names", None))


def read_saved_dataset(path: str | Path, options: Any) -> Table | dict[str, Table]:
    """A folder written by ``Dataset.save_to_disk()`` (one Table) or ``DatasetDict.save_to_disk()`` (one per split)."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise DataError(f"not a dataset saved with save_to_disk(): {exc}", str(path)) from None
    if isinstance(loaded, datasets.DatasetDict):
        return dataset_dict_tables(loaded, str(path), options, str(path))
    return dataset_table(loaded, "the dataset", str(path))


def is_saved_dataset(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``save_to_disk()``."""
    return path.is_dir() and any((path / name).exists() for name in ("dataset_dict.json", "dataset_info.json", "state.json"))


def read_hub(name: str | Path, options: Any) -> dict[str, Table]:
    """A hub dataset by id, with ``options.subset`` (its configuration) and ``options.revision``."""
    import datasets

    name = str(name)
    subset, revision = getattr(options, "subset", None), getattr(options, "revision", None)
    asked = f"'{name}'" + "".join(f", {what} '{value}'" for what, value in
                                  (("subset", subset), ("revision", revision)) if value)
    try:
        loaded = datasets.load_dataset(name, subset, revision=revision)
    except Exception as exc:  # datasets raises many unrelated types for "not reachable" and "not found"
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        if is_offline() or _is_connection_error(exc):
            raise DataError(
                f"could not reach the Hugging Face hub to load the dataset {asked} ({reason}). Offline? Point at "
                "local files instead, e.g. data.train: path/to/train.conll, data.validation: path/to/valid.conll, "
                "format: conll (or jsonl, csv, tsv, parquet, or a folder saved with save_to_disk()); or, once "
                "online, save it with datasets.load_dataset(...).save_to_disk(FOLDER) and set data.train: FOLDER. "
                "If you meant a local file, check the path"
            ) from None
        hint = " (does it need data.subset? the error above lists its configurations)" if "onfig" in reason else ""
        raise DataError(f"could not load the dataset {asked} from the Hugging Face hub ({reason}){hint}; "
                        "if you meant a local file, check the path") from None
    if isinstance(loaded, datasets.Dataset):
        return {"train": dataset_table(loaded, name)}
    return canonical_splits({split: dataset_table(ds, f"{name} [{split}]") for split, ds in loaded.items()}, name,
                            getattr(options, "split_names", None))


def _is_connection_error(exc: BaseException) -> bool:
    return any(word in cls.__name__ for cls in type(exc).__mro__ for word in ("Connect", "Timeout", "Offline"))
