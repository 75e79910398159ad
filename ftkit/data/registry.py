"""The data format registry: a format's name -> its reader, its file suffixes, and whether it is a file.

Everything that knows about formats asks this table: `ftkit.data.sources.guess_format` (a file's
suffix, else what a format recognises in it), the reader dispatch and a folder of split files
(`ftkit.data.sources.read_source`), the config's ``data.format`` choices (`DATA_FORMATS`) and the
suffixes that make a config value a local path (`FILE_SUFFIXES`). Adding a format is one reader
(formats.py) plus one entry in `FORMATS` (see CONTRIBUTING.md).
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from . import formats, hf_datasets
from .formats import Table
from .hf_datasets import is_saved_dataset, read_hub, read_saved_dataset

Reader = Callable[[Any, Any], "Table | dict[str, Table]"]  # (path or hub id, data options) -> a Table, or one per split


@dataclass(frozen=True)
class DataFormat:
    """One input format: ``read(path, options)`` gives a Table (or one per split for sources that carry splits).

    ``options`` is the run's ``data`` section (a DataConfig, or any object with its attributes, e.g.
    ``tag_column``); a reader reads what it needs with ``getattr``. ``head_rows`` (a preview's) asks for the
    first rows only; a reader may ignore it.
    """

    name: str  # the data.format value
    read: Reader
    suffixes: tuple[str, ...] = ()  # lower-case file suffixes guessed as this format
    is_file: bool = True  # one file per split (a folder of split files is read file by file); False: a folder or hub id
    recognises: Callable[[Path], bool] | None = None  # for a path no suffix claims: is it this format?


FORMATS: dict[str, DataFormat] = {}


def register(data_format: DataFormat) -> DataFormat:
    """Add (or replace) a format; the config's choices are taken from `FORMATS` when ftkit.config is imported."""
    FORMATS[data_format.name] = data_format
    return data_format


def format_for_suffix(suffix: str) -> str | None:
    """The file format whose suffixes include ``suffix`` (``".conll"``), or None."""
    suffix = suffix.lower()
    return next((f.name for f in FORMATS.values() if f.is_file and suffix in f.suffixes), None)


def file_suffixes() -> tuple[str, ...]:
    """Every suffix a file format claims, in registry order."""
    return tuple(suffix for f in FORMATS.values() if f.is_file for suffix in f.suffixes)


def by_size(read: Callable[[Path, int | None], Table], large: Callable[[Path], Table]) -> Reader:
    """A reader that streams a file into lists (``read(path, head_rows)``), or hands one over
    `hf_datasets.LARGE_FILE_BYTES` whole to ``large(path)`` (Arrow); a preview's first rows are always lists."""

    def read_file(path: Path, options: Any) -> Table:
        limit = getattr(options, "head_rows", None)
        if limit is None and formats.data_file(path).stat().st_size > hf_datasets.LARGE_FILE_BYTES:
            return large(path)
        return read(path, limit)

    return read_file


def delimited(delimiter: str) -> Reader:
    """CSV or TSV: its cells as text whichever way it is read (pandas would guess numbers)."""

    def rows(path: Path) -> Iterable[tuple[int, list[str]]]:
        return itertools.islice(formats.delimited_rows(path, delimiter), 1, None)  # after the header

    def large(path: Path) -> Table:
        import datasets

        _, header = next(formats.delimited_rows(path, delimiter))
        return hf_datasets.read_large_file(
            path, "csv", rows, delimiter=delimiter, column_names=header, header=0, keep_default_na=False,
            quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL,
            features=datasets.Features({name: datasets.Value("string") for name in header}))

    return by_size(lambda path, limit: formats.read_delimited(path, delimiter, limit), large)


for _format in (
    DataFormat("conll", lambda path, options: formats.read_conll(path, getattr(options, "tag_column", -1),
                                                                 getattr(options, "head_rows", None)),
               formats.CONLL_SUFFIXES, recognises=formats.looks_like_conll),
    DataFormat("jsonl", by_size(formats.read_jsonl,
                                lambda path: hf_datasets.read_large_file(path, "json", formats.jsonl_records)),
               formats.JSON_SUFFIXES),
    DataFormat("csv", delimited(","), (".csv",)),
    DataFormat("tsv", delimited("\t"), (".tsv",)),
    DataFormat("parquet", by_size(formats.read_parquet,
                                  lambda path: hf_datasets.read_large_file(path, "parquet", None)),
               (".parquet",)),
    DataFormat("hf-disk", read_saved_dataset, is_file=False, recognises=is_saved_dataset),
    DataFormat("hub", read_hub, is_file=False),
):
    register(_format)

DATA_FORMATS: tuple[str, ...] = tuple(FORMATS)  # the data.format choices, in registry order
FILE_SUFFIXES: tuple[str, ...] = file_suffixes()  # what makes a config's data value look like a local file
HUB = "hub"  # what a source that is neither a local file nor a folder is read as
