"""The data layer, task-neutral: any source -> raw `Table`s (columns that remember their file and lines).

Readers per format and the format registry (formats.py, registry.py: files streamed a line at a time, and
those over ``hf_datasets.LARGE_FILE_BYTES`` read as memory-mapped Arrow instead of lists), sources of every kind
(sources.py: files, folders of split files, saved and hub datasets via hf_datasets.py, in-memory
data), split names and whole-split operations (splits.py), NER tag schemes (tags.py), chat layouts
(chat.py), preference records: pairs and labelled answers (preference.py), in-memory data snapshots (snapshot.py) and the example data sets (examples.py). It imports
neither ``ftkit.tasks`` nor ``ftkit.engine`` nor ``ftkit.config``, and ``datasets`` only when it reads.

What a task makes of a Table (its canonical columns, labels, tokenisation, statistics, preview) is in
``ftkit.tasks``: ``ftkit.load_data``, ``ftkit.data_stats`` and ``ftkit.data_preview`` for users.
"""

from .examples import EXAMPLE_SETS, example_data
from .formats import Table
from .registry import DATA_FORMATS, FORMATS, DataFormat, register
from .sources import guess_format, read_source, read_splits
from .splits import SPLITS, hold_out, subset
from .tags import TAG_SCHEMES, detect_scheme, entity_spans, scheme_violations, to_iob2

__all__ = [
    "DATA_FORMATS", "EXAMPLE_SETS", "FORMATS", "SPLITS", "TAG_SCHEMES", "DataFormat", "Table", "detect_scheme",
    "entity_spans", "example_data", "guess_format", "hold_out", "read_source", "read_splits", "register",
    "scheme_violations", "subset", "to_iob2",
]
