"""Neighbour lists as small HTML tables: one column per space, side by side.

The same table serves a single space (``show_neighbors``), a base model next to a checkpoint
(``Comparison.word``) and the widget; a neighbour that is in one column but not the others is
marked, so what fine-tuning changed stands out at a glance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

from ..rendering import escape, html_table

if TYPE_CHECKING:
    import pandas as pd

Neighbors = Sequence[tuple[str, float]]


class NeighborTable:
    """``word``'s nearest neighbours in one or more spaces (column label -> [(word, score)])."""

    def __init__(self, word: str, columns: Mapping[str, Neighbors], caption: str | None = None):
        self.word, self.columns, self.caption = word, dict(columns), caption

    def __repr__(self) -> str:
        lines = [f"neighbours of {self.word!r}" + (f" ({self.caption})" if self.caption else "")]
        for label, neighbors in self.columns.items():
            lines.append(f"  {label}: " + ", ".join(f"{w} {s:.3f}" for w, s in neighbors))
        return "\n".join(lines)

    def to_frame(self) -> "pd.DataFrame":
        """A pandas DataFrame with a (column, word/score) header, one row per rank."""
        import pandas as pd

        parts = {label: pd.DataFrame(neighbors, columns=["word", "score"]) for label, neighbors in self.columns.items()}
        return pd.concat(parts, axis=1)

    def _repr_html_(self) -> str:
        sets = [{w for w, _ in neighbors} for neighbors in self.columns.values()]
        shared = set.intersection(*sets) if len(sets) > 1 else None
        rows = []
        for rank in range(max((len(n) for n in self.columns.values()), default=0)):
            row: list[object] = [rank + 1]
            for neighbors in self.columns.values():
                if rank < len(neighbors):
                    word, score = neighbors[rank]
                    row += [_marked(word, shared is not None and word not in shared), f"{score:.3f}"]
                else:
                    row += ["", ""]
            rows.append(row)
        headers = ["#"] + [name for label in self.columns for name in (label, "score")]
        word_columns = range(1, len(headers), 2)
        caption = f"neighbours of <b>{escape(self.word)}</b>" + (f" — {escape(self.caption)}" if self.caption else "")
        table = html_table(headers, rows, raw_columns=word_columns)
        return f'<div class="ftkit-neighbors"><div>{caption}</div>{table}</div>'


def _marked(word: str, only_here: bool) -> str:
    """Words missing from the other columns are bold and orange: the change the eye should catch."""
    return f'<b style="color:#b35806">{escape(word)}</b>' if only_here else escape(word)


def message_html(text: str, error: bool = False) -> str:
    """A one-line notice shown in place of a table (a hint, or in red an error)."""
    return f'<div class="ftkit-neighbors" style="color:{"#b30000" if error else "#6b7280"}">{escape(text)}</div>'
