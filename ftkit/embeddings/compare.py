"""What fine-tuning moved: two spaces over the same words, ranked by how much each word changed.

Two measures per word, both blind to a rotation of the whole space (which changes no meaning):
- neighbour overlap: the share of its top-k neighbours before that are still among its top k after;
- cosine shift: 1 - cos between its vectors after aligning the spaces by translation (centering)
  and an orthogonal Procrustes rotation, which maps one space onto the other as well as any
  rotation can, so what remains is movement relative to the other words.
Words rank by overlap (fewest shared neighbours first), then by shift.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..rendering import escape, html_table
from ..errors import FtkitError
from .index import all_neighbors, normalize_rows
from .space import EmbeddingSpace
from .tables import NeighborTable

if TYPE_CHECKING:
    import pandas as pd


def procrustes(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The orthogonal matrix R minimising ||source @ R - target|| (Schönemann's SVD solution).

    Spaces of different widths get a semi-orthogonal R (d_source x d_target).
    """
    u, _, vh = torch.linalg.svd(source.double().T @ target.double(), full_matrices=False)
    return (u @ vh).to(source.dtype)


class Comparison:
    """Two spaces restricted to their common words, with per-word neighbour overlap and cosine shift."""

    def __init__(self, before: EmbeddingSpace, after: EmbeddingSpace, k: int = 10):
        common = [w for w in after.words if w in before.ids]
        if len(common) < 3:
            raise FtkitError(f"{before.name} and {after.name} share {len(common)} words; compare spaces over the "
                             "same vocabulary (same tokenizer) or the same corpus")
        self.before, self.after = before.subset(common), after.subset(common)
        self.labels = (before.name, after.name) if before.name != after.name else ("before", "after")
        self.k = min(k, len(common) - 1)
        self.before_neighbors = all_neighbors(self.before.index, self.before.vectors, self.k)
        self.after_neighbors = all_neighbors(self.after.index, self.after.vectors, self.k)
        self.overlap = _kept_share(self.before_neighbors, self.after_neighbors, normalize_rows(self.after.vectors))
        source = _centered_units(self.before.vectors)
        self.centered_after = _centered_units(self.after.vectors).to(source.device)
        self.rotation = procrustes(source, self.centered_after)
        self.aligned_before = source @ self.rotation
        self.shift = (1 - torch.nn.functional.cosine_similarity(self.aligned_before, self.centered_after, dim=1)
                      ).clamp_min(0).cpu()

    @property
    def words(self) -> list[str]:
        return self.after.words

    def __repr__(self) -> str:
        return f"<Comparison {self.labels[0]!r} -> {self.labels[1]!r}: {len(self.words)} words, k={self.k}>"

    def moved(self, n: int | None = 20, min_frequency: int = 1, show: int = 5) -> "pd.DataFrame":
        """The ``n`` words that moved most (all when None), with ``show`` (<= k) neighbours before and after."""
        import pandas as pd

        frequencies = self.after.frequencies
        table = pd.DataFrame({
            "word": self.words,
            "shared_neighbors": self.overlap.numpy(),
            "shift": self.shift.numpy(),
            "frequency": frequencies.numpy() if frequencies is not None else None,
            "tag": self.after.tags,
        })
        if frequencies is not None:
            table = table[table["frequency"] >= min_frequency]
        table = table.sort_values(["shared_neighbors", "shift"], ascending=[True, False], kind="stable").head(n)
        for column, neighbors in (("before", self.before_neighbors), ("after", self.after_neighbors)):
            table[column] = [", ".join(self.words[j] for j in neighbors[i, :show].tolist()) for i in table.index]
        return table.dropna(axis=1, how="all").reset_index(drop=True)

    def word(self, word: str, k: int | None = None) -> NeighborTable:
        """``word``'s neighbours before and after, side by side (new neighbours marked)."""
        k = k or self.k
        columns = {self.labels[0]: self.before.neighbors(word, k), self.labels[1]: self.after.neighbors(word, k)}
        caption = None
        if word in self.after:
            i = self.after.ids[self.after.key(word)]
            caption = (f"{round(float(self.overlap[i]) * self.k)}/{self.k} neighbours kept, "
                       f"cosine shift {float(self.shift[i]):.3f}")
        return NeighborTable(word, columns, caption)

    def plot(self, n: int = 20, **options: Any) -> Any:
        """Before/after positions of the ``n`` most moved words, linked by arrows (a bokeh layout)."""
        from .plots import plot_comparison

        return plot_comparison(self, n=n, **options)

    def _repr_html_(self) -> str:
        return self.summary_html()

    def summary_html(self, n: int = 20, min_frequency: int = 1) -> str:
        """The ``n`` most moved words as an HTML table (what the notebook shows for a comparison)."""
        table = self.moved(n, min_frequency)
        rows = [[row.word, f"{row.shared_neighbors:.0%}", f"{row.shift:.3f}", row.before, row.after]
                for row in table.itertuples()]
        headers = ["word", f"shared of top {self.k}", "cosine shift", self.labels[0], self.labels[1]]
        return (f"<div><b>{escape(self.labels[0])}</b> → <b>{escape(self.labels[1])}</b>: "
                f"{len(self.words)} common words; the {len(rows)} that moved most</div>{html_table(headers, rows)}")


def compare(before: Any, after: Any, k: int = 10, *, space: str = "static", corpus: Any = None,
            **load_options: Any) -> Comparison:
    """Rank the words whose neighbourhoods changed most between two spaces (or two sources).

    ``before``/``after`` are `EmbeddingSpace`s, or sources that `ftkit.embeddings.load` reads with
    the same ``space``, ``corpus`` and options (typically a base model and a run).
    """
    from .loading import load

    spaces = [s if isinstance(s, EmbeddingSpace) else load(s, space, corpus, **load_options) for s in (before, after)]
    return Comparison(*spaces, k=k)


def _kept_share(before_ids: torch.Tensor, after_ids: torch.Tensor, after_units: torch.Tensor,
                tolerance: float = 1e-5) -> torch.Tensor:
    """Per word, the share of its old top-k neighbours that are still among its top k (ties count as kept).

    A neighbour tied with the k-th best (to float rounding) is as near as one inside the top k, so
    near-ties re-ordered by rounding alone do not read as change.
    """
    rows = torch.arange(before_ids.shape[0])[:, None]
    device = after_units.device
    kth = (after_units[rows.to(device)] * after_units[after_ids[:, -1:].to(device)]).sum(-1)
    old = (after_units[rows.to(device)] * after_units[before_ids.to(device)]).sum(-1)
    return (old >= kth - tolerance).float().mean(-1).cpu()


def _centered_units(vectors: torch.Tensor) -> torch.Tensor:
    unit = normalize_rows(vectors)
    return unit - unit.mean(dim=0)
