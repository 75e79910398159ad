"""Contextual word vectors: a model's hidden states averaged per word over a corpus.

Each occurrence of a word is the mean of its subword pieces' hidden states (so "xylophonist",
split into five pieces, is one vector per occurrence); a word's vector is the mean over its
occurrences, and how often it occurred is kept, together with its most frequent NER entity type
when the corpus is tagged. Everything accumulates with one ``index_add_`` per batch, so memory is
one (words x hidden) matrix however large the corpus.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..errors import FtkitError


@dataclass
class Corpus:
    """Sentences as word lists, and their IOB2 tags when the corpus is tagged."""

    sentences: list[list[str]]
    tags: list[list[str]] | None = None

    def __len__(self) -> int:
        return len(self.sentences)

    def head(self, n: int | None) -> "Corpus":
        if n is None or n >= len(self):
            return self
        return Corpus(self.sentences[:n], None if self.tags is None else self.tags[:n])


def read_corpus(corpus: Any, max_sentences: int | None = None) -> Corpus:
    """A `Corpus` from a data file (read by `ftkit.load_data`), a `datasets` split, or Python lists.

    Lists may hold sentences as strings (split on whitespace), as word lists, or as
    ``{"tokens": [...], "tags": [...]}`` rows.
    """
    if isinstance(corpus, Corpus):
        return corpus.head(max_sentences)
    if isinstance(corpus, (str, os.PathLike)):
        corpus = _load_file(Path(corpus))
    if hasattr(corpus, "column_names") and isinstance(corpus.column_names, dict):  # a DatasetDict
        split = "train" if "train" in corpus else next(iter(corpus))
        corpus = corpus[split]
    if hasattr(corpus, "column_names"):  # a datasets.Dataset
        columns = corpus[:max_sentences] if max_sentences is not None else corpus[:]  # a dict of lists
        if "tokens" in columns:
            return Corpus(columns["tokens"], columns.get("tags"))
        if "text" in columns:  # a classification dataset: its texts, split on whitespace
            return Corpus([text.split() for text in columns["text"]])
        raise FtkitError(f"a corpus dataset needs a 'tokens' or 'text' column; it has {', '.join(corpus.column_names)}")
    if not isinstance(corpus, Sequence) or isinstance(corpus, (str, bytes)) or not len(corpus):
        raise FtkitError("a corpus must be a data file, a datasets split or a non-empty list of sentences")
    rows = list(corpus[:max_sentences] if max_sentences is not None else corpus)
    if all(isinstance(row, dict) for row in rows):
        if not all("tokens" in row for row in rows):
            raise FtkitError("corpus rows given as dicts need a 'tokens' list (and optionally 'tags')")
        tagged = all("tags" in row for row in rows)
        return Corpus([list(r["tokens"]) for r in rows], [list(r["tags"]) for r in rows] if tagged else None)
    sentences = [row.split() if isinstance(row, str) else list(row) for row in rows]
    if not all(isinstance(w, str) for sentence in sentences for w in sentence):
        raise FtkitError("corpus sentences must be strings or lists of word strings")
    return Corpus(sentences)


def _load_file(path: Path) -> Any:
    if not path.exists():
        raise FtkitError(f"corpus file {path} does not exist")
    try:
        from ..tasks.loading import load
    except ImportError as exc:
        raise FtkitError(f"reading corpus files needs ftkit.tasks.loading ({exc}); pass a list of sentences instead") from None
    return load(str(path), task="ner")


def entity_type(tag: str) -> str:
    """'B-PER' and 'I-PER' -> 'PER'; 'O' stays 'O'."""
    return tag.split("-", 1)[1] if "-" in tag else tag


@dataclass
class WordVectors:
    words: list[str]
    vectors: torch.Tensor
    frequencies: torch.Tensor
    tags: list[str] | None


@torch.inference_mode()
def pool_word_vectors(
    model: Any,
    tokenizer: Any,
    corpus: Corpus,
    *,
    lowercase: bool = False,
    layer: int = -1,
    batch_size: int = 32,
    max_length: int = 256,
    on_progress: Callable[[int, int], None] | None = None,
) -> WordVectors:
    """Mean hidden state (of ``layer``) per word type over ``corpus``, most frequent words first.

    Words whose pieces all fall past ``max_length`` contribute nothing (and are dropped if that
    was their only occurrence). ``on_progress(done, total)`` hears the sentences encoded so far
    after every batch.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise FtkitError("contextual vectors need a fast tokenizer (one with word_ids); this model's is a slow one")
    key = str.lower if lowercase else str
    types: dict[str, int] = {}
    sentence_types = [[types.setdefault(key(w), len(types)) for w in sentence] for sentence in corpus.sentences]
    device = next(model.parameters()).device
    sums: torch.Tensor | None = None
    counts = torch.zeros(len(types), dtype=torch.long)
    tag_counts: list[Counter] | None = [Counter() for _ in types] if corpus.tags is not None else None
    order = sorted(range(len(corpus)), key=lambda i: -len(corpus.sentences[i]))  # similar lengths pad less
    model.eval()
    for start in range(0, len(order), batch_size):
        if on_progress is not None and start:
            on_progress(start, len(order))
        batch = [i for i in order[start:start + batch_size] if corpus.sentences[i]]
        if not batch:
            continue
        encoded = tokenizer([corpus.sentences[i] for i in batch], is_split_into_words=True, truncation=True,
                            max_length=max_length, padding=True, return_tensors="pt")
        hidden = model(**encoded.to(device), output_hidden_states=True).hidden_states[layer]
        if sums is None:
            sums = torch.zeros(len(types), hidden.shape[-1], device=device)
        picks = []  # (row, column, word type, 1 / pieces in the word) per subword piece
        for row, i in enumerate(batch):
            word_ids = encoded.word_ids(row)
            pieces = Counter(w for w in word_ids if w is not None)
            for col, w in enumerate(word_ids):
                if w is not None:
                    picks.append((row, col, sentence_types[i][w], 1 / pieces[w]))
            for w in pieces:
                counts[sentence_types[i][w]] += 1
                if tag_counts is not None:
                    tag_counts[sentence_types[i][w]][entity_type(corpus.tags[i][w])] += 1
        if not picks:
            continue
        rows, cols, type_ids, weights = zip(*picks)
        weighted = hidden[list(rows), list(cols)].float() * torch.tensor(weights, device=device)[:, None]
        sums.index_add_(0, torch.tensor(type_ids, device=device), weighted)
    if on_progress is not None:
        on_progress(len(order), len(order))
    if sums is None:
        raise FtkitError("the corpus has no words to build contextual vectors from")
    seen = torch.nonzero(counts > 0).flatten()
    seen = seen[torch.sort(counts[seen], descending=True, stable=True).indices]
    words = list(types)
    return WordVectors(
        words=[words[i] for i in seen.tolist()],
        vectors=sums[seen.to(device)] / counts[seen].to(device)[:, None],
        frequencies=counts[seen],
        tags=None if tag_counts is None else [tag_counts[i].most_common(1)[0][0] for i in seen.tolist()],
    )
