"""Data from where users keep it: AutoTrain-style CSVs, Parquet, hub datasets with a subset, a
revision and their own split names, and GLUE-style unlabelled test splits."""

from __future__ import annotations

import json

import datasets
import pandas as pd
import pytest

import ftkit
from ftkit.config import DataConfig
from ftkit.tasks.loading import load, load_source, load_splits
from ftkit.errors import DataError

SST2_LABELS = datasets.ClassLabel(names=["negative", "positive"])


def test_autotrain_ner_csv_cells_hold_python_style_lists(tmp_path):
    path = tmp_path / "train.csv"
    pd.DataFrame({"tokens": [["EU", "rejects", "O'Neil"], ["Paris"]],
                  "tags": [["B-ORG", "O", "B-PER"], ["B-LOC"]]}).astype(str).to_csv(path, index=False)
    assert path.read_text().splitlines()[1].startswith("\"['EU', 'rejects', \"\"O'Neil\"\"]\"")
    dataset = load_source(path, "ner")
    assert dataset["tokens"] == [["EU", "rejects", "O'Neil"], ["Paris"]]
    assert dataset["tags"] == [["B-ORG", "O", "B-PER"], ["B-LOC"]]


def test_a_cell_that_only_looks_like_a_list_is_never_evaluated(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('tokens,tags\n"[__import__(\'os\').getcwd()]",O\n')
    assert load_source(path, "ner")["tokens"] == [["[__import__('os').getcwd()]"]]  # read as a word, never run


def test_parquet_files_load_with_their_class_names(tmp_path):
    train = datasets.Dataset.from_dict({"sentence": ["good", "bad", "fine"], "label": [1, 0, 1]},
                                       features=datasets.Features({"sentence": datasets.Value("string"),
                                                                   "label": SST2_LABELS}))
    train.to_parquet(tmp_path / "train.parquet")
    pd.DataFrame({"text": ["awful"], "label": ["negative"]}).to_parquet(tmp_path / "test.parquet")
    splits = load_splits(DataConfig(train=str(tmp_path / "train.parquet"), test=str(tmp_path / "test.parquet"),
                                    validation_fraction=0.34), "classification")
    assert sorted([*splits["train"]["label"], *splits["validation"]["label"]]) == ["negative", "positive", "positive"]
    assert list(splits["test"]["label"]) == ["negative"]


def test_a_bad_parquet_file_names_the_file(tmp_path):
    path = tmp_path / "train.parquet"
    path.write_text("not parquet")
    with pytest.raises(DataError, match=r"train\.parquet: not a readable Parquet file"):
        load_source(path, "classification")


def glue_like() -> datasets.DatasetDict:
    features = datasets.Features({"sentence": datasets.Value("string"), "label": SST2_LABELS})
    return datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"sentence": ["good film", "bad film", "great", "awful"],
                                             "label": [1, 0, 1, 0]}, features=features),
        "validation_matched": datasets.Dataset.from_dict({"sentence": ["fine", "poor"], "label": [1, 0]},
                                                          features=features),
        "test": datasets.Dataset.from_dict({"sentence": ["who knows", "no idea"], "label": [-1, -1]},
                                           features=features),
    })


def test_hub_ids_take_a_subset_a_revision_and_split_names(monkeypatch):
    calls = []

    def fake_load_dataset(name, subset=None, revision=None):
        calls.append((name, subset, revision))
        return glue_like()

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    splits = load_splits(DataConfig(train="nyu-mll/glue", subset="mnli", revision="v1",
                                    split_names={"validation": "validation_matched"}), "classification")
    assert calls == [("nyu-mll/glue", "mnli", "v1")]
    assert list(splits["validation"]["text"]) == ["fine", "poor"]
    with pytest.raises(DataError, match="no split 'validation_mismatched'.*train, validation_matched, test"):
        load_splits(DataConfig(train="nyu-mll/glue", split_names={"validation": "validation_mismatched"}),
                    "classification")


def test_offline_hub_datasets_say_what_was_asked_for_and_how_to_use_local_files(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as error:
        load("nyu-mll/glue", "classification", subset="sst2", revision="main")
    message = str(error.value)
    assert "'nyu-mll/glue', subset 'sst2', revision 'main'" in message
    assert "save_to_disk" in message and "data.train: path/to/train" in message


def test_glue_test_labels_of_minus_one_are_unlabelled_not_a_label():
    splits = load(glue_like(), "classification", split_names={"validation": "validation_matched"})
    assert list(splits["test"]["label"]) == [None, None]
    assert ftkit.tasks.alignment.label_list(splits, "classification") == ["negative", "positive"]
    stats = ftkit.data_stats(glue_like(), "classification")
    assert stats.splits["test"].label_counts == {"(unlabelled)": 2}


def test_an_unlabelled_row_in_train_is_an_error_naming_it():
    data = glue_like()
    features = data["train"].features
    data["train"] = datasets.Dataset.from_dict({"sentence": ["good", "??"], "label": [1, -1]}, features=features)
    with pytest.raises(DataError, match="example 1: train split: this row has no label"):
        load(data, "classification")


@pytest.mark.slow
def test_a_run_predicts_an_unlabelled_test_split_without_scoring_it(tiny_model_dir, runs_dir, tmp_path):
    glue_like().save_to_disk(tmp_path / "glue")
    run = ftkit.train({"task": "classification", "model": str(tiny_model_dir),
                       "data": {"train": str(tmp_path / "glue"), "split_names": {"validation": "validation_matched"}},
                       "training": {"max_steps": 2, "batch_size": 2}})
    run.wait(timeout=300)
    assert run.status == "completed", run.error or run.log_tail()
    assert run.metrics["test"]["unlabelled_examples"] == 2 and "accuracy" not in run.metrics["test"]
    rows = [json.loads(line) for line in (run.dir / "predictions" / "test.jsonl").read_text().splitlines()]
    assert [row["label"] for row in rows] == [None, None]
    assert all(row["predicted"] in ("negative", "positive") for row in rows)
