"""Loading every kind of source into canonical DatasetDicts (formats, columns, splits)."""

from __future__ import annotations

import json
import time

import datasets
import pandas as pd

from .conftest import CONLL_DIR, SST2_DIR
from ftkit.config import DataConfig
from ftkit.data import guess_format, subset
from ftkit.tasks.loading import load, load_source, load_splits


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


# ----- CoNLL -------------------------------------------------------------------------------------


def test_conll_sample_loads_as_iob2_without_docstart(conll_sample):
    dataset = load_source(conll_sample, "ner")
    assert dataset.column_names == ["tokens", "tags"]
    assert len(dataset) == 3
    assert dataset[0]["tokens"][:3] == ["EU", "rejects", "German"]
    assert dataset[0]["tags"][:3] == ["B-ORG", "O", "B-MISC"]
    assert dataset[1]["tags"] == ["B-PER", "I-PER"]
    assert dataset[2]["tags"][:3] == ["B-PER", "B-PER", "I-PER"]  # IOB1 B- between adjacent PERs stays B-


def test_conll_with_tabs_crlf_and_no_final_blank_line(tmp_path):
    path = write(tmp_path / "data.conll", "New\tNNP\tB-LOC\r\nYork\tNNP\tI-LOC\r\n\r\nhi\tUH\tO")
    dataset = load_source(path, "ner")
    assert dataset["tokens"] == [["New", "York"], ["hi"]]
    assert dataset["tags"] == [["B-LOC", "I-LOC"], ["O"]]


def test_conll_tag_column_picks_another_column(tmp_path):
    path = write(tmp_path / "data.conll", "EU B-ORG x\nsaid O x\n")
    assert load_source(path, "ner", tag_column=1)["tags"] == [["B-ORG", "O"]]


def test_docstart_lines_are_skipped_whatever_their_width(tmp_path):
    path = write(tmp_path / "data.conll", "-DOCSTART- -X- -X- O\n\nEU NNP I-NP I-ORG\n-DOCSTART-\nhi UH O O\n")
    assert load_source(path, "ner")["tokens"] == [["EU"], ["hi"]]


def test_bioes_file_is_converted_to_iob2(tmp_path):
    path = write(tmp_path / "data.bioes", "John S-PER\nNew B-LOC\nYork E-LOC\n")
    assert load_source(path, "ner")["tags"] == [["B-PER", "B-LOC", "I-LOC"]]


def test_a_txt_file_is_read_as_conll(conll_sample, tmp_path):
    path = write(tmp_path / "train.txt", conll_sample.read_text())
    assert guess_format(path) == "conll"
    assert len(load(path)["train"]) == 3


# ----- JSON Lines, CSV, TSV ------------------------------------------------------------------------


def test_jsonl_with_guessed_column_names(tmp_path):
    rows = [{"words": ["John", "lives"], "ner_tags": ["B-PER", "O"], "id": 1},
            {"words": ["Paris"], "ner_tags": ["B-LOC"], "id": 2}]
    path = write(tmp_path / "data.jsonl", "\n".join(json.dumps(row) for row in rows) + "\n\n")
    dataset = load_source(path, "ner")
    assert dataset.column_names == ["tokens", "tags"]
    assert dataset["tags"] == [["B-PER", "O"], ["B-LOC"]]


def test_jsonl_classification_keeps_labels_as_strings(tmp_path):
    path = write(tmp_path / "data.jsonl", '{"review": "great", "category": 1}\n{"review": "bad", "category": 0}\n')
    dataset = load_source(path, "classification")
    assert dataset["text"] == ["great", "bad"] and dataset["label"] == ["1", "0"]


def test_json_array_file(tmp_path):
    path = write(tmp_path / "data.json", json.dumps([{"text": "ok", "label": "positive"}]))
    assert load_source(path, "classification")["label"] == ["positive"]


def test_given_column_names_win(tmp_path):
    path = write(tmp_path / "data.jsonl", '{"body": "fine", "stars": "5", "label": "x"}\n')
    dataset = load_source(path, "classification", text_column="body", label_column="stars")
    assert dataset["label"] == ["5"]


def test_csv_classification_with_quoted_commas(tmp_path):
    path = write(tmp_path / "data.csv", 'text,label\n"good, really",positive\nbad,negative\n')
    dataset = load_source(path, "classification")
    assert dataset["text"] == ["good, really", "bad"]


def test_csv_ner_with_space_separated_or_json_lists(tmp_path):
    path = write(tmp_path / "data.csv", 'tokens,tags\nJohn lives,B-PER O\n"[""Paris""]","[""B-LOC""]"\n')
    assert load_source(path, "ner")["tags"] == [["B-PER", "O"], ["B-LOC"]]


def test_tsv_classification(tmp_path):
    path = write(tmp_path / "data.tsv", 'sentence\tlabel\nit\'s "fine"\t1\n')
    dataset = load_source(path, "classification")
    assert dataset["text"] == ['it\'s "fine"'] and dataset["label"] == ["1"]


