"""Runs end to end with a tiny model: own process, events, stop, resume, death, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ftkit
from ftkit.runs import Run

from .conftest import wait_for

@pytest.mark.spawns
def test_train_returns_at_once_and_the_run_records_events_metrics_checkpoints_and_predictions(tiny_config):
    started = time.monotonic()
    run = ftkit.train(tiny_config)
    assert time.monotonic() - started < 3, "ftkit.train must not block the caller"
    run.wait(timeout=240)
    assert run.status == "completed", run.log_tail()
    events, _ = run.events()
    kinds = [e["type"] for e in events]
    statuses = [e["status"] for e in events if e["type"] == "status"]
    assert kinds[0] == "phase" and statuses[0] == "running" and events[-1]["status"] == "completed"
    assert "progress" in kinds and "checkpoint" in kinds
    evals = [e for e in events if e["type"] == "eval"]
    assert [e["split"] for e in evals] == ["validation", "validation", "test"]  # once per epoch, then test
    info = run.info()
    assert {"f1", "precision", "recall"} <= set(info["metrics"]["test"])
    # 64 sentences / batch 8 x 2 epochs, plus the extra windows of sentences longer than 32 tokens
    assert info["progress"]["step"] == info["progress"]["total_steps"] > 16
    checkpoint = Path(info["checkpoints"][-1]["path"])
    saved = json.loads((checkpoint / "config.json").read_text())
    assert saved["id2label"]["0"] == "O" and "B-PER" in saved["label2id"]
    # Test predictions line up with their sentences although evaluation ran longest-first.
    test_sentences = ftkit.load_data(tiny_config["data"]["test"])["train"]["tokens"]
    predictions = [json.loads(line) for line in (run.dir / "predictions" / "test.jsonl").read_text().splitlines()]
    assert [p["tokens"] for p in predictions] == test_sentences
    assert all(len(p["predicted"]) == len(p["tokens"]) for p in predictions)


@pytest.mark.spawns
def test_stop_saves_a_checkpoint_and_resume_reaches_the_same_final_step(tiny_config):
    tiny_config["training"].update(epochs=1, max_steps=400, batch_size=2, save_steps=1000, eval_steps=1000)
    run = ftkit.train(tiny_config)
    wait_for(lambda: run.progress["step"] >= 3, timeout=120)
    run.stop(wait=True, timeout=120)
    assert run.status == "stopped"
    stopped_at = run.checkpoints[-1]["step"]
    assert 3 <= stopped_at < 400
    run.resume().wait(timeout=300)
    assert run.status == "completed", run.log_tail()
    assert run.progress["step"] == 400
    events, _ = run.events()
    assert any("resuming from" in (e.get("message") or "") for e in events)


@pytest.mark.spawns
def test_a_killed_worker_marks_the_run_failed_with_the_signal(tiny_config):
    tiny_config["training"].update(max_steps=100000, batch_size=2)
    run = ftkit.train(tiny_config)
    wait_for(lambda: run.progress["step"] >= 1, timeout=120)
    pid = run.info()["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: run.status == "failed", timeout=5)
    assert "signal 9" in run.error


@pytest.mark.spawns
def test_a_run_that_fails_records_its_error_instead_of_staying_running(tiny_config, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("EU NNP I-NP I-ORG\nrejects VBZ\n\n")
    tiny_config["data"]["train"] = str(bad)
    run = ftkit.train(tiny_config).wait(timeout=120)
    assert run.status == "failed"
    assert "bad.txt:2" in run.error


def cli(*args: str, env_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FTKIT_RUNS_DIR": str(env_dir)}
    return subprocess.run([sys.executable, "-m", "ftkit.cli", *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.spawns
def test_the_cli_trains_shows_lists_and_predicts_as_json(tiny_config, tmp_path, runs_dir):
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    started = cli("train", str(path), "--set", "training.epochs=1", "--json", "--follow", env_dir=runs_dir)
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout[: started.stdout.rindex("}") + 1])["id"]
    shown = json.loads(cli("show", run_id, "--json", env_dir=runs_dir).stdout)
    assert {"id", "name", "status", "pid", "error", "progress", "metrics", "checkpoints", "config"} <= set(shown)
    assert shown["status"] == "completed" and shown["config"]["training"]["epochs"] == 1
    assert {"step", "total_steps", "epoch"} <= set(shown["progress"])
    assert {"f1", "precision", "recall"} <= set(shown["metrics"]["test"])
    assert {"path", "step", "metrics"} <= set(shown["checkpoints"][0])
    listed = json.loads(cli("runs", "--json", env_dir=runs_dir).stdout)
    assert [r["id"] for r in listed] == [run_id]
    text = "John Smith lives in  Paris ."
    entities = json.loads(cli("predict", run_id, text, "--json", env_dir=runs_dir).stdout)
    assert isinstance(entities, list)
    for e in entities:
        assert {"text", "label", "start", "end", "score"} <= set(e) and text[e["start"]:e["end"]] == e["text"]


@pytest.mark.spawns
def test_cli_errors_are_one_line_and_exit_2(tmp_path, runs_dir):
    path = tmp_path / "bad.yaml"
    path.write_text("task: nerr\n")
    result = cli("train", str(path), env_dir=runs_dir)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Did you mean 'ner'?" in result.stderr
    missing = cli("show", "no-such-run", env_dir=runs_dir)
    assert missing.returncode == 2 and "no run 'no-such-run'" in missing.stderr


@pytest.mark.spawns
def test_a_run_handle_reattaches_by_id_from_a_fresh_process(tiny_config, runs_dir):
    tiny_config["training"]["epochs"] = 1
    run = ftkit.train(tiny_config)
    code = f"import ftkit.runs as r; run = r.get({run.id!r}); run.wait(240); print(run.status)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "FTKIT_RUNS_DIR": str(runs_dir)})
    assert out.stdout.strip() == "completed", out.stderr
    assert isinstance(ftkit.runs.get("tiny"), Run)
