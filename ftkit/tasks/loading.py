"""Any data source -> a ``datasets.DatasetDict`` with a task's canonical columns, checked.

``ftkit.data`` reads sources into raw `Table`s (task-neutral); here the task turns them into its
canonical columns (``Task.canonical``: NER rows are ``tokens: list[str]`` and ``tags: list[str]``,
IOB2 after ``Task.normalise``; classification rows ``text: str`` and ``label: str``), checks labels
across splits, and only then are they Arrow-backed datasets, so that every mistake is reported as a
DataError with file and line rather than as a traceback from pandas or datasets.

Users call ``ftkit.load_data`` (the same as `load`); the worker calls `load_splits` with the run's
``data`` section.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import datasets

from ..data import formats
from ..data.formats import Table
from ..data.sources import ReadProgress, Source, read_source, read_splits
from ..data.splits import split_order, subset, with_validation
from ..data.tags import TAG_SCHEMES
from ..errors import ConfigError, DataError
from ..runstore.layout import CACHE_DIR
from . import DEFAULT_TASK, get_task
from .base import Task

if TYPE_CHECKING:
    from ..config import DataConfig

TaskName = str | Task  # a registered task's name, or the Task itself

# The data options `load`, `load_source` and `stats` take as keywords, with the defaults of the
# config's DataConfig fields of the same names (tests/test_data_layering.py checks they agree).
COLUMN_OPTIONS: dict[str, Any] = {
    "subset": None, "revision": None, "split_names": None, "tag_column": -1, "tag_scheme": "auto",
    "text_column": None, "label_column": None, "tokens_column": None, "tags_column": None, "labels": None,
    "prompt_template": None, "completion_column": None, "answer_map": None, "chosen_column": None,
    "rejected_column": None,
}


# ----- public API ---------------------------------------------------------------------------


def load_splits(data: "DataConfig", task: TaskName, seed: int = 42, on_progress: ReadProgress | None = None,
                cache_dir: str | os.PathLike | None = None) -> datasets.DatasetDict:
    """The train / validation (/ test) splits a run config's ``data`` section names, canonical and checked.

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
    tables = read_splits(data.train, {"validation": data.validation, "test": data.test}, data.format, data,
                         on_progress, task.columns)
    if "train" not in tables:
        raise DataError(f"{data.train} has no train split (found {', '.join(tables)})")
    splits = _finish(tables, task, data, convert_tags=True, check_labels=True)
    result = with_validation(splits, data.validation_fraction, seed)
    if folder is not None:
        result = _save_cached(result, folder)
    return result


def no_report(phase: str, done: int | None = None, total: int | None = None, detail: str | None = None,
              cached: bool = False) -> None:
    return None


def run_splits(config: Any, task: TaskName, report: Callable[..., None] = no_report) -> datasets.DatasetDict:
    """A run's splits (``config``: its Config) as its task's canonical rows, as training saw them: cut to
    ``max_train_samples``/``max_eval_samples``, and train without ``data.exclude``, relabelled by ``data.relabel``.

    ``report(phase, done, total, detail, cached)`` hears how far reading is (the worker's phase events).
    """
    task = get_task(task)
    seed = config.training.seed
    raw = load_splits(config.data, task, seed=seed,
                      on_progress=lambda done, total, name: report("reading data", done, total, name or None),
                      cache_dir=config.runs_dir / CACHE_DIR / "data")
    if config.data.exclude or config.data.relabel:
        raw["train"] = corrected(raw["train"], task, config.data.exclude or [], config.data.relabel or {})
    if config.training.max_train_samples:
        raw["train"] = subset(raw["train"], config.training.max_train_samples, seed)
    if config.training.max_eval_samples:
        for split in ("validation", "test"):
            if split in raw:
                raw[split] = subset(raw[split], config.training.max_eval_samples, seed)
    return raw


def corrected(train: datasets.Dataset, task: Task, exclude: Sequence[int], relabel: Mapping[Any, Any]) -> datasets.Dataset:
    """``train`` with the rows ``exclude`` names left out and those ``relabel`` names given its label
    (a tag list for a task labelling each word, of the sentence's length)."""
    relabel = {int(row): label for row, label in relabel.items()}
    outside = sorted(row for row in [*exclude, *relabel] if not 0 <= row < len(train))
    if outside:
        raise DataError(f"data.exclude / data.relabel name row {outside[0]}, but the train split has rows 0 to "
                        f"{len(train) - 1}")
    if relabel:
        if task.label_column is None:
            raise DataError(f"data.relabel: a {task.name} run has no labels to change; use data.exclude")
        column = task.label_column
        values = list(train[column])
        for row, label in relabel.items():
            if isinstance(values[row], list) and (not isinstance(label, list) or len(label) != len(values[row])):
                raise DataError(f"data.relabel row {row}: give a list of {len(values[row])} tags (one per word); "
                                f"got {label!r}")
            values[row] = label
        train = train.remove_columns(column).add_column(column, values, feature=train.features[column])
    if exclude:
        dropped = set(exclude)
        train = train.select([row for row in range(len(train)) if row not in dropped])
    return train


def load_source(source: Source, task: TaskName, format: str | None = None, convert_tags: bool = True,
                head: int | None = None, **column_options: Any) -> datasets.Dataset | datasets.DatasetDict:
    """One source, canonical and checked: a Dataset, or a DatasetDict when the source has splits.

    ``column_options`` are DataConfig's column fields (tokens_column, tags_column, text_column,
    label_column, tag_column, tag_scheme, labels). ``convert_tags=False`` keeps NER tags in their
    original scheme (statistics use it to report scheme violations). Labels are not checked
    across splits here (statistics report them); ``load`` and ``load_splits`` refuse them.
    ``head`` reads only the first rows of each file (a preview); sources in memory or on the hub come whole.
    """
    task = get_task(task)
    options = _options(column_options)
    options.head_rows = head
    read = read_source(source, format, options, task.columns)
    tables = read if isinstance(read, dict) else {"train": read}
    splits = _finish(tables, task, options, convert_tags, check_labels=False)
    return datasets.DatasetDict(splits) if isinstance(read, dict) else splits["train"]


