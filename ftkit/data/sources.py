"""Any data source -> a ``datasets.DatasetDict`` with ftkit's canonical columns.

Which columns a row has, how they are recognised in a raw table and what is checked across splits
is the task's (``ftkit.tasks``): NER rows are ``tokens: list[str]`` and ``tags: list[str]`` (IOB2
after conversion), classification rows ``text: str`` and ``label: str``. Files are parsed in plain Python (formats.py), checked here while their line numbers are still
known, and only then become Arrow-backed datasets, so that every mistake is reported as a
DataError with file and line rather than as a traceback from pandas or datasets.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import random
from pathlib import Path
from typing import Any, Callable, Mapping

import datasets
import pandas as pd

from ..config import DATA_FORMATS, TAG_SCHEMES, DataConfig
from ..errors import ConfigError, DataError
from ..hub import is_offline
from ..tasks import DEFAULT_TASK, get_task
from ..tasks.base import Task
from . import formats
from .formats import Table

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                 "val": "validation", "dev": "validation", "eval": "validation", "test": "test", "testing": "test"}
FILE_FORMATS = ("conll", "jsonl", "csv", "tsv", "parquet")
_COLUMN_OPTIONS = ("subset", "revision", "split_names", "tag_column", "tag_scheme", "text_column", "label_column",
                   "tokens_column", "tags_column", "labels", "prompt_template", "completion_column", "answer_map")

Source = Any  # a path or hub id, a pandas DataFrame, a list of rows, (tokens, tags) lists, a Dataset(Dict)
TaskName = str | Task  # a registered task's name, or the Task itself
# on_progress(done, total, name): sources read so far of those a config names, and the one being read next
ReadProgress = Callable[[int, int, str], None]


# ----- public API ---------------------------------------------------------------------------


def load_splits(data: DataConfig, task: TaskName, seed: int = 42, on_progress: ReadProgress | None = None,
                cache_dir: str | os.PathLike | None = None) -> datasets.DatasetDict:
    """The train / validation (/ test) splits a run config names, canonical and checked.

    With no validation source, a seeded ``data.validation_fraction`` of train is held out.
    ``on_progress(done, total, name)`` hears before each source is read and once all are.
    With ``cache_dir``, splits read from local files are saved there, keyed by the files' bytes, the
    data options, the task and the seed (`_cache_key`), and a second launch on the same files loads
    them memory-mapped instead of parsing and checking them again.
    """
    task = get_task(task)
    if not data.train:
        raise DataError("no training data: set data.train to a file (e.g. train.conll), a saved dataset folder or a hub id")
    key = _cache_key(data, task, seed) if cache_dir is not None else None
    folder = Path(cache_dir) / key if key else None
    if folder is not None and (folder / "dataset_dict.json").is_file():
        try:
            cached = datasets.load_from_disk(str(folder))
        except (OSError, ValueError):  # damaged or half-removed: read the files again
            cached = None
        if isinstance(cached, datasets.DatasetDict):
            if on_progress is not None:
                on_progress(1, 1, "(cached)")
            return cached
    tables = _read_splits(data.train, {"validation": data.validation, "test": data.test}, task, data.format, data,
                          on_progress)
    if "train" not in tables:
        raise DataError(f"{data.train} has no train split (found {', '.join(tables)})")
    splits = _finish(tables, task, data, convert_tags=True, check_labels=True)
    result = _with_validation(splits, data.validation_fraction, seed)
    if folder is not None:
        result = _save_cached(result, folder)
    return result


_CACHE_VERSION = "1"  # bump when what a cached split holds changes


def _cache_key(data: DataConfig, task: Task, seed: int) -> str | None:
    """A name for the canonical splits of ``data``, or None when a source is not a local file or folder.

    It hashes every source file's bytes (milliseconds for CoNLL-2003), the data options, the task,
    the seed, and the size and time of the code that reads and checks them (so an edited reader never
    serves an old result).
    """
    import hashlib
    import inspect

    digest = hashlib.sha256(_CACHE_VERSION.encode())
    options = {k: v for k, v in dataclasses.asdict(data).items() if k not in ("train", "validation", "test")}
    digest.update(json.dumps([options, task.name, seed], sort_keys=True, default=str).encode())
    code = {Path(__file__).parent / f"{name}.py" for name in ("sources", "formats", "tags")}
    code.add(Path(inspect.getfile(type(task))))
    for path in sorted(code):
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for split, source in (("train", data.train), ("validation", data.validation), ("test", data.test)):
        if source is None or (isinstance(source, str) and not source.strip()):
            continue
        if not isinstance(source, (str, os.PathLike)):
            return None
        path = Path(source).expanduser()
        if not path.exists():
            return None  # a hub id: datasets keeps its own cache
        # By content and name (a suffix picks the format; a folder's file names pick the splits), not by
        # where it lies: the same DataFrame snapshotted into two runs' folders is one entry.
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(f"|{split}:{file.relative_to(path) if path.is_dir() else file.name}|".encode())
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:32]


def _save_cached(splits: datasets.DatasetDict, folder: Path) -> datasets.DatasetDict:
    """Save ``splits`` as ``folder`` (written aside, then renamed whole) and return them read back from it,
    so that this launch and the next see the same memory-mapped tables (and the same tokenised-cache keys)."""
    import shutil
    import tempfile

    folder.parent.mkdir(parents=True, exist_ok=True)
    if not (folder / "dataset_dict.json").is_file():
        scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            splits.save_to_disk(str(scratch / "splits"))
            os.replace(scratch / "splits", folder)
        except OSError:  # another launch got there first, or the disk is full: the splits in memory still serve
            if not (folder / "dataset_dict.json").is_file():
                return splits
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    try:
        return datasets.load_from_disk(str(folder))
    except (OSError, ValueError):
        return splits


def load_source(source: Source, task: TaskName, format: str | None = None, convert_tags: bool = True,
                **column_options: Any) -> datasets.Dataset | datasets.DatasetDict:
    """One source, canonical and checked: a Dataset, or a DatasetDict when the source has splits.

    ``column_options`` are DataConfig's column fields (tokens_column, tags_column, text_column,
    label_column, tag_column, tag_scheme, labels). ``convert_tags=False`` keeps NER tags in their
    original scheme (statistics use it to report scheme violations). Labels are not checked
    across splits here (statistics report them); ``load`` and ``load_splits`` refuse them.
    """
    task = get_task(task)
    options = _options(column_options)
    read = _read(source, task, format, options)
    tables = read if isinstance(read, dict) else {"train": read}
    splits = _finish(tables, task, options, convert_tags, check_labels=False)
    return datasets.DatasetDict(splits) if isinstance(read, dict) else splits["train"]


def load(source: Source, task: TaskName = DEFAULT_TASK, *, validation: Source | None = None, test: Source | None = None,
         format: str | None = None, validation_fraction: float | None = None, seed: int = 42,
         **column_options: Any) -> datasets.DatasetDict:
    """Notebook convenience: ``ftkit.data.load("train.conll")`` -> a DatasetDict.

    A single source becomes the train split (a folder of split files, a saved DatasetDict or a
    hub id bring their own splits); ``validation``/``test`` add splits; ``validation_fraction``
    holds out a seeded share of train when there is no validation split.
    """
    task = get_task(task)
    options = _options(column_options)
    tables = _read_splits(source, {"validation": validation, "test": test}, task, format, options)
    splits = _finish(tables, task, options, convert_tags=True, check_labels=True)
    return _with_validation(splits, validation_fraction, seed)


def hold_out(train: datasets.Dataset, fraction: float, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Split off a seeded ``fraction`` of train as validation; both keep the original row order."""
    if not 0 < fraction < 1:
        raise ConfigError(f"validation_fraction must be between 0 and 1; got {fraction}")
    if len(train) < 2:
        raise DataError(f"train has {len(train)} example; cannot hold out a validation split: give data.validation")
    size = min(len(train) - 1, max(1, round(len(train) * fraction)))
    held = set(random.Random(seed).sample(range(len(train)), size))
    keep = [i for i in range(len(train)) if i not in held]
    return train.select(keep), train.select(sorted(held))


