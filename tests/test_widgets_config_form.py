"""ConfigForm: fields from the schema, validation as you type (training data included), the chosen task's
defaults, and the same Config as YAML and %finetune."""

from __future__ import annotations

import ipywidgets as widgets
import pytest
import yaml
from IPython.core.interactiveshell import InteractiveShell

import ftkit.runs
from ftkit.config import load_config, schema_fields
from ftkit.errors import ConfigError
from ftkit.notebook.widgets import ConfigForm
from ftkit.runstore import RunStore
from ftkit.tasks import get_task


@pytest.fixture
def train_file(tmp_path) -> str:
    path = tmp_path / "train.txt"
    path.write_text("EU B-ORG\n")
    return str(path)


def choose(form: ConfigForm, **values: str) -> None:
    for key, value in values.items():
        form.fields[key.replace("__", ".")].value = value


def test_every_schema_field_has_a_control_with_its_help_as_tooltip():
    form = ConfigForm()
    for key, _, field in schema_fields():
        assert form.fields[key].tooltip == field.metadata["help"]
    assert isinstance(form.fields["adapter.kind"], widgets.Dropdown)
    # empty: the task's default adapter (lora for sft, full otherwise)
    assert [value for _, value in form.fields["adapter.kind"].options] == [None, "full", "head", "lora"]
    assert isinstance(form.fields["training.group_by_length"], widgets.Checkbox)


def test_lora_fields_are_visible_only_for_lora():
    form = ConfigForm()
    assert form._rows["adapter.r"].layout.display == "none"
    form.fields["adapter.kind"].value = "lora"
    assert form._rows["adapter.r"].layout.display is None
    form.fields["adapter.kind"].value = "head"
    assert form._rows["adapter.alpha"].layout.display == "none"


def test_a_bad_value_is_flagged_at_its_field_as_you_type(train_file):
    form = ConfigForm({"data": {"train": train_file}})
    form.fields["training.learning_rate"].value = "2"
    error = form.field_errors["training.learning_rate"]
    assert error.layout.display is None and "learning rate must be between 0 and 1" in error.value  # named by its label
    assert form.launch_button.disabled
    form.fields["training.learning_rate"].value = "5e-5"
    assert error.layout.display == "none" and not form.launch_button.disabled
    assert "ready" in form.status.value


def test_form_yaml_and_magic_give_the_same_config(runs_dir):
    form = ConfigForm()
    choose(form, task="ner", data__train="/data/train.txt", data__validation="/data/valid.txt",
           adapter__kind="lora", adapter__r="8", training__epochs="2", training__learning_rate="5e-5",
           training__batch_size="16", training__max_steps="30", name="same")
    typed_yaml = """
task: ner
name: same
data: {train: /data/train.txt, validation: /data/valid.txt}
adapter: {kind: lora, r: 8}
training: {epochs: 2, learning_rate: 5.0e-5, batch_size: 16, max_steps: 30}
"""
    from_yaml = load_config(yaml.safe_load(typed_yaml))
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "ftkit")
    shell.run_cell("%finetune --dry-run -o cfg --task ner --name same --data /data/train.txt "
                   "--validation /data/valid.txt --adapter lora --lora-r 8 --epochs 2 --lr 5e-5 "
                   "--batch-size 16 --max-steps 30")
    assert form.config.to_dict() == from_yaml.to_dict() == shell.user_ns.pop("cfg").to_dict()


def test_copy_as_finetune_gives_a_cell_that_builds_the_same_config(runs_dir):
    form = ConfigForm()
    choose(form, task="classification", data__train="/data/train.tsv", adapter__kind="head",
           adapter__target_modules="query, value", training__warmup="0.06")
    form.copy_magic_button.click()
    cell = form.export_box.value
    assert cell.startswith("%%finetune -o run\n") and form.export_box.layout.display is None
    first_line, body = cell.split("\n", 1)
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "ftkit")
    shell.run_cell(f"%%finetune --dry-run -o cfg\n{body}")
    assert shell.user_ns.pop("cfg").to_dict() == form.config.to_dict()
    form.copy_yaml_button.click()
    assert load_config(yaml.safe_load(form.export_box.value)).to_dict() == form.config.to_dict()


