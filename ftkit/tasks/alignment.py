"""From canonical rows to model inputs: the label set, tokenisation, and the windows of long sentences.

Each task decides its labels and how a row is encoded (NER: labels on the first
subword of each word, -100 elsewhere; sentences longer than ``max_length`` become consecutive
windows of whole words, see `word_windows`); this module runs its encoder over every split in
batches and caches the result on disk.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import datasets

from ..errors import FtkitError
from . import get_task
from .base import Task

IGNORE_INDEX = -100  # the label PyTorch's cross-entropy skips
_TOKENIZE_VERSION = "2"  # bump when the tokenised layout or the cache key changes, so disk caches are not reused

# on_progress(split, done, total, cached): examples of ``split`` tokenised so far; ``cached`` when the split
# comes from the disk cache instead (then done == total at once).
TokenizeProgress = Callable[[str, int, int, bool], None]


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
                     max_length: int, cache_dir: str | Path | None = None,
                     options: dict[str, Any] | None = None,
                     on_progress: TokenizeProgress | None = None) -> datasets.DatasetDict:
    """Tokenise every split in batches with the task's encoder; no padding (the collator pads each batch).

    NER rows become input_ids, attention_mask, (token_type_ids), labels, word_ids (-1 for special
    tokens, relative to the window), sentence_id (the row's index in its split as given),
    word_offset (the window's first word in the sentence) and length; classification rows
    input_ids, attention_mask, (token_type_ids), labels and length. The canonical DatasetDict is
    not changed. With ``cache_dir`` each split is written there (memory-mapped, reused when the
    same data, tokenizer, labels and max_length come again: the key hashes the split's Arrow
    content, see `content_key`, so a second launch in another process finds it). ``options`` are the
    task's encoder options (``Task.encoder_options(config)``, e.g. SFT's train_on). ``on_progress``
    hears how far each split is, after every batch (the caller throttles what it shows).
    """
    options = dict(options or {})
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
        function = task.encoder(tokenizer, label2id, max_length, **options)
        fingerprint = _fingerprint(dataset, tokenizer, label2id, task.name, max_length, options)
        cache_file = str(Path(cache_dir) / f"{split}-{fingerprint}.arrow") if cache_dir else None
        if cache_dir:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
        if on_progress is not None:
            cached = cache_file is not None and datasets.is_caching_enabled() and Path(cache_file).is_file()
            on_progress(split, len(dataset) if cached else 0, len(dataset), cached)
            function = _counting(function, split, len(dataset), on_progress)
        tokenized[split] = dataset.map(
            function, batched=True, with_indices=task.encoder_takes_indices, remove_columns=dataset.column_names,
            new_fingerprint=fingerprint, cache_file_name=cache_file, desc=f"Tokenizing {split}",
        )
    return datasets.DatasetDict(tokenized)


def _counting(function: Callable[..., Any], split: str, total: int, on_progress: TokenizeProgress) -> Callable[..., Any]:
    """``function`` (a batched map function), telling ``on_progress`` how many rows it has encoded so far."""
    done = 0

    def encode(batch: dict[str, list], *args: Any, **kwargs: Any) -> Any:
        nonlocal done
        result = function(batch, *args, **kwargs)
        done = min(total, done + len(next(iter(batch.values()), ())))
        on_progress(split, done, total, False)
        return result

    return encode


def content_key(dataset: datasets.Dataset) -> str:
    """A hash of what ``dataset`` holds: its Arrow buffers (and its row selection), not how it was made.

    ``dataset._fingerprint`` is datasets' own name for the state; it is content-based for tables
    built in memory in datasets 5 but random wherever a transform cannot be hashed, and its policy
    is datasets' to change. Hashing the buffers is cheap (milliseconds for CoNLL-2003's train split:
    3 MB) and the same in every process that reads the same data the same way, so a second launch
    finds the tokenised split of the first.
    """
    digest = hashlib.sha256()
    tables = [dataset.data.table] + ([dataset._indices.table] if dataset._indices is not None else [])
    for table in tables:
        digest.update(f"{table.schema}|{table.num_rows}".encode())
        for column in table.columns:
            for chunk in column.chunks:
                digest.update(f"|{chunk.type}:{chunk.offset}:{len(chunk)}".encode())
                for buffer in chunk.buffers():
                    digest.update(b"-" if buffer is None else buffer)
    return digest.hexdigest()[:32]


def _fingerprint(dataset: datasets.Dataset, tokenizer: Any, label2id: dict[str, int], task: str,
                 max_length: int, options: dict[str, Any] | None = None) -> str:
    """A name for the tokenised split that changes whenever its content would (the chat template included)."""
    template = getattr(tokenizer, "chat_template", None)
    key = json.dumps([_TOKENIZE_VERSION, content_key(dataset), tokenizer.name_or_path, len(tokenizer),
                      type(tokenizer).__name__, label2id, task, max_length, options or {},
                      hashlib.sha256(str(template).encode()).hexdigest() if template else None], sort_keys=True,
                     default=str)
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
