"""Every malformed input is a DataError naming the file and line, never a library traceback."""

from __future__ import annotations

import pytest

from ftkit.config import DataConfig
from ftkit.tasks.loading import load, load_source, load_splits
from ftkit.errors import DataError


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return str(path)


def data_error(call, *args, **kwargs) -> DataError:
    with pytest.raises(DataError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_missing_file_says_it_does_not_exist(tmp_path):
    error = data_error(load_source, str(tmp_path / "nope.conll"), "ner")
    assert "does not exist" in str(error) and error.path.endswith("nope.conll")


def test_ragged_conll_row_names_the_line(tmp_path):
    path = write(tmp_path / "a.conll", "EU NNP I-NP B-ORG\nrejects VBZ O\n")
    error = data_error(load_source, path, "ner")
    assert (error.path, error.line) == (path, 2)
    assert "3 columns" in error.reason and "4" in error.reason


def test_tokens_only_line_in_a_four_column_file_is_ragged(tmp_path):
    path = write(tmp_path / "a.conll", "-DOCSTART- -X- O O\n\nEU NNP I-NP B-ORG\n\nrejects\n")
    error = data_error(load_source, path, "ner")
    assert error.line == 5 and "1 column here" in error.reason


def test_single_column_conll_file_needs_tags(tmp_path):
    path = write(tmp_path / "a.conll", "EU\nrejects\n")
    assert data_error(load_source, path, "ner").line == 1


def test_csv_row_with_wrong_field_count(tmp_path):
    path = write(tmp_path / "a.csv", "text,label\ngood,1\ngood, really,1\n")
    error = data_error(load_source, path, "classification")
    assert (error.path, error.line) == (path, 3) and "3 fields" in error.reason


def test_missing_tag_column_names_found_and_expected_columns(tmp_path):
    path = write(tmp_path / "a.jsonl", '{"tokens": ["a"], "pos": ["DT"]}\n')
    error = data_error(load_source, path, "ner")
    assert error.path == path
    assert "tokens, pos" in error.reason and "ner_tags" in error.reason


def test_missing_text_column_for_classification(tmp_path):
    path = write(tmp_path / "a.csv", "body,label\nfine,1\n")
    error = data_error(load_source, path, "classification")
    assert "body, label" in error.reason and "sentence" in error.reason


def test_empty_file(tmp_path):
    path = write(tmp_path / "a.conll", "\n\n")
    error = data_error(load_source, path, "ner")
    assert error.path == path and "no examples" in error.reason


def test_file_with_only_docstart_has_no_examples(tmp_path):
    path = write(tmp_path / "a.conll", "-DOCSTART- -X- O O\n\n")
    assert "no examples" in data_error(load_source, path, "ner").reason


def test_csv_with_only_a_header_has_no_examples(tmp_path):
    path = write(tmp_path / "a.csv", "text,label\n")
    assert "no examples" in data_error(load_source, path, "classification").reason


def test_non_utf8_file_names_line_and_suggests_iconv(tmp_path):
    path = write(tmp_path / "a.conll", "EU B-ORG\n\nCafé B-LOC\n", encoding="latin-1")
    error = data_error(load_source, path, "ner")
    assert error.line == 3 and "0xe9" in error.reason and "iconv" in error.reason


def test_invalid_json_line(tmp_path):
    path = write(tmp_path / "a.jsonl", '{"text": "ok", "label": 1}\n\n{"text": "broken", \n')
    error = data_error(load_source, path, "classification")
    assert (error.path, error.line) == (path, 3) and "invalid JSON" in error.reason


def test_tag_without_prefix_is_named_with_its_line(tmp_path):
    path = write(tmp_path / "a.conll", "EU B-ORG\n\nJohn B-PER\nSmith PER\n")
    error = data_error(load_source, path, "ner")
    assert error.line == 4 and "'PER'" in error.reason and "B-PER" in error.reason


def test_bioes_tag_in_declared_iob2_data(tmp_path):
    path = write(tmp_path / "a.conll", "EU B-ORG\nJohn S-PER\n")
    error = data_error(load_source, path, "ner", tag_scheme="iob2")
    assert error.line == 2 and "S-PER" in error.reason


def test_token_and_tag_counts_must_match(tmp_path):
    path = write(tmp_path / "a.jsonl", '{"tokens": ["a", "b"], "tags": ["O"]}\n')
    error = data_error(load_source, path, "ner")
    assert error.line == 1 and "2 tokens but 1 tags" in error.reason


def test_integer_tags_without_names(tmp_path):
    path = write(tmp_path / "a.jsonl", '{"tokens": ["a"], "tags": [3]}\n')
    assert "data.labels" in data_error(load_source, path, "ner").reason


def test_missing_label_value(tmp_path):
    path = write(tmp_path / "a.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n')
    assert data_error(load_source, path, "classification").line == 2


def test_validation_label_not_in_train_names_split_label_and_line(tmp_path):
    train = write(tmp_path / "train.conll", "John B-PER\n\nParis B-LOC\n")
    validation = write(tmp_path / "valid.conll", "John B-PER\n\nthe O\nOlympics B-EVENT\n")
    error = data_error(load_splits, DataConfig(train=train, validation=validation), "ner")
    assert (error.path, error.line) == (validation, 4)
    assert "validation" in error.reason and "EVENT" in error.reason


def test_test_label_not_in_train_for_classification(tmp_path):
    train = write(tmp_path / "train.csv", "text,label\na,pos\nb,neg\n")
    test = write(tmp_path / "test.csv", "text,label\nc,pos\nd,neutral\n")
    error = data_error(load_splits, DataConfig(train=train, validation=train, test=test), "classification")
    assert (error.path, error.line) == (test, 3) and "'neutral'" in error.reason and "test" in error.reason


def test_label_outside_given_labels(tmp_path):
    train = write(tmp_path / "train.csv", "text,label\na,pos\nb,neg\n")
    error = data_error(load_splits, DataConfig(train=train, labels=["pos"]), "classification")
    assert error.line == 3 and "data.labels" in error.reason


def test_in_memory_errors_name_the_example():
    error = data_error(load_source, [{"tokens": ["a"], "tags": ["O"]}, {"tokens": ["b"], "tags": ["X"]}], "ner")
    assert "example 1" in str(error) and "'X'" in str(error)


def test_no_train_split_configured():
    assert "data.train" in str(data_error(load_splits, DataConfig(), "ner"))


def test_hub_id_offline_says_how_to_use_local_files(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    error = data_error(load, "someone/some-dataset")
    message = str(error)
    assert "could not reach the Hugging Face hub" in message
    assert "data.train: path/to/train.conll" in message and "format: conll" in message


def test_unreadable_source_type():
    assert "cannot read data from a int" in str(data_error(load_source, 42, "ner"))


def test_empty_in_memory_split():
    error = data_error(load, [], "classification")
    assert "train split" in str(error) and "no examples" in str(error)


def test_missing_column_in_a_dataframe_names_the_columns():
    import pandas as pd

    error = data_error(load_source, pd.DataFrame({"body": ["x"], "label": [1]}), "classification")
    assert str(error).startswith("the DataFrame: missing the text column: found columns body, label")