def test_form_starts_from_a_given_config():
    form = ConfigForm({"task": "classification", "adapter": {"kind": "lora", "r": 4}, "training": {"seed": 9}})
    assert form.fields["task"].value == "classification"
    assert form.fields["adapter.r"].value == "4"
    assert form.fields["training.seed"].value == "9"
    assert form.config.adapter.r == 4


def test_launch_starts_the_run_the_form_describes(runs_dir, monkeypatch, train_file):
    started = []
    monkeypatch.setattr(ftkit.runs, "start", lambda config: started.append(config) or "a run handle")
    form = ConfigForm()
    choose(form, data__train=train_file, training__epochs="1")
    launched = []
    form.on_launch(launched.append)
    form.launch_button.click()
    assert started[0].to_dict() == form.config.to_dict()
    assert form.run == "a run handle" and launched == ["a run handle"]


def test_without_training_data_the_form_is_not_ready_and_launch_creates_no_run(runs_dir):
    form = ConfigForm()
    error = form.field_errors["data.train"]
    # Nothing typed yet: no red error, only what launching needs, named as the field is labelled.
    assert error.layout.display == "none" and "#dc2626" not in form.status.value
    assert "to launch: train data is needed to train" in form.status.value and "data.train" not in form.status.value
    assert form.launch_button.disabled and "ready" not in form.status.value
    assert form.launch() is None and form.run is None
    assert error.layout.display is None and "train data is needed to train" in error.value  # launch pressed: said
    assert RunStore(runs_dir).list_runs()[1] == 0
    assert not runs_dir.exists() or [p for p in runs_dir.iterdir() if p.is_dir()] == []
    form.fields["data.train"].value = "reviews"  # a file, a hub id or a notebook variable: any name will do here
    assert error.layout.display == "none" and not form.launch_button.disabled and "ready" in form.status.value


def test_choosing_another_task_shows_its_defaults_in_the_fields_left_alone():
    form = ConfigForm()
    default_adapter = form.fields["adapter.kind"].value
    sft_adapter = get_task("sft").default_adapter
    assert sft_adapter != default_adapter  # what makes this test mean something
    form.fields["task"].value = "sft"
    assert form.fields["adapter.kind"].value == sft_adapter == form.config.adapter.kind
    assert form.changes() == {"task": "sft"}  # the task's own default needs no saying
    form.fields["task"].value = "ner"
    assert form.fields["adapter.kind"].value == get_task("ner").default_adapter


def test_a_field_the_user_set_stays_when_the_task_changes():
    form = ConfigForm({"task": "classification", "adapter": {"kind": "full"}})  # said, not defaulted
    form.fields["task"].value = "sft"
    assert form.fields["adapter.kind"].value == "full" == form.config.adapter.kind
    assert form.changes() == {"task": "sft", "adapter.kind": "full"}  # differs from sft's default: it is said
    typed = ConfigForm()
    typed.fields["adapter.kind"].value = "head"
    typed.fields["task"].value = "classification"
    assert typed.fields["adapter.kind"].value == "head"


@pytest.mark.parametrize("key, text", [("training.epochs", ""), ("training.batch_size", "big"), ("adapter.dropout", "1.5")])
def test_launch_is_refused_while_a_field_is_invalid(monkeypatch, key, text):
    monkeypatch.setattr(ftkit.runs, "start", lambda config: pytest.fail("must not launch"))
    form = ConfigForm({"adapter": {"kind": "lora"}})
    form.fields[key].value = text
    assert form.launch() is None
    assert form.field_errors[key].layout.display is None


def test_a_bad_starting_value_shows_at_its_field_and_an_unknown_key_is_refused():
    form = ConfigForm({"adapter": {"kind": "lora"}, "training": {"learning_rate": 2}})
    assert "between 0 and 1" in form.field_errors["training.learning_rate"].value
    assert form.launch_button.disabled
    with pytest.raises(ConfigError, match="training.learning_rat"):
        ConfigForm({"training": {"learning_rat": 0.1}})
