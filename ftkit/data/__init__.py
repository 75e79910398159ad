"""The data layer: any source -> a checked ``datasets.DatasetDict`` -> tokenised model inputs.

Canonical columns are the task's (``ftkit.tasks``): NER ``tokens``/``tags`` (IOB2 strings),
classification ``text``/``label`` (strings). Loading (sources.py) reports every problem as a
DataError with file and line; tag schemes live in tags.py, tokenisation and windows in align.py,
the notebook views in stats.py and preview.py, in-memory data snapshots in snapshot.py, and
the example data sets (found locally or on the hub) in examples.py.
"""

from .examples import EXAMPLE_SETS, example_data
from .align import IGNORE_INDEX, id_maps, label_list, tokenize_dataset, word_windows
from .preview import preview_html
from .sources import SPLITS, guess_format, hold_out, load, load_source, load_splits, subset
from .stats import DataStats, SplitStats, stats
from .tags import detect_scheme, entity_spans, scheme_violations, to_iob2

__all__ = [
    "EXAMPLE_SETS", "IGNORE_INDEX", "SPLITS", "example_data", "DataStats", "SplitStats", "detect_scheme", "entity_spans", "guess_format",
    "hold_out", "id_maps", "label_list", "load", "load_source", "load_splits", "preview_html",
    "scheme_violations", "stats", "subset", "to_iob2", "tokenize_dataset", "word_windows",
]
