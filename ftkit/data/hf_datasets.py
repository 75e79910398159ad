"""Hugging Face ``datasets`` sources as `Table`s: a folder saved with ``save_to_disk()``, a hub dataset,
an in-memory Dataset or DatasetDict, and a data file too big for Python lists (`read_large_file`: Arrow on
disk, memory-mapped). ``datasets`` is imported when one is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import DataError
from ..hub import is_offline
from .formats import RowLines, Table, data_file
from .splits import canonical_splits


def dataset_table(dataset: Any, source: str, path: str | None = None) -> Table:
    """A ``datasets.Dataset`` as a Table; its features (ClassLabel names) come along."""
    return Table(dataset.to_dict(), source, path, features=dataset.features)


# Files above this size are read through `datasets` (`read_large_file`) instead of into Python lists, which
# take about 7 times the file's size (a str and a dict per row; a 51 MB JSONL became 360 MB): 64 MiB of
# file is then under 0.5 GB of lists, which leaves a worker (0.5 GB of torch and model) under 1 GB; above
# it, reading costs the same few hundred MB whatever the size. Below it, lists are quicker to build than
# an Arrow cache is to write, and every bad row keeps its line for free.
LARGE_FILE_BYTES = 64 * 1024 * 1024


def read_large_file(path: str | Path, builder: str, rows: Callable[[Path], Iterable[tuple[int, Any]]] | None,
                    **config: Any) -> Table:
    """A file too big for Python lists as an Arrow dataset (``load_dataset(builder, data_files=path)``, written
    once to datasets' cache and memory-mapped): its Table's columns are lazy, and its rows are read a batch at
    a time by whoever needs them.

    ``rows(path)`` is ftkit's own reader of a text format, a ``(line, row)`` per row: a row's line is found
    with it when an error names the row (`RowLines`), and when ``datasets`` cannot read the file it is
    read again with it, so that a malformed line is still a DataError with its line. What is lost: a
    mistake only Arrow sees (a column whose values change type between rows) names the file, not the line.
    """
    import datasets

    path = data_file(path)
    try:
        dataset = datasets.load_dataset(builder, data_files=str(path), split="train", **config)
    except Exception as exc:  # datasets wraps pyarrow's and pandas' errors in its own types
        for _ in rows(path) if rows else ():  # ftkit's reader names the line of a malformed row
            pass
        while exc.__cause__ or exc.__context__:  # pyarrow's reason, under datasets' and pandas' retelling of it
            exc = exc.__cause__ or exc.__context__
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        raise DataError(f"cannot read this file as a table ({reason}); is a column text in some rows and numbers "
                        "(or lists) in others?", str(path)) from None
    columns = {name: dataset[name] for name in dataset.column_names}
    lines = RowLines(lambda: rows(path)) if rows else None  # Parquet has rows, not lines
    table = Table(columns, path.name, str(path), lines, features=dataset.features, dataset=dataset)
    if not len(table):
        raise DataError("no examples: the file is empty (or holds only blank lines / a header)", str(path))
    return table


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
