"""A run's config.yaml holds exactly what ran: relative paths, from any surface, become absolute at launch.

The notebook folder (the launching process's working folder) sits at a different depth than the
run store, so a path left relative would be read against the run folder and miss its file.
Every case is launched for real and must train.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import ftkit
from ftkit.config import Config, absolute_paths, load_config
from ftkit.notebook.widgets import ConfigForm

from .conftest import write_conll

PATH_CASES = {"dot-slash": "./x.txt", "three-up": "../../../data/x.txt", "bare": "x.txt"}


@pytest.fixture
def project(tmp_path, tiny_model_dir, monkeypatch):
    """notebooks at a/b/c, data beside them and three levels up, runs in their own folder."""
    notebook_dir = tmp_path / "a" / "b" / "c"
    notebook_dir.mkdir(parents=True)
    write_conll(notebook_dir / "x.txt", 12, 1)
    (tmp_path / "data").mkdir()
    shutil.copy(notebook_dir / "x.txt", tmp_path / "data" / "x.txt")
    runs_dir = tmp_path / "store" / "runs"
    monkeypatch.setenv("FTKIT_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("FTKIT_MONITOR", "text")
    monkeypatch.chdir(notebook_dir)
    return {"notebook": notebook_dir, "runs": runs_dir, "model": str(tiny_model_dir), "root": tmp_path}


def tiny_settings(model: str) -> dict:
    return {"task": "ner", "model": model, "training": {"max_steps": 2, "batch_size": 4, "max_seq_length": 32}}


def assert_trains_from_an_absolute_path(run, expected: Path) -> None:
    written = yaml.safe_load((run.dir / "config.yaml").read_text())
    assert written["data"]["train"] == str(expected.resolve())
    run.wait(timeout=300)
    assert run.status == "completed", run.error or run.log_tail()


def expected_file(project, relative: str) -> Path:
    return (project["notebook"] / relative).resolve()


@pytest.mark.slow
def test_ftkit_train_with_a_dict_and_with_a_config_object(project):
    launched = []
    for name, relative in PATH_CASES.items():
        settings = tiny_settings(project["model"])
        settings["data"] = {"train": relative}
        launched.append((ftkit.train(settings), relative))
        launched.append((ftkit.train(Config.from_dict(settings)), relative))
    for run, relative in launched:
        assert_trains_from_an_absolute_path(run, expected_file(project, relative))


@pytest.mark.slow
def test_the_finetune_magic(project):
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "ftkit")
    launched = []
    for name, relative in PATH_CASES.items():
        with capture_output():
            shell.run_line_magic("finetune", f"--data {relative} --model {project['model']} --max-steps 2 "
                                             f"--batch-size 4 --max-seq-length 32 -o run_{name.replace('-', '_')}")
        launched.append((shell.user_ns.pop(f"run_{name.replace('-', '_')}"), relative))
    for run, relative in launched:
        assert_trains_from_an_absolute_path(run, expected_file(project, relative))


@pytest.mark.slow
def test_the_config_form(project, monkeypatch):
    launched = []
    for name, relative in PATH_CASES.items():
        form = ConfigForm(tiny_settings(project["model"]))
        form.fields["data.train"].value = relative
        launched.append((form.launch(), relative))
    for run, relative in launched:
        assert run is not None, "the form refused to launch"
        assert_trains_from_an_absolute_path(run, expected_file(project, relative))


@pytest.mark.slow
def test_the_cli_reads_a_file_against_its_folder_and_flags_against_the_working_folder(project):
    config_dir = project["root"] / "configs" / "deeper"
    config_dir.mkdir(parents=True)
    settings = tiny_settings(project["model"])
    settings["data"] = {"train": "../../data/x.txt"}  # relative to this file's folder
    (config_dir / "run.yaml").write_text(yaml.safe_dump(settings))
    env = {**os.environ, "FTKIT_RUNS_DIR": str(project["runs"])}
    ids = []
    for overrides in ([], *[["--set", f"data.train={relative}"] for relative in PATH_CASES.values()]):
        result = subprocess.run([sys.executable, "-m", "ftkit.cli", "train", str(config_dir / "run.yaml"), "--json",
                                 *overrides], capture_output=True, text=True, env=env, cwd=project["notebook"],
                                timeout=120)
        assert result.returncode == 0, result.stderr
        ids.append(yaml.safe_load(result.stdout)["id"])
    expected = [project["root"] / "data" / "x.txt", *[expected_file(project, r) for r in PATH_CASES.values()]]
    for run_id, path in zip(ids, expected):
        assert_trains_from_an_absolute_path(ftkit.runs.get(run_id, project["runs"]), path)


@pytest.mark.slow
def test_the_readme_notebook_example_as_written(tmp_path, monkeypatch):
    """README: `%finetune --model default --data ../../shared/data/conll2003/train.txt ...` from notebooks/."""
    notebook_dir = tmp_path / "main" / "notebooks"
    notebook_dir.mkdir(parents=True)
    data = tmp_path / "shared" / "data" / "conll2003"
    data.mkdir(parents=True)
    write_conll(data / "train.txt", 20, 1)
    monkeypatch.setenv("FTKIT_RUNS_DIR", str(tmp_path / "elsewhere" / "runs"))
    monkeypatch.setenv("FTKIT_MONITOR", "text")
    monkeypatch.chdir(notebook_dir)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    line = next(text for text in readme.splitlines() if text.startswith("%finetune --model default --data"))
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "ftkit")
    with capture_output():
        shell.run_line_magic("finetune", line.removeprefix("%finetune ") + " --max-steps 2 --batch-size 4")
    assert_trains_from_an_absolute_path(shell.user_ns.pop("run"), data / "train.txt")


def test_hub_ids_and_builtin_model_names_stay_as_given(tmp_path):
    data = absolute_paths({"model": "default", "data": {"train": "eriktks/conll2003", "validation": "x.txt"},
                           "output": {"dir": "runs"}}, tmp_path)
    assert data["model"] == "default" and data["data"]["train"] == "eriktks/conll2003"
    assert data["data"]["validation"] == str(tmp_path / "x.txt") and data["output"]["dir"] == str(tmp_path / "runs")
    assert absolute_paths({"data": {"train": "my/data", "format": "hub"}}, tmp_path)["data"]["train"] == "my/data"


def test_flags_given_with_a_config_file_are_read_against_the_working_folder_at_launch(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "c.yaml").write_text("data:\n  train: in-conf.txt\n  test: ./t.txt\n")
    config = load_config(tmp_path / "conf" / "c.yaml", overrides=["data.train=./flag.txt"])
    assert config.data.test == str(tmp_path / "conf" / "t.txt")
    monkeypatch.chdir(tmp_path)
    assert config.with_absolute_paths().data.train == str(tmp_path / "flag.txt")
