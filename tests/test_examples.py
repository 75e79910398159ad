"""`examples/` holds one starter config per task that runs as written, and `ftkit init TASK` writes a
commented starter config generated from the schema."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ftkit.cli import main
from ftkit.config import load_config, schema_fields
from ftkit.tasks import TASK_NAMES, all_tasks, get_task

from .conftest import SHARED_DATA
from .test_cli_light import cli_without_torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {"ner": ROOT / "examples" / "ner-conll.yaml", "classification": ROOT / "examples" / "classification-sst2.yaml",
            "sft": ROOT / "examples" / "sft-sst2.yaml", "dpo": ROOT / "examples" / "dpo-sst2.yaml",
            "orpo": ROOT / "examples" / "orpo-sst2.yaml", "kto": ROOT / "examples" / "kto-sst2.yaml"}
needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")


def test_there_is_one_example_per_registered_task():
    assert set(EXAMPLES) == set(TASK_NAMES)
    assert all(path.is_file() for path in EXAMPLES.values())


@needs_data
@pytest.mark.parametrize("task", TASK_NAMES)
def test_examples_load_and_their_paths_point_at_the_shared_data(task, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths resolve against the file's folder, not the working folder
    text = EXAMPLES[task].read_text()
    assert "../../shared/data/" in text and "your own" in text, "relative to this layout, and says how to change it"
    config = load_config(EXAMPLES[task])
    assert config.task == task
    for split in ("train", "validation", "test"):
        assert Path(getattr(config.data, split)).is_file(), f"{EXAMPLES[task].name}: data.{split} does not exist"


@pytest.mark.parametrize("task", TASK_NAMES)
def test_ftkit_init_writes_a_commented_config_that_load_config_reads(task, tmp_path, capsys):
    path = tmp_path / "configs" / f"{task}.yaml"
    assert main(["init", task, str(path)]) == 0
    config = load_config(path)
    assert config.task == task
    assert Path(config.data.train).parent == tmp_path / "configs" / "data", "placeholder paths next to the config"
    text = path.read_text()
    others = {key for other in all_tasks() if other.name != task for key in other.form_fields} - set(
        get_task(task).form_fields)
    for key, _, field in schema_fields():
        name = key.rsplit(".", 1)[-1]
        shown = f"  {name}:" in text or f"# {name}:" in text or text.startswith(f"{name}:") or f"\n{name}:" in text
        if key in others:
            assert f" {name}:" not in text, f"{key} belongs to another task"
        else:
            assert shown, f"{key} is missing from the starter"
            first_words = " ".join(field.metadata["help"].split()[:4])
            assert first_words in " ".join(line.strip("# ") for line in text.splitlines()), f"help of {key}"
    for key in get_task(task).form_fields:
        assert f"# {key.rsplit('.', 1)[-1]}:" in text


def test_ftkit_init_keeps_an_existing_file_and_prints_with_a_dash(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["init", "classification"]) == 0
    assert (tmp_path / "classification.yaml").is_file()
    assert main(["init", "classification"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["init", "classification", "--force"]) == 0
    capsys.readouterr()
    assert main(["init", "ner", "-"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["task"] == "ner"


def test_ftkit_init_needs_no_torch(tmp_path):
    report = cli_without_torch(["init", "ner", str(tmp_path / "ner.yaml")], cwd=tmp_path)
    assert report["results"][0]["code"] == 0 and not report["loaded"], report
    assert load_config(tmp_path / "ner.yaml").task == "ner"


def test_commented_out_keys_show_the_schema_defaults(tmp_path):
    main(["init", "ner", str(tmp_path / "ner.yaml")])
    defaults: dict[str, dict] = {}
    for key, _, field in schema_fields():
        section, _, name = key.rpartition(".")
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        defaults.setdefault(section, {})[name] = default
    section, checked = None, 0
    for line in (tmp_path / "ner.yaml").read_text().splitlines():
        header = re.fullmatch(r"(\w+):", line)
        if header:
            section = header.group(1)
        entry = re.fullmatch(r"  # (\w+): (.*)", line)
        if entry and section and entry.group(1) in defaults[section]:
            assert yaml.safe_load(entry.group(2)) == defaults[section][entry.group(1)], line
            checked += 1
    assert checked > 20


@pytest.mark.slow
@needs_data
@pytest.mark.parametrize("task", ["ner", "classification"])
def test_the_example_trains_as_written_for_two_steps(task, tmp_path):
    """As a user would: `ftkit train examples/X.yaml --set training.max_steps=2` from another folder."""
    command = [sys.executable, "-m", "ftkit.cli", "--runs-dir", str(tmp_path / "runs"), "train", str(EXAMPLES[task]),
               "--set", "training.max_steps=2", "--set", "training.max_train_samples=64",
               "--set", "training.max_eval_samples=32", "--follow", "--json"]
    out = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    from ftkit.runs import get

    run = get(load_config(EXAMPLES[task]).run_name, tmp_path / "runs")
    assert run.status == "completed"
    assert run.progress["step"] == 2
    assert "test" in run.metrics