def subset(dataset: datasets.Dataset, n: int | None, seed: int = 42) -> datasets.Dataset:
    """A seeded random ``n`` rows (in their original order); the whole dataset when n is None or larger."""
    if n is None or n >= len(dataset):
        return dataset
    if n <= 0:
        raise ConfigError(f"a subset needs a positive number of examples; got {n}")
    return dataset.select(sorted(random.Random(seed).sample(range(len(dataset)), n)))


def guess_format(source: str | os.PathLike) -> str:
    """conll / jsonl / csv / tsv / hf-disk for local paths, 'folder' for split files, else 'hub'."""
    path = Path(source).expanduser()
    if path.is_dir():
        if any((path / name).exists() for name in ("dataset_dict.json", "dataset_info.json", "state.json")):
            return "hf-disk"
        return "folder"
    suffix = path.suffix.lower()
    if path.exists():
        if suffix in formats.CONLL_SUFFIXES:
            return "conll"
        if suffix in formats.JSON_SUFFIXES:
            return "jsonl"
        if suffix in (".csv", ".tsv", ".parquet"):
            return suffix[1:]
        if formats.looks_like_conll(path):
            return "conll"
        raise DataError(f"cannot tell the format of this file from '{suffix or 'no suffix'}': set data.format "
                        f"({', '.join(DATA_FORMATS)})", str(path))
    text = str(source)
    if text.startswith((".", "/", "~")) or suffix in formats.CONLL_SUFFIXES + formats.JSON_SUFFIXES + (".csv", ".tsv", ".parquet") \
            or text.count("/") > 1 or "\\" in text:
        raise DataError("file does not exist: check the path (relative paths start from the current folder)", text)
    return "hub"


