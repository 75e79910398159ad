"""Label sets, tokenisation and word/subword alignment, including windows for long sentences."""

from __future__ import annotations

import time
from collections import defaultdict

import datasets
import pytest

from .conftest import CONLL_DIR
from ftkit.errors import DataError, FtkitError
from ftkit.tasks.alignment import id_maps, label_list, tokenize_dataset, word_windows
from ftkit.tasks.loading import load


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model_dir):
    """The tiny model's WordPiece vocab: known words whole, every other word in letter pieces."""
    from transformers import BertTokenizerFast

    # Built from vocab.txt with `vocab=` (transformers 5 ignores `vocab_file=`, which left the
    # saved tokenizer with only the five special tokens).
    tokenizer = BertTokenizerFast(vocab=str(tiny_model_dir / "vocab.txt"), do_lower_case=True)
    assert tokenizer.tokenize("Xylophonist") == ["x", "##y", "##l", "##o", "##p", "##h", "##o", "##n", "##i", "##s", "##t"]
    return tokenizer


def tokenized(splits, tokenizer, task="ner", max_length=128, **kwargs):
    label2id, _ = id_maps(label_list(splits, task))
    return tokenize_dataset(splits, tokenizer, label2id, task, max_length, **kwargs), label2id


def test_ner_label_list_has_o_first_and_b_and_i_for_every_type():
    splits = load(([["John", "in", "Paris"]], [["B-PER", "O", "B-LOC"]]), "ner")
    assert label_list(splits, "ner") == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_classification_label_list_is_sorted_numbers_first():
    splits = load((["a", "b", "c", "d"], ["10", "2", "neg", "2"]), "classification")
    assert label_list(splits, "classification") == ["2", "10", "neg"]


def test_given_labels_are_kept_and_need_o_for_ner():
    splits = load(([["a"]], [["O"]]), "ner")
    assert label_list(splits, "ner", given=["O", "B-X", "I-X"]) == ["O", "B-X", "I-X"]
    with pytest.raises(DataError, match="'O'"):
        label_list(splits, "ner", given=["B-X"])


def test_only_the_first_subword_of_a_word_carries_its_label(conll_sample, tiny_tokenizer):
    splits = load(conll_sample)
    output, label2id = tokenized(splits, tiny_tokenizer)
    row = output["train"][2]  # Xylophonist John Smith lives in New York .
    tokens = splits["train"][2]["tokens"]
    tags = splits["train"][2]["tags"]
    assert row["word_ids"][:12] == [-1] + [0] * 11  # "xylophonist" is eleven letter pieces
    assert row["labels"][:13] == [-100, label2id["B-PER"]] + [-100] * 10 + [label2id["B-PER"]]
    previous = None
    for word, label in zip(row["word_ids"], row["labels"]):
        first_piece = word != -1 and word != previous
        assert label == (label2id[tags[word]] if first_piece else -100)
        previous = word
    assert row["word_ids"][0] == row["word_ids"][-1] == -1  # [CLS] ... [SEP]
    assert {w for w in row["word_ids"] if w >= 0} == set(range(len(tokens)))
    assert (row["sentence_id"], row["word_offset"], row["length"]) == (2, 0, len(row["input_ids"]))


def test_tokenized_rows_have_the_model_columns_and_no_text(conll_sample, tiny_tokenizer):
    splits = load(conll_sample)
    output, _ = tokenized(splits, tiny_tokenizer)
    assert set(output["train"].column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels",
                                                 "word_ids", "sentence_id", "word_offset", "length"}
    assert splits["train"].column_names == ["tokens", "tags"]  # the caller keeps the words
    assert all(len(ids) == length for ids, length in zip(output["train"]["input_ids"], output["train"]["length"]))


def test_long_sentence_becomes_windows_covering_every_word_once(tiny_tokenizer):
    words = [("the", "xylophonist", "Brussels", "quartz", "a")[i % 5] for i in range(300)]
    tags = [("O", "B-PER", "B-LOC", "I-LOC", "O")[i % 5] for i in range(300)]
    splits = load(([["short"], words], [["O"], tags]), "ner")
    output, label2id = tokenized(splits, tiny_tokenizer, max_length=32)
    windows = [row for row in output["train"] if row["sentence_id"] == 1]
    assert len(windows) > 1
    assert all(len(row["input_ids"]) <= 32 for row in windows)
    covered = defaultdict(int)
    for row in windows:
        previous = None
        for word, label in zip(row["word_ids"], row["labels"]):
            if word != -1 and word != previous:
                covered[row["word_offset"] + word] += 1
                assert label == label2id[tags[row["word_offset"] + word]]
            previous = word
    assert dict(covered) == {index: 1 for index in range(300)}
    offsets = [row["word_offset"] for row in windows]
    assert offsets == sorted(offsets) and offsets[0] == 0


def test_a_word_longer_than_the_limit_is_truncated_but_keeps_its_label(tiny_tokenizer):
    splits = load(([["john", "x" * 40, "smith"]], [["B-PER", "B-MISC", "B-PER"]]), "ner")
    output, label2id = tokenized(splits, tiny_tokenizer, max_length=16)
    rows = list(output["train"])
    assert [row["word_offset"] for row in rows] == [0, 1, 2]
    assert len(rows[1]["input_ids"]) == 16
    assert rows[1]["labels"][1] == label2id["B-MISC"] and rows[1]["labels"][2:] == [-100] * 14