def test_sst2_tsv_loads_with_text_and_label():
    splits = load(SST2_DIR / "train.tsv", "classification", validation=SST2_DIR / "dev.tsv")
    assert splits["train"].column_names == ["text", "label"]
    assert (len(splits["train"]), len(splits["validation"])) == (6920, 872)
    assert set(splits["train"]["label"]) == {"0", "1"}


# ----- in-memory and saved datasets ---------------------------------------------------------------


def test_dataframe_source():
    frame = pd.DataFrame({"sentence": ["good", "bad"], "label": [1, 0]})
    assert load_source(frame, "classification")["label"] == ["1", "0"]


def test_list_of_rows_and_pair_of_lists():
    rows = [{"tokens": ["John"], "tags": ["I-PER"]}]
    assert load_source(rows, "ner")["tags"] == [["B-PER"]]
    pair = ([["John", "Smith"]], [["B-PER", "I-PER"]])
    assert load(pair, "ner")["train"]["tokens"] == [["John", "Smith"]]


def test_dataset_with_classlabel_tag_ids_maps_them_to_names():
    features = datasets.Features({"tokens": datasets.List(datasets.Value("string")),
                                  "ner_tags": datasets.List(datasets.ClassLabel(names=["O", "B-PER", "I-PER"]))})
    dataset = datasets.Dataset.from_dict({"tokens": [["John", "Smith", "ran"]], "ner_tags": [[1, 2, 0]]}, features=features)
    assert load_source(dataset, "ner")["tags"] == [["B-PER", "I-PER", "O"]]


def test_integer_tags_without_names_use_data_labels():
    dataset = load_source([{"tokens": ["John"], "tags": [1]}], "ner", labels=["O", "B-PER"])
    assert dataset["tags"] == [["B-PER"]]


def test_hf_disk_folder_with_dev_split_and_classlabel(tmp_path):
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    saved = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}, features=features),
        "dev": datasets.Dataset.from_dict({"text": ["c"], "label": [1]}, features=features),
    })
    saved.save_to_disk(tmp_path / "saved")
    assert guess_format(tmp_path / "saved") == "hf-disk"
    splits = load_splits(DataConfig(train=str(tmp_path / "saved")), "classification")
    assert list(splits) == ["train", "validation"]
    assert splits["validation"]["label"] == ["pos"]


def test_folder_of_split_files(tmp_path, conll_sample):
    for name in ("train.conll", "dev.conll", "test.conll"):
        write(tmp_path / name, conll_sample.read_text())
    assert list(load(tmp_path)) == ["train", "validation", "test"]


def test_guess_format():
    assert guess_format(SST2_DIR / "dev.tsv") == "tsv"
    assert guess_format(CONLL_DIR / "valid.txt") == "conll"
    assert guess_format("user/name") == "hub"
    assert guess_format("conll2003") == "hub"


# ----- splits -------------------------------------------------------------------------------------


def _many_sentences(tmp_path, count=50):
    text = "".join(f"w{i} B-PER\nx O\n\n" for i in range(count))
    return write(tmp_path / "train.conll", text)


def test_load_splits_reads_train_validation_and_test(tmp_path, conll_sample):
    config = DataConfig(train=str(conll_sample), validation=str(conll_sample), test=str(conll_sample))
    splits = load_splits(config, "ner")
    assert {name: len(split) for name, split in splits.items()} == {"train": 3, "validation": 3, "test": 3}


def test_held_out_validation_is_seeded_and_deterministic(tmp_path):
    config = DataConfig(train=str(_many_sentences(tmp_path)), validation_fraction=0.2)
    first, again = load_splits(config, "ner", seed=1), load_splits(config, "ner", seed=1)
    other = load_splits(config, "ner", seed=2)
    assert (len(first["train"]), len(first["validation"])) == (40, 10)
    assert first["validation"]["tokens"] == again["validation"]["tokens"]
    assert first["validation"]["tokens"] != other["validation"]["tokens"]
    held = {tuple(t) for t in first["validation"]["tokens"]}
    assert held.isdisjoint(tuple(t) for t in first["train"]["tokens"])


def test_subset_is_seeded(tmp_path):
    dataset = load_source(_many_sentences(tmp_path), "ner")
    assert subset(dataset, 5, seed=3)["tokens"] == subset(dataset, 5, seed=3)["tokens"]
    assert len(subset(dataset, 5, seed=3)) == 5
    assert subset(dataset, None, seed=3) is dataset


def test_full_conll_train_loads_fast():
    start = time.perf_counter()
    splits = load_splits(DataConfig(train=str(CONLL_DIR / "train.txt"), validation=str(CONLL_DIR / "valid.txt")), "ner")
    assert time.perf_counter() - start < 5
    assert len(splits["train"]) == 14041
    assert set(tag for tags in splits["train"]["tags"] for tag in tags) == {
        "O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"}