def load(source: Source, task: TaskName = DEFAULT_TASK, *, validation: Source | None = None, test: Source | None = None,
         format: str | None = None, validation_fraction: float | None = None, seed: int = 42,
         **column_options: Any) -> datasets.DatasetDict:
    """Notebook convenience (``ftkit.load_data("train.conll")``): a source -> a DatasetDict.

    A single source becomes the train split (a folder of split files, a saved DatasetDict or a
    hub id bring their own splits); ``validation``/``test`` add splits; ``validation_fraction``
    holds out a seeded share of train when there is no validation split.
    """
    task = get_task(task)
    options = _options(column_options)
    tables = read_splits(source, {"validation": validation, "test": test}, format, options, None, task.columns)
    splits = _finish(tables, task, options, convert_tags=True, check_labels=True)
    return with_validation(splits, validation_fraction, seed)


# ----- the split cache ----------------------------------------------------------------------

_CACHE_VERSION = "1"  # bump when what a cached split holds changes


def _cache_key(data: "DataConfig", task: Task, seed: int) -> str | None:
    """A name for the canonical splits of ``data``, or None when a source is not a local file or folder.

    It hashes every source file's bytes (milliseconds for CoNLL-2003), the data options, the task,
    the seed, and the size and time of the code that reads and checks them (so an edited reader never
    serves an old result).
    """
    digest = hashlib.sha256(_CACHE_VERSION.encode())
    options = {k: v for k, v in dataclasses.asdict(data).items() if k not in ("train", "validation", "test")}
    digest.update(json.dumps([options, task.name, seed], sort_keys=True, default=str).encode())
    digest.update(_code_stamp(task).encode())
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


def _code_stamp(task: Task) -> str:
    """The size and time of the code that reads and checks data, so that an edited reader never serves an old result."""
    readers = Path(formats.__file__).parent
    code = {readers / f"{name}.py" for name in ("sources", "formats", "registry", "hf_datasets", "splits", "tags")}
    code |= {Path(__file__), Path(inspect.getfile(type(task)))}
    return "".join(f"{path}:{path.stat().st_size}:{path.stat().st_mtime_ns}|" for path in sorted(code))


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


# ----- canonical columns --------------------------------------------------------------------


def _options(column_options: Mapping[str, Any]) -> Any:
    """The data options given as keywords, the others at their defaults (what readers and tasks read)."""
    unknown = set(column_options) - set(COLUMN_OPTIONS)
    if unknown:
        raise ConfigError(f"unknown data option(s) {', '.join(sorted(unknown))}; allowed: {', '.join(COLUMN_OPTIONS)}")
    options = SimpleNamespace(**{**COLUMN_OPTIONS, **column_options}, head_rows=None)  # load_source sets head_rows
    if options.tag_scheme not in TAG_SCHEMES:
        raise ConfigError(f"tag_scheme must be one of {', '.join(TAG_SCHEMES)}; got '{options.tag_scheme}'")
    return options


def _finish(tables: dict[str, Table], task: Task, options: Any, convert_tags: bool,
            check_labels: bool) -> dict[str, datasets.Dataset]:
    """The task's canonical columns, its normalisation (NER tags to IOB2), cross-split label checks; then Arrow."""
    for split, table in tables.items():
        if not len(table):
            raise DataError(f"the {split} split ({table.source}) has no examples", table.path)
    canonical = {split: _canonical(task, table, options) for split, table in tables.items()}
    if convert_tags:
        if type(task).normalise is not Task.normalise:  # it rewrites rows in place: a large file's become lists
            canonical = {split: _in_lists(table) for split, table in canonical.items()}
        task.normalise(canonical, options)
    if check_labels:
        task.check_labels_across_splits(canonical, options.labels)
    features = task.features()
    return {split: datasets.Dataset.from_dict(canonical[split].columns, features=features)
            if canonical[split].dataset is None else canonical[split].dataset
            for split in sorted(canonical, key=split_order)}


def _canonical(task: Task, table: Table, options: Any) -> Table:
    """``task.canonical`` of ``table``; a large file's in batches over its Arrow rows (``Dataset.map``, written
    beside them in datasets' cache), so that its rows are never Python objects all at once."""
    if table.dataset is None:
        return task.canonical(table, options)

    def canonical_batch(rows: Mapping[str, list], indices: list[int]) -> dict[str, list]:
        return dict(task.canonical(formats.batch_table(table, rows, indices[0]), options).columns)

    # Named by what it depends on: datasets cannot hash a closure over a dataset, and a random name
    # would write the whole file into its cache again on every read.
    key = json.dumps([_CACHE_VERSION, table.dataset._fingerprint, task.name, repr(options), _code_stamp(task)])
    dataset = table.dataset.map(canonical_batch, batched=True, with_indices=True, features=task.features(),
                                remove_columns=table.dataset.column_names, desc=f"Reading {table.source}",
                                new_fingerprint=hashlib.sha256(key.encode()).hexdigest()[:32])
    return dataclasses.replace(table, columns={name: dataset[name] for name in dataset.column_names},
                               features=dataset.features, dataset=dataset)


def _in_lists(table: Table) -> Table:
    """``table`` with its columns as Python lists (those of a large file are read out of Arrow)."""
    if table.dataset is None:
        return table
    return dataclasses.replace(table, columns=table.dataset.to_dict(), dataset=None)
