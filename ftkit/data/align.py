"""From canonical rows to model inputs: the label set, tokenisation, and the windows of long sentences.

The task (``ftkit.tasks``) decides the labels and how a row is encoded (NER: labels on the first
subword of each word, -100 elsewhere; sentences longer than ``max_length`` become consecutive
windows of whole words, see `word_windows`); this module runs its encoder over every split in
batches and caches the result on disk.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import datasets

from ..errors import FtkitError
from ..tasks import get_task
from ..tasks.base import Task

IGNORE_INDEX = -100  # the label PyTorch's cross-entropy skips
_TOKENIZE_VERSION = "1"  # bump when the tokenised layout changes, so disk caches are not reused


def label_list(dsd: datasets.DatasetDict | datasets.Dataset, task: str | Task,
               given: Sequence[str] | None = None) -> list[str]:
    """The model's labels, in a stable order (the task's; see its ``label_list``).

    NER: "O" first, then B-X and I-X for every entity type X seen in any split (both, so the
    model can predict either), sorted by type. Classification: the labels seen, sorted.
    ``given`` (data.labels) is used as is, after checking the NER one has "O".
    """
    splits = list(dsd.values()) if isinstance(dsd, datasets.DatasetDict) else [dsd]
    return get_task(task).label_list(splits, given)


def tokenize_dataset(dsd: datasets.DatasetDict, tokenizer: Any, label2id: dict[str, int], task: str | Task,
                     max_length: int, cache_dir: str | Path | None = None) -> datasets.DatasetDict:
    """Tokenise every split in batches with the task's encoder; no padding (the collator pads each batch).

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
    task = get_task(task)
    tokenized = {}
    for split, dataset in dsd.items():
        task.check_known_labels(dataset, split, label2id)
        function = task.encoder(tokenizer, label2id, max_length)
        fingerprint = _fingerprint(dataset, tokenizer, label2id, task.name, max_length)
        cache_file = str(Path(cache_dir) / f"{split}-{fingerprint}.arrow") if cache_dir else None
        if cache_dir:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
        tokenized[split] = dataset.map(
            function, batched=True, with_indices=task.encoder_takes_indices, remove_columns=dataset.column_names,
            new_fingerprint=fingerprint, cache_file_name=cache_file, desc=f"Tokenizing {split}",
        )
    return datasets.DatasetDict(tokenized)


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


def id_maps(labels: Iterable[str]) -> tuple[dict[str, int], dict[int, str]]:
    """``label2id`` and ``id2label`` for a label list (the model config wants both)."""
    labels = list(labels)
    return {label: i for i, label in enumerate(labels)}, dict(enumerate(labels))
