"""From canonical rows to model inputs: the label set, tokenisation, and word/subword alignment.

NER labels sit on the first subword of each word (``word_ids()`` of a fast tokenizer); the other
subwords and special tokens get -100 so the loss and the metrics see one prediction per word.
Sentences longer than ``max_length`` become consecutive windows of whole words, so no word is
ever dropped from training or evaluation; ``sentence_id`` and ``word_offset`` let evaluation put
the windows back together.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import datasets

from ..errors import DataError, FtkitError
from .tags import split_tag

IGNORE_INDEX = -100  # the label PyTorch's cross-entropy skips
_TOKENIZE_VERSION = "1"  # bump when the tokenised layout changes, so disk caches are not reused


def label_list(dsd: datasets.DatasetDict | datasets.Dataset, task: str, given: Sequence[str] | None = None) -> list[str]:
    """The model's labels, in a stable order.

    NER: "O" first, then B-X and I-X for every entity type X seen in any split (both, so the
    model can predict either), sorted by type. Classification: the labels seen, sorted.
    ``given`` (data.labels) is used as is, after checking the NER one has "O".
    """
    if given:
        labels = list(dict.fromkeys(given))
        if task == "ner" and "O" not in labels:
            raise DataError(f"data.labels must include 'O' for NER; got {', '.join(labels)}")
        return labels
    splits = dsd.values() if isinstance(dsd, datasets.DatasetDict) else [dsd]
    if task == "ner":
        types = {split_tag(tag)[1] for split in splits for tags in split["tags"] for tag in tags if tag != "O"}
        return ["O"] + [f"{prefix}-{kind}" for kind in sorted(types) for prefix in "BI"]
    return sorted({label for split in splits for label in split["label"]}, key=_natural_key)


def _natural_key(label: str) -> tuple:
    """"2" before "10"; numbers before words."""
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


def tokenize_dataset(dsd: datasets.DatasetDict, tokenizer: Any, label2id: dict[str, int], task: str,
                     max_length: int, cache_dir: str | Path | None = None) -> datasets.DatasetDict:
    """Tokenise every split in batches; no padding (the collator pads each batch).

    NER rows become input_ids, attention_mask, (token_type_ids), labels, word_ids (-1 for special
    tokens, relative to the window), sentence_id (the row's index in its split as given),
    word_offset (the window's first word in the sentence) and length; classification rows
    input_ids, attention_mask, (token_type_ids), labels and length. The canonical DatasetDict is
    not changed. With ``cache_dir`` each split is written there (memory-mapped, reused when the
    same data, tokenizer, labels and max_length come again).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise FtkitError(
            f"the tokenizer {type(tokenizer).__name__} is a slow (Python) tokenizer; ftkit needs a fast one "
            "(word_ids() aligns labels with words). Load it with AutoTokenizer.from_pretrained(..., use_fast=True) "
            "or pick a model that ships tokenizer.json"
        )
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if budget < 1:
        raise FtkitError(f"max_length {max_length} leaves no room for words after the special tokens")
    tokenized = {}
    for split, dataset in dsd.items():
        _check_known_labels(dataset, split, label2id, task)
        if task == "ner":
            function = _NerEncoder(tokenizer, label2id, max_length, budget)
        else:
            function = _ClassificationEncoder(tokenizer, label2id, max_length)
        fingerprint = _fingerprint(dataset, tokenizer, label2id, task, max_length)
        cache_file = str(Path(cache_dir) / f"{split}-{fingerprint}.arrow") if cache_dir else None
        if cache_dir:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
        tokenized[split] = dataset.map(
            function, batched=True, with_indices=task == "ner", remove_columns=dataset.column_names,
            new_fingerprint=fingerprint, cache_file_name=cache_file, desc=f"Tokenizing {split}",
        )
    return datasets.DatasetDict(tokenized)


def _check_known_labels(dataset: datasets.Dataset, split: str, label2id: dict[str, int], task: str) -> None:
    column = "tags" if task == "ner" else "label"
    for index, row in enumerate(dataset[column]):
        for label in row if task == "ner" else [row]:
            if label not in label2id:
                raise DataError(
                    f"{split} split, example {index}: label '{label}' is not one of the model's labels "
                    f"({', '.join(label2id)}). Add it to data.labels, or fix the data"
                )


def _fingerprint(dataset: datasets.Dataset, tokenizer: Any, label2id: dict[str, int], task: str,
                 max_length: int) -> str:
    """A name for the tokenised split that changes whenever its content would."""
    key = json.dumps([_TOKENIZE_VERSION, dataset._fingerprint, tokenizer.name_or_path, len(tokenizer),
                      type(tokenizer).__name__, label2id, task, max_length], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def word_windows(word_lengths: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Consecutive ``[start, end)`` word ranges whose subword counts fit ``budget``.

    Greedy and whole-word: a word that alone exceeds the budget gets a window of its own (the
    tokenizer then truncates its subwords, but the word keeps its label).
    """
    windows, start, used = [], 0, 0
    for index, length in enumerate(word_lengths):
        if used and used + length > budget:
            windows.append((start, index))
            start, used = index, 0
        used += length
    windows.append((start, len(word_lengths)))
    return windows


class _NerEncoder:
    """Batched map function: sentences -> one row per window, labels on first subwords."""

    def __init__(self, tokenizer: Any, label2id: dict[str, int], max_length: int, budget: int):
        self.tokenizer, self.label2id, self.max_length, self.budget = tokenizer, label2id, max_length, budget

    def __call__(self, batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        # verbose=False: sentences over the model's limit are expected here; they become windows.
        encoded = self.tokenizer(batch["tokens"], is_split_into_words=True, verbose=False)
        # One entry per output row: (from_windows, row, tags, sentence_id, word_offset). Rows of
        # sentences over the limit point into a second encoding, of their windows.
        planned: list[tuple[bool, int, list[str], int, int]] = []
        windows: list[list[str]] = []
        for row, (tokens, tags, sentence_id) in enumerate(zip(batch["tokens"], batch["tags"], indices)):
            word_ids = encoded.word_ids(row)
            if len(word_ids) <= self.max_length:
                planned.append((False, row, tags, sentence_id, 0))
                continue
            lengths = [0] * len(tokens)
            for word in word_ids:
                if word is not None:
                    lengths[word] += 1
            for start, end in word_windows(lengths, self.budget):
                planned.append((True, len(windows), tags[start:end], sentence_id, start))
                windows.append(tokens[start:end])
        window_encoding = self.tokenizer(windows, is_split_into_words=True, truncation=True,
                                         max_length=self.max_length) if windows else None
        columns = (*encoded.keys(), "labels", "word_ids", "sentence_id", "word_offset", "length")
        rows: dict[str, list] = {key: [] for key in columns}
        for from_windows, row, tags, sentence_id, offset in planned:
            self._add(rows, window_encoding if from_windows else encoded, row, tags, sentence_id, offset)
        return rows

    def _add(self, rows: dict[str, list], encoding: Any, row: int, tags: list[str], sentence_id: int,
             offset: int) -> None:
        word_ids = encoding.word_ids(row)
        labels, previous = [], None
        for word in word_ids:
            labels.append(self.label2id[tags[word]] if word is not None and word != previous else IGNORE_INDEX)
            previous = word
        for key, values in encoding.items():
            rows[key].append(values[row])
        rows["labels"].append(labels)
        rows["word_ids"].append([-1 if word is None else word for word in word_ids])
        rows["sentence_id"].append(sentence_id)
        rows["word_offset"].append(offset)
        rows["length"].append(len(word_ids))


class _ClassificationEncoder:
    """Batched map function: texts -> truncated token ids and the label id."""

    def __init__(self, tokenizer: Any, label2id: dict[str, int], max_length: int):
        self.tokenizer, self.label2id, self.max_length = tokenizer, label2id, max_length

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        encoded = self.tokenizer(batch["text"], truncation=True, max_length=self.max_length)
        rows = dict(encoded)
        rows["labels"] = [self.label2id[label] for label in batch["label"]]
        rows["length"] = [len(ids) for ids in encoded["input_ids"]]
        return rows


def id_maps(labels: Iterable[str]) -> tuple[dict[str, int], dict[int, str]]:
    """``label2id`` and ``id2label`` for a label list (the model config wants both)."""
    labels = list(labels)
    return {label: i for i, label in enumerate(labels)}, dict(enumerate(labels))
