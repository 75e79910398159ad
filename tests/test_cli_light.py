"""The CLI never imports the training stack: `runs`, `show`, `stop` work with torch unimportable, and
`ftkit eval` scores a checkpoint in a worker process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ftkit.config import load_config
from ftkit.runstore import RunStore

HEAVY = ("torch", "transformers", "peft", "datasets", "trl", "accelerate")

# Runs `ftkit` commands in one process where importing any of HEAVY raises ImportError.
WITHOUT_TORCH = """
import contextlib, io, json, sys
HEAVY = {heavy!r}
for name in HEAVY:
    sys.modules[name] = None  # `import torch` now raises ImportError
from ftkit.cli import main
results = []
for argv in {commands!r}:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    results.append({{"argv": argv, "code": code, "stdout": out.getvalue()}})
loaded = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY and sys.modules[m] is not None)
print(json.dumps({{"results": results, "loaded": loaded}}))
"""


def cli_without_torch(*commands: list[str], cwd: Path) -> dict:
    code = WITHOUT_TORCH.format(heavy=HEAVY, commands=list(commands))
    env = {k: v for k, v in os.environ.items() if k != "FTKIT_RUNS_DIR"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_runs_show_and_stop_work_with_torch_unimportable(tmp_path, sleeper):
    store = RunStore(tmp_path / "elsewhere")  # not the default store: found through --runs-dir
    run_id = store.create_run(load_config(name="light", model="some/model"))
    store.set_status(run_id, "running", pid=sleeper.pid)
    store.append_event(run_id, {"type": "progress", "step": 3, "total_steps": 10, "loss": 0.5})
    store.append_event(run_id, {"type": "checkpoint", "step": 3, "checkpoint": "checkpoint-3", "size": 1})
    root = str(store.root)
    report = cli_without_torch(["--runs-dir", root, "runs"], ["--runs-dir", root, "show", run_id],
                               ["--runs-dir", root, "show", "light", "--json"], ["--runs-dir", root, "stop", run_id],
                               cwd=tmp_path)
    assert [r["code"] for r in report["results"]] == [0, 0, 0, 0], report
    runs, show, show_json, stop = (r["stdout"] for r in report["results"])
    assert run_id in runs and "light" in runs and "3/10" in runs
    assert "[running]" in show and "checkpoint-3" in show
    assert json.loads(show_json)["checkpoints"][0]["path"] == str(store.run_dir(run_id) / "checkpoint-3")
    assert f"stop requested for {run_id}" in stop
    assert (store.run_dir(run_id) / "STOP").exists()
    assert report["loaded"] == []


@pytest.fixture
def evaluable_run(tmp_path, tiny_model_dir, conll_sample):
    """A run in a non-default store with a token-classification checkpoint and a test split."""
    from transformers import AutoTokenizer, BertForTokenClassification

    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
    store = RunStore(tmp_path / "elsewhere")
    config = load_config({"name": "scored", "model": str(tiny_model_dir), "data": {
        "train": str(conll_sample), "validation": str(conll_sample), "test": str(conll_sample)},
        "training": {"device": "cpu", "max_seq_length": 32}})
    run_id = store.create_run(config)
    folder = store.run_dir(run_id) / "checkpoint-2"
    model = BertForTokenClassification.from_pretrained(tiny_model_dir, num_labels=len(labels),
                                                       id2label=dict(enumerate(labels)),
                                                       label2id={label: i for i, label in enumerate(labels)})
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    store.append_event(run_id, {"type": "checkpoint", "step": 2, "checkpoint": "checkpoint-2", "metrics": {}})
    store.set_status(run_id, "completed")
    return store, run_id


@pytest.mark.spawns
def test_eval_runs_in_a_worker_process_and_prints_its_metrics(evaluable_run, tmp_path):
    store, run_id = evaluable_run
    report = cli_without_torch(["--runs-dir", str(store.root), "eval", run_id, "--json"],
                               ["--runs-dir", str(store.root), "eval", run_id, "--checkpoint", "99"], cwd=tmp_path)
    scored, missing = report["results"]
    assert scored["code"] == 0, report
    metrics = json.loads(scored["stdout"])
    assert {"f1", "precision", "recall"} <= set(metrics)
    assert missing["code"] == 2  # the worker's error reaches the user as one line
    assert report["loaded"] == []  # the evaluation imported torch in its worker, not here


@pytest.mark.spawns
def test_eval_scores_another_file_against_the_models_labels(evaluable_run, tmp_path):
    store, run_id = evaluable_run
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "tweets.conll").write_text("Anna B-PER\nvisits O\nBerlin B-LOC\n\nParis B-LOC\n\n")
    report = cli_without_torch(["--runs-dir", str(store.root), "eval", run_id, "--data", "new/tweets.conll", "--json"],
                               cwd=tmp_path)
    (scored,) = report["results"]
    assert scored["code"] == 0, report
    metrics = json.loads(scored["stdout"])
    assert metrics["PER_support"] == 1 and metrics["LOC_support"] == 2  # the new file's entities, not the run's test split
    assert metrics.get("MISC_support", 0) == 0 and metrics.get("ORG_support", 0) == 0


def test_eval_refuses_a_file_with_a_label_the_model_never_learnt(evaluable_run, tmp_path):
    from ftkit.engine.training import evaluate_run
    from ftkit.errors import DataError

    store, run_id = evaluable_run
    unknown = tmp_path / "dishes.conll"
    unknown.write_text("Paella B-FOOD\nin O\nValencia B-LOC\n\n")
    with pytest.raises(DataError, match="FOOD") as refused:
        evaluate_run(store, run_id, data_source=str(unknown))
    assert "dishes.conll" in str(refused.value)
