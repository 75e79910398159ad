"""The config schema: one source of truth for every surface, strict about mistakes."""

from __future__ import annotations

import json

import pytest

from ftkit.config import Config, load_config, parse_value, schema_fields
from ftkit.errors import ConfigError

ISSUE_EXAMPLE = """\
# conll.yaml — `ftkit train conll.yaml`
name: conll-minilm-lora
task: ner                    # ner | classification | sft
model: default               # or a local model directory or hub id
data:
  train: ../shared/data/conll2003/train.txt
  validation: ../shared/data/conll2003/valid.txt
  test: ../shared/data/conll2003/test.txt
  format: conll              # conll | jsonl | csv | tsv | hf-disk | hub; guessed from the file when omitted
adapter:
  kind: lora                 # full | head | lora
  r: 16
  alpha: 32
training:
  epochs: 3
  learning_rate: 5.0e-4
  batch_size: 32
  max_train_samples: null    # an int takes a seeded subset
output:
  dir: ./ftkit-runs
"""


def test_the_documented_example_loads_and_resolves_paths_against_the_config_folder(tmp_path):
    (tmp_path / "project").mkdir()
    path = tmp_path / "project" / "conll.yaml"
    path.write_text(ISSUE_EXAMPLE)
    config = load_config(path)
    assert config.name == "conll-minilm-lora"
    assert config.adapter.kind == "lora" and config.adapter.r == 16
    assert config.training.learning_rate == 5e-4
    assert config.data.train == str((tmp_path / "shared/data/conll2003/train.txt").resolve())
    assert config.output.dir == str((tmp_path / "project" / "ftkit-runs").resolve())


def test_overrides_set_nested_keys_with_yaml_typed_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(ISSUE_EXAMPLE)
    config = load_config(path, overrides=["training.epochs=1", "adapter.kind=full", "training.learning_rate=1e-4"])
    assert config.training.epochs == 1.0
    assert config.adapter.kind == "full"
    assert config.training.learning_rate == pytest.approx(1e-4)


def test_dict_json_keywords_and_config_give_the_same_config(tmp_path):
    as_dict = {"task": "classification", "training": {"epochs": 2, "batch_size": 16}}
    (tmp_path / "c.json").write_text(json.dumps(as_dict))
    from_kwargs = load_config(task="classification", training={"epochs": 2, "batch_size": 16})
    dotted = load_config(task="classification", training__epochs=2, training__batch_size=16)
    assert load_config(as_dict) == load_config(tmp_path / "c.json") == from_kwargs == dotted
    assert load_config(from_kwargs) == from_kwargs
    assert Config.from_dict(from_kwargs.to_dict()) == from_kwargs


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"trainig": {}}, ["unknown key 'trainig'", "Did you mean 'training'?"]),
        ({"training": {"learnig_rate": 1}}, ["unknown key 'training.learnig_rate'", "learning_rate"]),
        ({"task": "nerr"}, ["'task' must be one of ner, classification, sft, dpo, orpo, kto;", "Did you mean 'ner'?"]),
        ({"adapter": {"kind": "loar"}}, ["'adapter.kind' must be one of full, head, lora", "Did you mean 'lora'?"]),
        ({"training": {"epochs": "many"}}, ["'training.epochs' must be a number", "'many'"]),
        ({"training": {"epochs": 0}}, ["'training.epochs' must be a positive number"]),
        ({"training": {"batch_size": "big"}}, ["'training.batch_size'", "'auto'"]),
        ({"training": {"learning_rate": 5}}, ["'training.learning_rate' must be between 0 and 1"]),
        ({"training": {"group_by_length": "yes please"}}, ["'training.group_by_length' must be true/false"]),
        ({"adapter": {"dropout": 1.5}}, ["'adapter.dropout' must be in [0, 1)"]),
        ({"data": "train.txt"}, ["'data' must be a mapping"]),
        ({"training": {"lr_scheduler": "cosin"}}, ["Did you mean 'cosine'?"]),
        ({"model": " "}, ["'model' cannot be empty"]),
    ],
)
def test_each_config_mistake_names_the_key_and_what_is_allowed(data, expected):
    with pytest.raises(ConfigError) as info:
        Config.from_dict(data)
    for fragment in expected:
        assert fragment in str(info.value)


def test_bad_override_syntax_and_unreadable_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(overrides=["training.epochs"])
    (tmp_path / "bad.yaml").write_text("task: [ner\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_batch_size_auto_and_learning_rate_defaults_per_adapter():
    assert load_config(training={"batch_size": "auto"}).training.batch_size == "auto"
    lora, full = load_config(adapter={"kind": "lora"}), load_config(adapter={"kind": "full"})
    assert lora.learning_rate > full.learning_rate  # encoders under LoRA need a much higher rate
    assert load_config(adapter={"kind": "lora"}, training={"learning_rate": 1e-5}).learning_rate == 1e-5
    # each task owns its rates: a sentence classifier's LoRA collapsed at the NER rate (benchmarks/RESULTS.md)
    classifier = load_config(task="classification", adapter={"kind": "lora"})
    assert classifier.learning_rate < lora.learning_rate and classifier.learning_rate > full.learning_rate


def test_values_from_the_command_line_parse_like_yaml():
    assert parse_value("1") == 1
    assert parse_value("5e-4") == pytest.approx(5e-4)
    assert parse_value("null") is None
    assert parse_value("lora") == "lora"
    assert parse_value("[query, value]") == ["query", "value"]


def test_every_leaf_field_carries_help_text():
    fields = schema_fields()
    assert {"task", "model", "training.learning_rate", "adapter.r", "data.train"} <= {key for key, _, _ in fields}
    assert all(f.metadata.get("help") for _, _, f in fields)
