"""In-memory data (a pandas DataFrame, a `datasets` Dataset or DatasetDict, a list of dicts) saved into
a run's folder as Parquet, so the worker reads exactly what the user passed and the run can be repeated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..errors import DataError
from .splits import SPLITS


def write_snapshots(sources: Mapping[str, Any], folder: str | Path) -> dict[str, str]:
    """Write each in-memory split to ``folder/<split>.parquet``; returns split -> path.

    A DatasetDict given as train brings its own splits (validation/test ones given separately win).
    A Dataset keeps its features (class names) in the Parquet metadata.
    """
    import datasets
    import pandas as pd

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    expanded: dict[str, Any] = {}
    for split, value in sources.items():
        if isinstance(value, datasets.DatasetDict):
            for name, part in value.items():
                canonical = {"valid": "validation", "dev": "validation", "val": "validation"}.get(name, name)
                if canonical in SPLITS and (canonical == split or canonical not in sources):
                    expanded[canonical] = part
            continue
        expanded[split] = value
    written = {}
    for split, value in expanded.items():
        path = folder / f"{split}.parquet"
        try:
            if isinstance(value, datasets.Dataset):
                value.to_parquet(str(path))
            else:
                frame = value if isinstance(value, pd.DataFrame) else pd.DataFrame.from_records(value)
                frame.to_parquet(path, index=False)
        except (ValueError, TypeError, ImportError) as exc:  # pyarrow: mixed or unsupported column types
            raise DataError(f"could not save the in-memory {split} data as Parquet ({type(exc).__name__}: {exc}); "
                            "give every column one type (text, numbers, or lists of them)") from None
        written[split] = str(path)
    return written