def test_word_windows_are_greedy_and_whole_word():
    assert word_windows([3, 3, 3, 9, 1], budget=6) == [(0, 2), (2, 3), (3, 4), (4, 5)]


def test_classification_tokenizes_with_truncation_and_label_ids(tiny_tokenizer):
    splits = load((["good movie", "bad " * 100], ["1", "0"]), "classification")
    output, label2id = tokenized(splits, tiny_tokenizer, task="classification", max_length=16)
    rows = output["train"]
    assert rows["labels"] == [label2id["1"], label2id["0"]]
    assert rows["length"] == [4, 16]
    assert "text" not in rows.column_names


def test_unknown_label_in_validation_names_split_and_example(tiny_tokenizer):
    rows = {"train": {"tokens": [["a"]], "tags": [["B-PER"]]},
            "validation": {"tokens": [["b"], ["c"]], "tags": [["O"], ["B-LOC"]]}}
    splits = datasets.DatasetDict({name: datasets.Dataset.from_dict(columns) for name, columns in rows.items()})
    with pytest.raises(DataError, match="validation split, example 1: label 'B-LOC'"):
        tokenize_dataset(splits, tiny_tokenizer, {"O": 0, "B-PER": 1, "I-PER": 2}, "ner", 32)


def test_slow_tokenizer_is_refused(conll_sample):
    class SlowTokenizer:
        is_fast = False

    with pytest.raises(FtkitError, match="fast"):
        tokenize_dataset(load(conll_sample), SlowTokenizer(), {"O": 0}, "ner", 32)


def test_cache_dir_writes_memory_mapped_splits_and_reuses_them(conll_sample, tiny_tokenizer, tmp_path):
    splits = load(conll_sample)
    first, _ = tokenized(splits, tiny_tokenizer, cache_dir=tmp_path)
    files = [entry["filename"] for entry in first["train"].cache_files]
    assert files and files[0].startswith(str(tmp_path))
    again, _ = tokenized(splits, tiny_tokenizer, cache_dir=tmp_path)
    assert [entry["filename"] for entry in again["train"].cache_files] == files
    assert again["train"]["input_ids"] == first["train"]["input_ids"]


def test_tokenising_reports_counts_per_split_and_a_second_time_comes_from_the_cache(tmp_path, tiny_tokenizer):
    from .conftest import write_conll

    splits = load(write_conll(tmp_path / "train.txt", 50, 1), validation=write_conll(tmp_path / "valid.txt", 7, 2))
    heard: list[tuple] = []
    tokenized(splits, tiny_tokenizer, cache_dir=tmp_path / "cache", on_progress=lambda *args: heard.append(args))
    for split, total in (("train", 50), ("validation", 7)):
        counts = [(done, cached) for name, done, n, cached in heard if name == split]
        assert counts[0] == (0, False) and counts[-1] == (total, False)  # from nothing to every row
        assert all(n == total for name, _, n, _ in heard if name == split)
    files = {f: f.stat().st_mtime_ns for f in (tmp_path / "cache").glob("*.arrow")}
    assert len(files) == 2

    heard.clear()
    again, _ = tokenized(splits, tiny_tokenizer, cache_dir=tmp_path / "cache", on_progress=lambda *args: heard.append(args))
    assert heard == [("train", 50, 50, True), ("validation", 7, 7, True)]  # a cache hit, and nothing encoded again
    assert {f: f.stat().st_mtime_ns for f in (tmp_path / "cache").glob("*.arrow")} == files
    assert [c["filename"] for c in again["train"].cache_files] == [str(f) for f in files if f.name.startswith("train")]


def test_the_cache_key_is_the_data_content_the_same_in_another_process(tmp_path, conll_sample):
    """datasets' own fingerprint is not the key (its policy may make it random per process); the Arrow content is."""
    import subprocess
    import sys

    from ftkit.tasks.alignment import content_key

    code = ("import sys; from ftkit.tasks.loading import load; from ftkit.tasks.alignment import content_key; "
            "print(content_key(load(sys.argv[1])['train']))")
    other = subprocess.run([sys.executable, "-c", code, str(conll_sample)], capture_output=True, text=True, check=True)
    here = load(conll_sample)["train"]
    assert other.stdout.strip() == content_key(here)
    assert content_key(here.select([0, 1])) != content_key(here)  # a row selection is part of the content
    changed = conll_sample.read_text().replace("Peter", "Pieter")
    (tmp_path / "changed.conll").write_text(changed)
    assert content_key(load(tmp_path / "changed.conll")["train"]) != content_key(here)


def test_conll_train_tokenizes_in_seconds_with_the_default_model():
    from transformers import AutoTokenizer

    from ftkit.engine.models import default_model_dir

    tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    splits = load(CONLL_DIR / "train.txt")
    start = time.perf_counter()
    output, _ = tokenized(splits, tokenizer, max_length=256)
    assert time.perf_counter() - start < 20
    assert len(set(output["train"]["sentence_id"])) == 14041
