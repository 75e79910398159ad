"""Data files and model folders that do not exist are refused before a run is made, by every surface
(`ftkit.config.missing_paths`: `runs.start`, `%finetune`, the ConfigForm); hub ids, built-in model names
and in-memory data are not paths and pass."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import ftkit
import ftkit.runs
from ftkit.config import load_config, missing_paths
from ftkit.errors import ConfigError
from ftkit.notebook.widgets import ConfigForm
from ftkit.runstore import RunStore


@pytest.fixture
def spawned(monkeypatch):
    """Runs that reach the supervisor's spawn (none is started)."""
    started: list[str] = []
    monkeypatch.setattr(ftkit.runs, "_spawn", lambda store, run_id, resume: started.append(run_id))
    return started


def no_run_recorded(runs_dir) -> bool:
    return not runs_dir.exists() or RunStore(runs_dir).list_runs()[1] == 0


def test_each_missing_data_file_and_model_folder_is_named_by_its_key(tmp_path):
    (tmp_path / "train.txt").write_text("EU B-ORG\n")
    config = load_config(data={"train": "train.txt", "validation": "valid.txt", "test": str(tmp_path / "t.jsonl")},
                         model="./my-model")
    missing = missing_paths(config, base_dir=tmp_path)
    assert set(missing) == {"data.validation", "data.test", "model"}
    assert missing["data.validation"] == f"'data.validation': no file or folder valid.txt in {tmp_path}"
    assert missing["data.test"] == f"'data.test': no file or folder {tmp_path / 't.jsonl'}"


@pytest.mark.parametrize("settings", [
    {"data": {"train": "conll2003"}},
    {"data": {"train": "user/dataset", "validation": "eriktks/conll2003"}},
    {"data": {"train": "my/data.json", "format": "hub"}},
    {"data": {"train": "df_train"}, "model": "default-causal"},  # a notebook variable's name
    {"model": "run:sst2-sft", "data": {"train": "stanfordnlp/sst2"}},
])
def test_hub_ids_builtin_models_and_variable_names_are_not_paths(tmp_path, settings):
    assert missing_paths(load_config(settings), base_dir=tmp_path) == {}


def test_start_refuses_a_missing_file_before_any_run_folder_exists(runs_dir, spawned, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=re.escape(f"'data.train': no file or folder {tmp_path}/conll/train.txt")):
        ftkit.train({"task": "ner", "data": {"train": "conll/train.txt"}})
    assert no_run_recorded(runs_dir) and spawned == []


def test_start_takes_hub_ids_and_in_memory_data(runs_dir, spawned):
    ftkit.train({"task": "ner", "data": {"train": "eriktks/conll2003"}})
    frame = pd.DataFrame({"text": ["good", "bad"], "label": ["pos", "neg"]})
    ftkit.train({"task": "classification", "data": {"train": frame}})
    assert len(spawned) == 2


def test_finetune_says_which_flag_names_a_missing_file_and_makes_no_run(shell, runs_dir, spawned, tmp_path):
    with capture_output() as captured:
        result = shell.run_cell(f"%finetune --data {tmp_path}/nowhere.txt -o run")
    assert isinstance(result.error_in_exec, UsageError)
    assert f"'data.train' (--data): no file or folder {tmp_path}/nowhere.txt" in captured.stderr
    assert "Traceback" not in captured.stderr and "run" not in shell.user_ns
    assert no_run_recorded(runs_dir) and spawned == []
    with capture_output():
        assert shell.run_cell("%finetune --data conll2003 -o run").success  # a hub id
    assert len(spawned) == 1


def test_the_form_shows_a_missing_file_at_its_field_and_refuses_to_launch(runs_dir, monkeypatch, tmp_path):
    monkeypatch.setattr(ftkit.runs, "start", lambda config: pytest.fail("must not launch"))
    monkeypatch.chdir(tmp_path)
    form = ConfigForm()
    form.fields["data.train"].value = "train.txt"
    error = form.field_errors["data.train"]
    assert error.layout.display is None
    assert f"train data: no file or folder train.txt in {tmp_path}" in error.value  # the field's label, not its key
    assert form.launch_button.disabled and form.launch() is None
    (tmp_path / "train.txt").write_text("EU B-ORG\n")
    form.fields["data.train"].value = "./train.txt"
    assert error.layout.display == "none" and not form.launch_button.disabled


def test_the_form_takes_a_hub_id(runs_dir):
    form = ConfigForm()
    form.fields["data.train"].value = "user/dataset"
    assert "ready" in form.status.value and not form.launch_button.disabled
