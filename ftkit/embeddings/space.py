"""`EmbeddingSpace`: a set of words with one vector each, searchable by cosine similarity.

A space is either a model's static input embeddings (one row per vocabulary entry) or contextual
word vectors pooled over a corpus; both answer the same questions (neighbours, analogies,
projection, export). Words are kept most frequent first when frequencies are known.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import torch

from ..errors import FtkitError
from .index import NeighborIndex, build_index, normalize_rows

if TYPE_CHECKING:
    import pandas as pd

SPACES = ("static", "contextual")


class EmbeddingSpace:
    """Words, their vectors and (when a corpus was read) their frequencies and majority NER tags.

    ``subword_vector`` answers for words outside the vocabulary (a static space pools their
    wordpieces); without it such words raise a FtkitError that says they never occurred.
    ``lowercase`` mirrors an uncased tokenizer, so "Paris" finds "paris".
    """

    def __init__(
        self,
        words: Sequence[str],
        vectors: torch.Tensor,
        *,
        kind: str = "static",
        name: str = "",
        frequencies: Sequence[int] | torch.Tensor | None = None,
        tags: Sequence[str] | None = None,
        lowercase: bool = False,
        subword_vector: Callable[[str], torch.Tensor] | None = None,
        approximate: bool | None = None,
    ):
        if kind not in SPACES:
            raise FtkitError(f"space must be one of {', '.join(SPACES)}, not {kind!r}")
        if vectors.dim() != 2 or vectors.shape[0] != len(words):
            raise FtkitError(f"need one vector per word: {len(words)} words, vectors of shape {tuple(vectors.shape)}")
        self.words = list(words)
        self.vectors = vectors.float()
        self.kind, self.name, self.lowercase = kind, name or kind, lowercase
        self.frequencies = None if frequencies is None else torch.as_tensor(frequencies, dtype=torch.long).cpu()
        self.tags = None if tags is None else list(tags)
        self.subword_vector = subword_vector
        self.approximate = approximate
        self.ids = {word: i for i, word in enumerate(self.words)}
        self._index: NeighborIndex | None = None

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and self.key(word) in self.ids

    def __repr__(self) -> str:
        return f"<EmbeddingSpace {self.name!r}: {len(self)} words x {self.dim} ({self.kind})>"

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    @property
    def device(self) -> torch.device:
        return self.vectors.device

    @property
    def index(self) -> NeighborIndex:
        """The search index, built on first use (normalises the vectors once)."""
        if self._index is None:
            self._index = build_index(self.vectors, self.approximate)
        return self._index

    def key(self, word: str) -> str:
        word = word.strip()
        return word.lower() if self.lowercase else word

    def frequency(self, word: str) -> int | None:
        return None if self.frequencies is None else int(self.frequencies[self.ids[self.key(word)]])

    def tag(self, word: str) -> str | None:
        return None if self.tags is None else self.tags[self.ids[self.key(word)]]

    # ----- lookup -------------------------------------------------------------------------------
    def vector(self, word: str) -> torch.Tensor:
        """The word's vector; outside the vocabulary, its pooled subwords (static) or a FtkitError."""
        if not isinstance(word, str) or not word.strip():
            raise FtkitError(f"a word must be a non-empty string, got {word!r}")
        key = self.key(word)
        if key in self.ids:
            return self.vectors[self.ids[key]]
        if self.subword_vector is not None:
            return self.subword_vector(key).to(self.device)
        raise FtkitError(f"'{word}' never occurs in the corpus of the {self.name} space ({len(self)} words); "
                         "try another word or build the space over a corpus that contains it")

    def _query(self, query: Any) -> tuple[torch.Tensor, list[int]]:
        if isinstance(query, str):
            key = self.key(query)
            return self.vector(query), [self.ids[key]] if key in self.ids else []
        vector = torch.as_tensor(query, dtype=torch.float32, device=self.device).reshape(-1)
        if vector.shape[0] != self.dim:
            raise FtkitError(f"a query vector needs {self.dim} numbers, got {vector.shape[0]}")
        return vector, []

    def neighbors(self, query: Any, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` most cosine-similar words to a word or a vector, best first (the word excluded)."""
        _check_k(k)
        vector, exclude = self._query(query)
        return self._search(vector, k, exclude)

    def analogy(self, a: str, b: str, c: str, k: int = 10) -> list[tuple[str, float]]:
        """Words nearest to b - a + c on unit vectors ("man" : "king" :: "woman" : ?), inputs excluded."""
        _check_k(k)
        unit = {w: normalize_rows(self.vector(w).reshape(1, -1))[0] for w in (a, b, c)}
        exclude = [self.ids[self.key(w)] for w in (a, b, c) if self.key(w) in self.ids]
        return self._search(unit[b] - unit[a] + unit[c], k, exclude)

    def _search(self, vector: torch.Tensor, k: int, exclude: list[int]) -> list[tuple[str, float]]:
        scores, ids = self.index.search(vector, k, exclude=[exclude])
        return [(self.words[i], float(s)) for i, s in zip(ids[0].tolist(), scores[0].tolist())]

    # ----- views --------------------------------------------------------------------------------
    def subset(self, words: Iterable[str], name: str | None = None) -> "EmbeddingSpace":
        """A space over the given words (those present), in the given order."""
        keys = [self.key(w) for w in words]
        rows = [self.ids[k] for k in dict.fromkeys(keys) if k in self.ids]
        return self._take(rows, name)

    def top(self, n: int | None) -> "EmbeddingSpace":
        """The ``n`` most frequent words (the first ``n`` when frequencies are unknown)."""
        if n is None or n >= len(self):
            return self
        if self.frequencies is None:
            return self._take(list(range(n)))
        order = torch.sort(self.frequencies, descending=True, stable=True).indices[:n]
        return self._take(order.tolist())

    def _take(self, rows: list[int], name: str | None = None) -> "EmbeddingSpace":
        picked = torch.as_tensor(rows, dtype=torch.long)
        return EmbeddingSpace(
            [self.words[i] for i in rows], self.vectors[picked.to(self.device)], kind=self.kind, name=name or self.name,
            frequencies=None if self.frequencies is None else self.frequencies[picked],
            tags=None if self.tags is None else [self.tags[i] for i in rows],
            lowercase=self.lowercase, subword_vector=self.subword_vector, approximate=self.approximate)

    def project(self, max_words: int | None = 20_000, method: str = "pca", seed: int = 0) -> "pd.DataFrame":
        """2-D coordinates of the ``max_words`` most frequent words: columns word, x, y, frequency, tag."""
        import pandas as pd

        from .projection import project

        space = self.top(max_words)
        xy = project(space.vectors, method=method, seed=seed).numpy()
        return pd.DataFrame({
            "word": space.words, "x": xy[:, 0], "y": xy[:, 1],
            "frequency": space.frequencies.numpy() if space.frequencies is not None else None,
            "tag": space.tags,
        })

    def plot(self, **options: Any) -> Any:
        """A bokeh scatter of the projection; see `ftkit.embeddings.plot_projection` for options."""
        from .plots import plot_projection

        return plot_projection(self, **options)

    def export_projector(self, folder: str | Path, max_words: int | None = None) -> Path:
        """Write TensorBoard Projector files (vectors.tsv, metadata.tsv) into ``folder``."""
        from .export import export_projector

        return export_projector(self, folder, max_words)


def _check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise FtkitError(f"k must be a positive whole number of neighbours, got {k!r}")