# ----- reading ------------------------------------------------------------------------------


def _options(column_options: Mapping[str, Any]) -> DataConfig:
    unknown = set(column_options) - set(_COLUMN_OPTIONS)
    if unknown:
        raise ConfigError(f"unknown data option(s) {', '.join(sorted(unknown))}; allowed: {', '.join(_COLUMN_OPTIONS)}")
    options = DataConfig(**column_options)
    if options.tag_scheme not in TAG_SCHEMES:
        raise ConfigError(f"tag_scheme must be one of {', '.join(TAG_SCHEMES)}; got '{options.tag_scheme}'")
    return options


def _read(source: Source, task: Task, format: str | None, options: DataConfig) -> Table | dict[str, Table]:
    """Raw rows of a source: one Table, or one per split for sources that carry splits."""
    if isinstance(source, datasets.DatasetDict):
        tables = {name: _dataset_table(ds, f"the '{name}' split") for name, ds in source.items()}
        return _split_tables(tables, "the DatasetDict", options.split_names)
    if isinstance(source, datasets.Dataset):
        return _dataset_table(source, "the Dataset")
    if isinstance(source, pd.DataFrame):
        return formats.records_to_table(source.to_dict(orient="records"), "the DataFrame")
    if isinstance(source, tuple) and len(source) == 2 and all(isinstance(part, (list, tuple)) for part in source):
        first, second = source
        if len(first) != len(second):
            raise DataError(f"the two lists have different lengths ({len(first)} and {len(second)}): "
                            "pass (tokens_list, tags_list) or (texts, labels) of equal length")
        names = task.columns
        return Table({names[0]: list(first), names[1]: list(second)}, "the lists")
    if isinstance(source, list):
        return formats.records_to_table(source, "the list")
    if isinstance(source, (str, os.PathLike)):
        return _read_path(source, format or guess_format(source), options)
    raise DataError(f"cannot read data from a {type(source).__name__}: pass a path, a hub id, a pandas DataFrame, "
                    "a list of rows, (tokens, tags) lists, or a datasets Dataset/DatasetDict")


def _read_path(source: str | os.PathLike, format: str, options: DataConfig) -> Table | dict[str, Table]:
    path = Path(source).expanduser()
    if format == "folder" or (format in FILE_FORMATS and path.is_dir()):
        return _read_folder(path, options, None if format == "folder" else format)
    if format == "conll":
        return formats.read_conll(path, options.tag_column)
    if format == "jsonl":
        return formats.read_jsonl(path)
    if format in ("csv", "tsv"):
        return formats.read_delimited(path, "," if format == "csv" else "\t")
    if format == "parquet":
        return formats.read_parquet(path)
    if format == "hf-disk":
        try:
            loaded = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise DataError(f"not a dataset saved with save_to_disk(): {exc}", str(path)) from None
        if isinstance(loaded, datasets.DatasetDict):
            return _split_tables({name: _dataset_table(ds, f"the '{name}' split", str(path))
                                  for name, ds in loaded.items()}, str(path), options.split_names)
        return _dataset_table(loaded, "the dataset", str(path))
    if format == "hub":
        return _read_hub(str(source), options)
    raise ConfigError(f"unknown data format '{format}'; expected {', '.join(DATA_FORMATS)}")


