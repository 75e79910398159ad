"""Answer quality while an sft run trains: generated validation answers reach the events, their scores
become curves, and the best checkpoint can be chosen by exact match."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftkit.config import load_config
from ftkit.engine.training import run_training
from ftkit.errors import ConfigError
from ftkit.runstore import RunStore
from ftkit.runstore.events import Curves
from ftkit.runstore.layout import choose_checkpoint
from ftkit.tasks.sft import SftTask
from tests.sft_fixtures import (chat_records, default_causal_dir, sft_config, smollm2_tokenizer,  # noqa: F401
                                tiny_llama, tiny_llama_dir, write_chat_jsonl)


def _run(config: dict) -> tuple[RunStore, str]:
    """The worker's body, in this process (so a test can script what the model answers)."""
    built = load_config(config).with_absolute_paths()
    store = RunStore(built.runs_dir)
    run_id = store.create_run(built)
    assert run_training(store, run_id) == "completed"
    return store, run_id


def _evaluations(store: RunStore, run_id: str) -> list[dict]:
    return [e for e in store.read_events(run_id)[0] if e["type"] == "eval" and e["split"] == "validation"]


def test_generated_validation_answers_reach_the_events_with_their_scores_and_cost(sft_config):
    write_chat_jsonl(Path(sft_config["data"]["validation"]), chat_records(12, 100))
    sft_config["training"].update(eval_steps=2, max_steps=6, generate_every=2, generate_examples=5)
    store, run_id = _run(sft_config)

    evaluations = _evaluations(store, run_id)
    assert [e["step"] for e in evaluations] == [2, 4, 6]
    generated = [e for e in evaluations if "answers" in e]
    assert [e["step"] for e in generated] == [4]  # every second evaluation
    metrics = generated[0]["metrics"]
    assert metrics["samples"] == 5 and metrics["generation_seconds"] > 0
    assert {"exact_match", "label_accuracy", "stopped", "loss"} <= set(metrics)
    answers = generated[0]["answers"]
    assert len(answers) == 5 and {"prompt", "reference", "generation", "match"} <= set(answers[0])
    assert metrics["exact_match"] == sum(a["match"] for a in answers) / 5
    references = {r["messages"][1]["content"] for r in chat_records(12, 100)}
    assert {a["reference"] for a in answers} <= references
    assert "exact_match" not in evaluations[0]["metrics"]

    curves = Curves.of_run(store.run_dir(run_id) / "events.jsonl").points
    assert curves["validation_exact_match"] == [(4, metrics["exact_match"])]
    assert "validation_generation_seconds" not in curves


def test_the_best_checkpoint_can_be_chosen_by_validation_exact_match(sft_config, monkeypatch):
    scripted = iter([0.25, 0.75, 0.5, 0.0])  # exact match at steps 2, 4, 6 (the loss picks 6), then the test split

    def sampled_answers(self, context, split="validation"):
        rows = [{"id": 0, "prompt": "p", "reference": "positive", "generation": "positive", "match": True}]
        return {"exact_match": next(scripted), "samples": 1}, rows

    monkeypatch.setattr(SftTask, "sampled_answers", sampled_answers)
    sft_config["training"].update(eval_steps=2, save_steps=2, max_steps=6, save_total_limit=1,
                                  metric_for_best_model="validation_exact_match")
    store, run_id = _run(sft_config)

    evaluations = _evaluations(store, run_id)
    assert [e["metrics"]["exact_match"] for e in evaluations] == [0.25, 0.75, 0.5]  # every evaluation generates
    assert {e["best_metric_name"] for e in evaluations} == {"exact_match"}
    kept = [path.name for path in store.recorded_checkpoints(run_id)]
    assert "checkpoint-4" in kept  # the best survives rotation (save_total_limit 1 keeps the last beside it)
    best = choose_checkpoint(store.run_dir(run_id), store.checkpoints(run_id), "exact_match", None, run_id)
    assert best.name == "checkpoint-4"


def test_generate_every_and_its_sample_size_must_be_positive():
    with pytest.raises(ConfigError, match="generate_every"):
        load_config(task="sft", training={"generate_every": 0})
    with pytest.raises(ConfigError, match="generate_examples"):
        load_config(task="sft", training={"generate_examples": 0})
    assert load_config(task="sft", training={"metric_for_best_model": "validation_exact_match"}).best_metric \
        == "exact_match"
