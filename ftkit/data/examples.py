"""The example data sets the notebooks and examples use (CoNLL-2003, SST-2), found where a user has them.

In order: ``$FTKIT_DATA_DIR/<name>/``, a ``shared/data/<name>/`` folder in the working folder or
above it (this repository's layout), then, online, the public copies on the Hugging Face hub.
Offline and nowhere local, the error says exactly where to put which files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..hub import is_offline


@dataclass(frozen=True)
class ExampleSet:
    """Where one example data set lives locally (its split files) and on the hub."""

    files: dict[str, str]  # split -> file name in the set's folder
    hub_id: str
    what: str


EXAMPLE_SETS = {
    "conll2003": ExampleSet({"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}, "eriktks/conll2003",
                            "CoNLL-2003 NER in CoNLL columns (word POS chunk tag)"),
    "sst2": ExampleSet({"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}, "stanfordnlp/sst2",
                       "SST-2 sentiment as TSV with a header row: sentence<TAB>label (0/1)"),
}


def example_data(name: str, start: str | os.PathLike | None = None) -> dict[str, str]:
    """The splits of example set ``name`` as ftkit data sources: ``{"train", "validation", "test"}``.

    Local files when they exist (``$FTKIT_DATA_DIR``, else ``shared/data`` in ``start`` (default: the
    working folder) or a folder above it), else the hub id for every split (a hub data set brings its
    own splits) when online.
    """
    if name not in EXAMPLE_SETS:
        raise DataError(f"no example data set '{name}'; there are {', '.join(EXAMPLE_SETS)}")
    spec = EXAMPLE_SETS[name]
    for folder in _candidate_folders(name, Path(start or Path.cwd()).resolve()):
        if all((folder / file).is_file() for file in spec.files.values()):
            return {split: str(folder / file) for split, file in spec.files.items()}
    if not is_offline():
        return {split: spec.hub_id for split in spec.files}
    files = ", ".join(spec.files.values())
    raise DataError(
        f"the example data '{name}' ({spec.what}) is not here and the hub is off (HF_HUB_OFFLINE=1). Put {files} "
        f"in a folder '{name}/' and set FTKIT_DATA_DIR to the folder above it (or keep it as shared/data/{name}/ "
        f"above this folder); online, ftkit reads the hub copy '{spec.hub_id}' instead. Your own data works the "
        "same way: give its files (CoNLL, JSONL, CSV/TSV, Parquet), a saved dataset folder, a hub id or a DataFrame"
    )


def _candidate_folders(name: str, start: Path) -> list[Path]:
    folders = []
    if os.environ.get("FTKIT_DATA_DIR"):
        folders.append(Path(os.environ["FTKIT_DATA_DIR"]).expanduser() / name)
    folders += [parent / "shared" / "data" / name for parent in (start, *start.parents)]
    return folders