def _read_folder(folder: Path, options: DataConfig, format: str | None) -> dict[str, Table]:
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


def _read_hub(name: str, options: DataConfig) -> dict[str, Table]:
    """A hub dataset by id, with ``data.subset`` (its configuration) and ``data.revision``."""
    asked = f"'{name}'" + "".join(f", {what} '{value}'" for what, value in
                                  (("subset", options.subset), ("revision", options.revision)) if value)
    try:
        loaded = datasets.load_dataset(name, options.subset, revision=options.revision)
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
        return {"train": _dataset_table(loaded, name)}
    return _split_tables({split: _dataset_table(ds, f"{name} [{split}]") for split, ds in loaded.items()}, name,
                         options.split_names)


def _is_connection_error(exc: BaseException) -> bool:
    return any(word in cls.__name__ for cls in type(exc).__mro__ for word in ("Connect", "Timeout", "Offline"))


def _split_tables(tables: dict[str, Table], source: str, split_names: Mapping[str, str] | None = None) -> dict[str, Table]:
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


def _read_splits(source: Source, extras: dict[str, Source | None], task: Task, format: str | None,
                 options: DataConfig, on_progress: ReadProgress | None = None) -> dict[str, Table]:
    """The splits of ``source`` (or it as train), with ``extras`` replacing or adding splits."""
    extras = {split: extra for split, extra in extras.items()
              if extra is not None and not (isinstance(extra, str) and not extra.strip())}
    report = on_progress or (lambda done, total, name: None)
    total = 1 + len(extras)
    report(0, total, _source_name(source))
    read = _read(source, task, format, options)
    tables = dict(read) if isinstance(read, dict) else {"train": read}
    for done, (split, extra) in enumerate(extras.items(), start=1):
        report(done, total, _source_name(extra))
        tables[split] = _one_split(_read(extra, task, format, options), split, extra)
    report(total, total, "")
    return tables


def _source_name(source: Source) -> str:
    """What a progress line calls a source: a file's name, a hub id, or the kind of in-memory data."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        return path.name or str(source) if path.is_absolute() or path.exists() else str(source)
    return type(source).__name__


def _with_validation(splits: dict[str, datasets.Dataset], fraction: float | None, seed: int) -> datasets.DatasetDict:
    """The splits in canonical order, holding out validation from train when there is none."""
    if fraction and "validation" not in splits and "train" in splits:
        splits["train"], splits["validation"] = hold_out(splits["train"], fraction, seed)
    return datasets.DatasetDict({name: splits[name] for name in sorted(splits, key=_split_order)})


def _one_split(read: Table | dict[str, Table], split: str, source: Any) -> Table:
    if not isinstance(read, dict):
        return read
    if split in read:
        return read[split]
    if len(read) == 1:
        return next(iter(read.values()))
    raise DataError(f"{source} has several splits ({', '.join(read)}) and none is '{split}'")


def _dataset_table(dataset: datasets.Dataset, source: str, path: str | None = None) -> Table:
    return Table(dataset.to_dict(), source, path, features=dataset.features)


# ----- canonical columns --------------------------------------------------------------------


def _finish(tables: dict[str, Table], task: Task, options: DataConfig, convert_tags: bool,
            check_labels: bool) -> dict[str, datasets.Dataset]:
    """The task's canonical columns, its normalisation (NER tags to IOB2), cross-split label checks; then Arrow."""
    for split, table in tables.items():
        if not len(table):
            raise DataError(f"the {split} split ({table.source}) has no examples", table.path)
    canonical = {split: task.canonical(table, options) for split, table in tables.items()}
    if convert_tags:
        task.normalise(canonical, options)
    if check_labels:
        task.check_labels_across_splits(canonical, options.labels)
    features = task.features()
    return {split: datasets.Dataset.from_dict(canonical[split].columns, features=features)
            for split in sorted(canonical, key=_split_order)}


def _split_order(split: str) -> int:
    return SPLITS.index(split) if split in SPLITS else len(SPLITS)


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
