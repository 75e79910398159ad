"""Training on data from Python: a DataFrame, a `datasets` Dataset/DatasetDict or a list of dicts,
from `ftkit.train`, `%finetune --data NAME` and the ConfigForm. The run keeps a Parquet snapshot, so
the worker reads exactly that and the run can be repeated from its config.yaml."""

from __future__ import annotations

import datasets
import pandas as pd
import pytest
import yaml
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import ftkit
from ftkit.errors import DataError
from ftkit.notebook.widgets import ConfigForm
from ftkit.runstore import RunStore

TEXTS = ["good film", "bad film", "great movie", "terrible movie", "good", "bad", "great", "terrible"]
LABELS = ["pos", "neg", "pos", "neg", "pos", "neg", "pos", "neg"]


def classification(model: str, **data) -> dict:
    return {"task": "classification", "model": model, "data": data,
            "training": {"max_steps": 2, "batch_size": 4, "max_seq_length": 32}}


def finished(run) -> dict:
    run.wait(timeout=300)
    assert run.status == "completed", run.error or run.log_tail()
    return yaml.safe_load((run.dir / "config.yaml").read_text())["data"]


@pytest.mark.slow
def test_dataframes_datasets_and_lists_of_rows_train_from_a_snapshot_in_the_run(tiny_model_dir, runs_dir):
    frame = pd.DataFrame({"text": TEXTS, "label": LABELS})
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_pandas(frame),
                                   "test": datasets.Dataset.from_pandas(frame.head(2))})
    rows = [{"tokens": ["John", "lives", "in", "Paris"], "tags": ["B-PER", "O", "O", "B-LOC"]}] * 6
    runs = {
        "dataframe": ftkit.train(classification(str(tiny_model_dir), train=frame)),
        "datasetdict": ftkit.train(classification(str(tiny_model_dir), train=splits)),
        "rows": ftkit.train({**classification(str(tiny_model_dir)), "task": "ner"}, data__train=rows),
    }
    written = {name: finished(run) for name, run in runs.items()}
    for name, run in runs.items():
        assert written[name]["train"] == str(run.dir / "data" / "train.parquet")
    assert written["datasetdict"]["test"] == str(runs["datasetdict"].dir / "data" / "test.parquet")
    assert pd.read_parquet(written["dataframe"]["train"]).equals(frame)
    again = ftkit.train(runs["dataframe"].dir / "config.yaml")  # the run can be repeated from its record
    assert finished(again)["train"] == written["dataframe"]["train"]


@pytest.mark.slow
def test_the_magic_and_the_form_take_a_variable_of_the_notebook(tiny_model_dir, runs_dir, monkeypatch):
    monkeypatch.setenv("FTKIT_MONITOR", "text")
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "ftkit")
    shell.user_ns["reviews"] = pd.DataFrame({"text": TEXTS, "label": LABELS})
    with capture_output():
        shell.run_line_magic("finetune", f"--task classification --data reviews --model {tiny_model_dir} "
                                         "--max-steps 2 --batch-size 4 -o run")
    form = ConfigForm(classification(str(tiny_model_dir)))
    form.fields["data.train"].value = "reviews"
    for run in (shell.user_ns.pop("run"), form.launch()):
        assert finished(run)["train"].endswith("data/train.parquet")
    shell.user_ns.pop("reviews")


def test_data_that_cannot_be_saved_is_a_clear_error_and_leaves_no_run(tiny_model_dir, runs_dir):
    mixed = pd.DataFrame({"text": ["fine", 3.5], "label": ["pos", "neg"]})
    with pytest.raises(DataError, match="could not save the in-memory train data as Parquet"):
        ftkit.train(classification(str(tiny_model_dir), train=mixed))
    assert RunStore(runs_dir).list_runs()[1] == 0
    assert [p.name for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")] == []
