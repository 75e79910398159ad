"""The task registry: names, lookups with a "did you mean", every task complete, and new tasks added by one line."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ftkit
from ftkit import tasks
from ftkit.config import Config, schema_fields
from ftkit.errors import ConfigError
from ftkit.tasks import TASK_CLASSES, TASK_NAMES, TaskEntry, get_task
from ftkit.tasks.base import Task
from ftkit.tasks.classification import ClassificationTask

PACKAGE = Path(ftkit.__file__).parent
CONFIG_KEYS = {key for key, _, _ in schema_fields()}


def test_the_registry_names_the_tasks_and_the_config_takes_its_choices_from_it():
    assert TASK_NAMES == ("ner", "classification", "sft", "dpo", "orpo", "kto")
    task_field = next(field for key, _, field in schema_fields() if key == "task")
    assert task_field.metadata["choices"] == TASK_NAMES
    assert task_field.metadata["help"] == (
        "What to learn: ner (token classification), classification (one label per text), sft (generative "
        "fine-tuning of a causal LM on chats or prompts), dpo (preference tuning of a causal LM on chosen/rejected "
        "pairs), orpo (preference tuning without a reference model (SFT + odds ratio)) or kto (preference tuning "
        "on single answers labelled good or bad).")


def test_an_unknown_task_is_a_config_error_that_names_the_known_ones_and_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown task 'nerr': use ner, classification, sft, dpo, orpo or kto\. Did you mean 'ner'\?"):
        get_task("nerr")
    with pytest.raises(ConfigError, match="unknown task 'summarise'") as caught:
        get_task("summarise")
    assert "Did you mean" not in str(caught.value)


def test_get_task_returns_one_instance_per_name_and_passes_a_task_through():
    ner = get_task("ner")
    assert get_task("ner") is ner and get_task(ner) is ner and ner.name == "ner"


@pytest.mark.parametrize("name", TASK_NAMES)
def test_every_registered_task_implements_the_whole_interface(name):
    task = get_task(name)
    assert isinstance(task, Task) and not inspect.isabstract(type(task))
    assert task.name == name
    assert len(task.columns) >= 2 and all(isinstance(column, str) for column in task.columns)
    assert task.label_column is None or task.label_column in task.columns
    for attribute in ("example_noun", "label_noun", "labelled_noun", "distribution_title", "default_metric",
                      "peft_task_type", "architecture_suffix"):
        assert isinstance(getattr(task, attribute), str) and getattr(task, attribute), attribute
    assert set(task.form_fields) <= CONFIG_KEYS, "form fields must be config keys"
    assert all(suffix.startswith(".") for suffix in task.file_suffixes)
    assert list(task.features()) == list(task.columns)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_a_saved_model_or_lora_checkpoint_leads_back_to_its_task_or_the_first_that_trains_its_kind_of_model(name):
    task = get_task(name)
    # A DPO checkpoint of a causal LM is used as one: predict, chat and merge treat it as sft does.
    first = next(t for t in tasks.all_tasks() if t.model_class() is task.model_class())
    assert first.name == (name if task.recipe == "supervised" else "sft")
    assert tasks.task_for_architectures([f"Bert{task.architecture_suffix}"]) is first
    assert tasks.task_for_peft_type(task.peft_task_type) is first
    assert tasks.task_for_architectures(["BertModel"]) is None and tasks.task_for_peft_type("SEQ_2_SEQ_LM") is None


def test_the_default_metric_and_the_file_guess_come_from_the_task():
    assert Config(task="ner").best_metric == "f1" and Config(task="classification").best_metric == "accuracy"
    assert Config(task="sft").best_metric == "loss"
    assert tasks.task_for_file("reviews.tsv") == "classification" == tasks.task_for_file("x/REVIEWS.CSV")
    assert tasks.task_for_file("train.txt") == "ner" == tasks.task_for_file("data.jsonl")


def test_importing_the_registry_and_every_task_module_stays_light():
    code = ("import sys, ftkit.config, ftkit.tasks as t; [t.get_task(n) for n in t.TASK_NAMES]; "
            "ftkit.config.Config(task='classification').best_metric; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'transformers', 'datasets', 'peft', 'seqeval', 'pandas', 'sklearn')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_nothing_outside_the_tasks_package_branches_on_a_task_name():
    branch = re.compile(r"task (==|!=|in) |\.task in |task in \(")
    found = [f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
             for path in PACKAGE.rglob("*.py") if "tasks" not in path.relative_to(PACKAGE).parts
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if branch.search(line)]
    assert found == []


# ----- a new task: one class and one registry line, nothing else touched -----------------------------


class ToyTask(ClassificationTask):
    """Topics of short snippets: a classification variant with its own words, metric and file suffix."""

    name = "toy"
    example_noun = "snippets"
    label_noun = "topic"
    labelled_noun = "with topic"
    distribution_title = "snippets per topic"
    default_metric = "macro_f1"
    file_suffixes = (".toy",)


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setitem(TASK_CLASSES, "toy", TaskEntry(f"{__name__}:ToyTask", "topics of snippets"))
    return get_task("toy")


def test_a_task_registered_by_one_line_is_looked_up_and_listed(toy_registered):
    assert isinstance(toy_registered, ToyTask) and toy_registered.name == "toy"
    assert toy_registered in tasks.all_tasks()
    assert "toy (topics of snippets)" in tasks.task_help()
    assert tasks.task_for_file("notes.toy") == "toy"
    with pytest.raises(ConfigError, match="Did you mean 'toy'"):
        get_task("toyy")


def test_the_data_layer_and_widgets_speak_a_registered_task_without_knowing_it(toy_registered):
    from ftkit.notebook.widgets.data_picker import label_distribution_html
    from ftkit.tasks.alignment import label_list

    rows = [{"text": "goal in the last minute", "label": "sport"}, {"text": "rates rise again", "label": "money"},
            {"text": "a late equaliser", "label": "sport"}]
    splits = ftkit.load_data(rows, task="toy")
    assert splits["train"].column_names == ["text", "label"]
    assert label_list(splits, "toy") == ["money", "sport"]
    summary = ftkit.data_stats(rows, task="toy")
    assert summary.task == "toy" and str(summary).splitlines()[1].split()[:2] == ["split", "snippets"]
    assert "snippets per topic" in label_distribution_html(summary.to_dict(), "toy")
    assert "goal in the last minute" in ftkit.data_preview(splits, task="toy")
    with pytest.raises(ftkit.errors.DataError, match="topic 'weather' never occurs in train"):
        ftkit.load_data(rows, task="toy", validation=[{"text": "rain", "label": "weather"}])


def test_a_registry_line_that_points_nowhere_says_so(monkeypatch):
    monkeypatch.setitem(TASK_CLASSES, "ghost", TaskEntry("ftkit.tasks.ghost:GhostTask", "nothing"))
    with pytest.raises(ConfigError, match="task 'ghost' is registered as ftkit.tasks.ghost:GhostTask"):
        get_task("ghost")
