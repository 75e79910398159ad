"""Hugging Face conventions: checkpoints and merges load with `transformers.pipeline` as they are, carry a
model card (README.md), the panel's load snippet runs, and `ftkit push` fails clearly offline."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import ftkit
from ftkit.tasks import get_task

from .conftest import write_conll


def card_of(folder):
    text = (folder / "README.md").read_text()
    _, front, body = text.split("---", 2)
    return yaml.safe_load(front), body


def run_snippet(code: str) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "<snippet>", "exec"), {})  # noqa: S102 - the panel's snippet, run as a user would
    return printed.getvalue()


@pytest.fixture
def ner_data(tmp_path):
    return {"train": str(write_conll(tmp_path / "train.txt", 24, 1)),
            "validation": str(write_conll(tmp_path / "valid.txt", 8, 2)),
            "test": str(write_conll(tmp_path / "test.txt", 8, 3))}


@pytest.mark.slow
def test_a_full_checkpoint_loads_with_pipeline_and_carries_a_card(tiny_model_dir, runs_dir, ner_data):
    from transformers import pipeline

    run = ftkit.train({"task": "ner", "model": str(tiny_model_dir), "data": ner_data,
                       "training": {"epochs": 1, "batch_size": 8, "max_seq_length": 32}}).wait(timeout=300)
    assert run.status == "completed", run.error or run.log_tail()
    best = run.checkpoint_path()
    meta, body = card_of(best)
    assert meta["pipeline_tag"] == "token-classification" and meta["library_name"] == "transformers"
    assert "ftkit" in meta["tags"] and "ner" in meta["tags"]
    assert "### test" in body and "| PER |" in body and "micro avg" in body  # the per-entity table
    assert "`train.txt`" in body and str(Path(ner_data["train"]).parent) not in body  # no folder of this machine
    assert "pipeline('token-classification'" in body
    entities = pipeline("token-classification", model=str(best), aggregation_strategy="first")("John lives in Paris")
    assert all(e["entity_group"] in ("PER", "LOC") for e in entities)
    snippet = get_task("ner").load_snippet(str(best), adapter_only=False)
    assert run_snippet(snippet).startswith("[")


@pytest.mark.slow
def test_a_merged_lora_model_loads_with_pipeline_and_has_its_own_card(tiny_model_dir, runs_dir, tmp_path):
    from transformers import pipeline

    rows = tmp_path / "train.csv"
    rows.write_text("text,label\n" + "".join(f"{'good film' if i % 2 else 'bad film'},{'pos' if i % 2 else 'neg'}\n"
                                             for i in range(24)))
    run = ftkit.train({"task": "classification", "model": str(tiny_model_dir), "adapter": {"kind": "lora"},
                       "data": {"train": str(rows)}, "training": {"epochs": 1, "batch_size": 8}}).wait(timeout=300)
    assert run.status == "completed", run.error or run.log_tail()
    lora_meta, lora_body = card_of(run.checkpoint_path())
    assert lora_meta["library_name"] == "peft" and "Predictor.from_checkpoint(" in lora_body
    merged = subprocess.run([sys.executable, "-m", "ftkit.cli", "merge", run.id, "--json"], capture_output=True,
                            text=True, env={**os.environ, "FTKIT_RUNS_DIR": str(runs_dir)}, timeout=300)
    assert merged.returncode == 0, merged.stderr
    folder = run.dir / "merged"
    meta, body = card_of(folder)
    assert meta["pipeline_tag"] == "text-classification" and meta["library_name"] == "transformers"
    assert "### validation" in body
    scores = pipeline("text-classification", model=str(folder), top_k=None)(["a good film"])[0]
    assert {s["label"] for s in scores} == {"neg", "pos"}


def test_a_lora_card_says_how_to_load_adapter_weights():
    from ftkit.config import Config
    from ftkit.engine.card import model_card

    card = model_card(Config.from_dict({"task": "classification", "adapter": {"kind": "lora"},
                                        "data": {"train": "stanfordnlp/sst2"}}),
                      {"test": {"accuracy": 0.9, "pos_precision": 1.0, "pos_recall": 0.8, "pos_f1": 0.89,
                                "pos_support": 5}}, adapter_only=True)
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.data.datasets == ["stanfordnlp/sst2"] and card.data.library_name == "peft"
    assert "Predictor.from_checkpoint('PATH_OR_REPO_ID')" in card.text and "ftkit merge RUN" in card.text
    assert "| pos | 1.0000 | 0.8000 | 0.8900 | 5 |" in card.text


@pytest.mark.spawns
def test_push_offline_says_so_and_where_the_model_is(runs_dir):
    from ftkit.config import Config
    from ftkit.runstore import RunStore

    store = RunStore(runs_dir)
    run_id = store.create_run(Config(name="pushed"))
    folder = store.run_dir(run_id) / "checkpoint-4"
    folder.mkdir()
    (folder / "README.md").write_text("---\nlibrary_name: transformers\n---\n# a card\n")
    store.append_event(run_id, {"type": "checkpoint", "step": 4, "checkpoint": "checkpoint-4", "metrics": {}})
    result = subprocess.run([sys.executable, "-m", "ftkit.cli", "push", run_id, "someone/model"], capture_output=True,
                            text=True, env={**os.environ, "FTKIT_RUNS_DIR": str(runs_dir), "HF_HUB_OFFLINE": "1"},
                            timeout=120)
    assert result.returncode == 2
    said, error = result.stderr.splitlines()[-2:]
    assert said == f"uploading to someone/model (private) from {folder}: README.md"  # what leaves, said first
    assert error.startswith("ftkit: cannot push to the Hugging Face hub: offline") and str(folder) in error
    assert "Traceback" not in result.stderr
