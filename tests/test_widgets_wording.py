"""What the notebook's widgets say, as a new user reads it: every choice named, defaults shown with their
value, only the fields the chosen task uses, built-in models said for what they are, long answers cut
with the whole text in a tooltip, and the widgets importable from `ftkit` itself without its cost."""

from __future__ import annotations

import subprocess
import sys

import ipywidgets as widgets
import pytest

from ftkit.config import Config
from ftkit.notebook.widgets import ConfigForm
from ftkit.notebook.widgets.data_picker import label_distribution_html
from ftkit.tasks import TASK_NAMES, get_task


def test_every_choice_of_every_dropdown_has_a_name():
    form = ConfigForm()
    for key, control in form.fields.items():
        if isinstance(control, widgets.Dropdown):
            labels = [option[0] if isinstance(option, tuple) else option for option in control.options]
            assert all(label.strip() and "guess" not in label for label in labels), key
    assert form.fields["data.format"].options[0] == ("auto (from the file name)", None)
    assert form.fields["adapter.kind"].options[0][0].startswith("auto")


@pytest.mark.parametrize("task, adapter", [("ner", None), ("ner", "lora"), ("sft", None), ("classification", "lora")])
def test_an_empty_learning_rate_shows_the_rate_the_run_would_use(task, adapter):
    form = ConfigForm()
    form.fields["task"].value = task
    if adapter:
        form.fields["adapter.kind"].value = adapter
    expected = Config.from_dict({"task": task, "adapter": {"kind": adapter}}).learning_rate
    assert form.fields["training.learning_rate"].placeholder == f"default: {expected}"


def test_other_empty_fields_say_what_empty_means():
    form = ConfigForm()
    assert form.fields["training.eval_batch_size"].placeholder == "default: twice batch_size"
    assert form.fields["data.validation"].placeholder == "default: a seeded fraction of train is held out"


@pytest.mark.parametrize("task", TASK_NAMES)
def test_the_label_set_field_shows_only_for_tasks_with_a_label_set(task):
    form = ConfigForm()
    form.fields["task"].value = task
    shown = form._rows["data.labels"].layout.display is None
    assert shown == (get_task(task).label_column is not None)


def test_built_in_models_are_listed_and_said_for_what_they_are():
    form = ConfigForm()
    model = form.fields["model"]
    assert list(model.options) == ["default", "default-causal"]
    assert "default — MiniLM-L6 (encoder)" in form.model_note.value
    form.fields["task"].value = "sft"  # the same word, another model
    assert "default — SmolLM2-135M-Instruct" in form.model_note.value
    model.value = "default-causal"
    assert "default-causal — SmolLM2-135M-Instruct" in form.model_note.value
    model.value = "HuggingFaceTB/SmolLM2-360M-Instruct"
    assert form.model_note.value == ""


def test_a_long_answer_in_the_distribution_bars_is_cut_with_the_whole_text_in_its_tooltip():
    answer = "It is a gripping, beautifully shot film whose story stays with you for days " * 2
    stats = {"splits": {"train": {"label_counts": {answer: 3, "negative": 1}}}}
    page = label_distribution_html(stats, "sft")
    assert f'title="{answer}"' in page
    assert f">{answer}<" not in page and "…</span>" in page


def test_ftkit_offers_the_form_and_the_chat_widget_without_importing_ipywidgets_up_front():
    code = ("import sys, ftkit\n"
            "assert 'ipywidgets' not in sys.modules, 'import ftkit loaded ipywidgets'\n"
            "from ftkit import ChatWidget, ConfigForm\n"
            "from ftkit.notebook.widgets import ChatWidget as C, ConfigForm as F\n"
            "assert (ChatWidget, ConfigForm) == (C, F)\n"
            "assert 'torch' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
