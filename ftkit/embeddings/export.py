"""TensorBoard Projector files: vectors.tsv, metadata.tsv and a projector_config.pbtxt.

The Projector reads a metadata file with one column as bare labels, and with several columns
expects a header line; we follow that rule (columns: word, then frequency and tag when known).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .space import EmbeddingSpace

VECTORS_FILE, METADATA_FILE, CONFIG_FILE = "vectors.tsv", "metadata.tsv", "projector_config.pbtxt"


def export_projector(space: "EmbeddingSpace", folder: str | Path, max_words: int | None = None) -> Path:
    """Write the ``max_words`` most frequent words of ``space`` for projector.tensorflow.org or TensorBoard."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    space = space.top(max_words)
    columns = {"word": [_cell(w) for w in space.words]}
    if space.frequencies is not None:
        columns["frequency"] = [str(f) for f in space.frequencies.tolist()]
    if space.tags is not None:
        columns["tag"] = [_cell(t) for t in space.tags]
    rows = list(zip(*columns.values()))
    with open(folder / METADATA_FILE, "w", encoding="utf-8") as f:
        if len(columns) > 1:
            f.write("\t".join(columns) + "\n")
        f.writelines("\t".join(row) + "\n" for row in rows)
    with open(folder / VECTORS_FILE, "w", encoding="utf-8") as f:
        f.writelines("\t".join(f"{x:.6g}" for x in vector) + "\n" for vector in space.vectors.cpu().tolist())
    name = _cell(space.name).replace('"', "'")
    (folder / CONFIG_FILE).write_text(
        f'embeddings {{\n  tensor_name: "{name}"\n  tensor_path: "{VECTORS_FILE}"\n'
        f'  metadata_path: "{METADATA_FILE}"\n}}\n', encoding="utf-8")
    return folder


def _cell(text: str) -> str:
    """Tabs and line breaks would split a cell; an empty first cell would shift the Projector's rows."""
    return " ".join(text.split()) or "<empty>"
