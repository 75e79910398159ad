"""Any data source -> raw `Table`s: files through the format registry, folders of split files, saved and hub
datasets, and in-memory data (a DataFrame, a list of rows, a pair of lists, a Dataset or DatasetDict).

Task-neutral: which columns a row needs and how they become a task's canonical columns is the task's
(``ftkit.tasks.loading`` calls `read_splits` / `read_source`, then ``Task.canonical``). Files are streamed in
plain Python (formats.py), so that every mistake is reported as a DataError with file and line rather than
as a traceback from pandas or datasets; a file too big for lists is read by ``datasets`` into a memory-mapped
Table whose bad rows find their lines again with the same readers (hf_datasets.py). The column helpers at the end (`pick_column`, `class_names`,
`word_list`) are what tasks use to find their columns in a Table.
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import ConfigError, DataError
from . import formats
from .formats import Table
from .hf_datasets import dataset_dict_tables, dataset_table
from .registry import DATA_FORMATS, FORMATS, HUB, file_suffixes, format_for_suffix
from .splits import SPLIT_ALIASES, one_split

FOLDER = "folder"  # guess_format's answer for a folder of split files (train.*, validation.*, test.*)

Source = Any  # a path or hub id, a pandas DataFrame, a list of rows, (tokens, tags) lists, a Dataset(Dict)
# on_progress(done, total, name): sources read so far of those a config names, and the one being read next
ReadProgress = Callable[[int, int, str], None]


def read_splits(source: Source, extras: Mapping[str, Source | None], format: str | None, options: Any,
                on_progress: ReadProgress | None = None, pair_columns: Sequence[str] = ("first", "second"),
                ) -> dict[str, Table]:
    """The splits of ``source`` (or it as train), with ``extras`` (``{"validation": ..., "test": ...}``)
    replacing or adding splits. ``on_progress(done, total, name)`` hears before each source is read and
    once all are."""
    extras = {split: extra for split, extra in extras.items()
              if extra is not None and not (isinstance(extra, str) and not extra.strip())}
    report = on_progress or (lambda done, total, name: None)
    total = 1 + len(extras)
    report(0, total, _source_name(source))
    read = read_source(source, format, options, pair_columns)
    tables = dict(read) if isinstance(read, dict) else {"train": read}
    for done, (split, extra) in enumerate(extras.items(), start=1):
        report(done, total, _source_name(extra))
        tables[split] = one_split(read_source(extra, format, options, pair_columns), split, extra)
    report(total, total, "")
    return tables


def read_source(source: Source, format: str | None, options: Any,
                pair_columns: Sequence[str] = ("first", "second")) -> Table | dict[str, Table]:
    """Raw rows of a source: one Table, or one per split for sources that carry splits.

    ``options`` holds the data options readers use (``tag_column``, ``split_names``, ``subset``,
    ``revision``: a DataConfig or any object with those attributes); ``pair_columns`` names the
    columns of a ``(first_list, second_list)`` pair (a task's first two canonical columns).
    """
    import datasets
    import pandas as pd

    if isinstance(source, datasets.DatasetDict):
        return dataset_dict_tables(source, "the DatasetDict", options)
    if isinstance(source, datasets.Dataset):
        return dataset_table(source, "the Dataset")
    if isinstance(source, pd.DataFrame):
        return formats.records_to_table(source.to_dict(orient="records"), "the DataFrame")
    if isinstance(source, tuple) and len(source) == 2 and all(isinstance(part, (list, tuple)) for part in source):
        first, second = source
        if len(first) != len(second):
            raise DataError(f"the two lists have different lengths ({len(first)} and {len(second)}): "
                            "pass (tokens_list, tags_list) or (texts, labels) of equal length")
        return Table({pair_columns[0]: list(first), pair_columns[1]: list(second)}, "the lists")
    if isinstance(source, list):
        return formats.records_to_table(source, "the list")
    if isinstance(source, (str, os.PathLike)):
        return _read_path(source, format or guess_format(source), options)
    raise DataError(f"cannot read data from a {type(source).__name__}: pass a path, a hub id, a pandas DataFrame, "
                    "a list of rows, (tokens, tags) lists, or a datasets Dataset/DatasetDict")


def guess_format(source: str | os.PathLike) -> str:
    """The registered format of a local path (by its suffix, else by what a format recognises in it),
    'folder' for a folder of split files, else 'hub'."""
    path = Path(source).expanduser()
    if path.is_dir():
        return next((f.name for f in FORMATS.values()
                     if not f.is_file and f.recognises is not None and f.recognises(path)), FOLDER)
    suffix = path.suffix.lower()
    if path.exists():
        by_suffix = format_for_suffix(suffix)
        if by_suffix is not None:
            return by_suffix
        for data_format in FORMATS.values():
            if data_format.is_file and data_format.recognises is not None and data_format.recognises(path):
                return data_format.name
        raise DataError(f"cannot tell the format of this file from '{suffix or 'no suffix'}': set data.format "
                        f"({', '.join(DATA_FORMATS)})", str(path))
    text = str(source)
    if text.startswith((".", "/", "~")) or suffix in file_suffixes() or text.count("/") > 1 or "\\" in text:
        raise DataError("file does not exist: check the path (relative paths start from the current folder)", text)
    return HUB


# ----- reading ------------------------------------------------------------------------------


def _read_path(source: str | os.PathLike, format: str, options: Any) -> Table | dict[str, Table]:
    path = Path(source).expanduser()
    data_format = FORMATS.get(format)
    if format == FOLDER or (data_format is not None and data_format.is_file and path.is_dir()):
        return _read_folder(path, options, None if format == FOLDER else format)
    if data_format is None:
        raise ConfigError(f"unknown data format '{format}'; expected {', '.join(DATA_FORMATS)}")
    return data_format.read(source if format == HUB else path, options)


def _read_folder(folder: Path, options: Any, format: str | None) -> dict[str, Table]:
    """A folder of split files named train.*, valid/validation/dev.*, test.* (e.g. CoNLL-2003)."""
    found = {}
    for path in sorted(folder.iterdir()):
        split = SPLIT_ALIASES.get(path.stem.lower())
        if split and path.is_file() and split not in found:
            found[split] = _read_path(path, format or guess_format(path), options)
    if not found:
        raise DataError("this folder is neither a dataset saved with save_to_disk() nor holds split files named "
                        "train.*, validation.* (or valid/dev) and test.*", str(folder))
    return found


def _source_name(source: Source) -> str:
    """What a progress line calls a source: a file's name, a hub id, or the kind of in-memory data."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        return path.name or str(source) if path.is_absolute() or path.exists() else str(source)
    return type(source).__name__


# ----- finding a task's columns in a Table ----------------------------------------------------


def pick_column(table: Table, given: str | None, candidates: tuple[str, ...], what: str, option: str) -> str:
    """The column holding ``what``: the one the user named, else the first known name present."""
    found = ", ".join(table.columns) or "none"
    where = "" if table.path else f"{table.source}: "
    if given:
        if given not in table.columns:
            raise DataError(f"{where}no column '{given}' ({option}); the columns are: {found}", table.path)
        return given
    for name in candidates:
        if name in table.columns:
            return name
    raise DataError(f"{where}missing the {what} column: found columns {found}; expected one of "
                    f"{', '.join(candidates)} (or name it with {option})", table.path)


def class_names(features: Any, column: str) -> list[str] | None:
    """Label names of a ClassLabel column, or of a list of ClassLabel (NER tag ids)."""
    feature = features.get(column) if features is not None else None
    feature = getattr(feature, "feature", feature)  # List(ClassLabel) / Sequence(ClassLabel)
    import datasets

    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def word_list(value: Any) -> list | None:
    """A list as stored in JSON/Arrow, or a CSV cell: JSON list text, a Python-style list as AutoTrain
    and pandas write it (``"['EU', 'rejects']"``), or space-separated words."""
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            return text.split()
        try:
            value = json.loads(text)
        except ValueError:
            try:
                value = ast.literal_eval(text)  # literals only: never runs code
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                return text.split()
    return list(value) if isinstance(value, (list, tuple)) else None
