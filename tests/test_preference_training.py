"""Preference tuning (dpo, orpo, kto) as training recipes on TRL's trainers, on the tiny llama with SmolLM2's
tokenizer: a DPO step lowers the preference loss, LoRA's reference is the adapter switched off (no second
model), reward metrics reach the events and their curves, and an SFT -> DPO lineage is recorded."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import ftkit
from ftkit.config import load_config
from ftkit.errors import DataError
from ftkit.runstore.events import Curves
from ftkit.runstore.layout import CHECKPOINT_RECORD_FILE
from tests.sft_fixtures import (chat_records, default_causal_dir, sft_config, smollm2_tokenizer,  # noqa: F401
                                tiny_llama, tiny_llama_dir, write_chat_jsonl)


def pair_records(n: int, offset: int = 0) -> list[dict]:
    """Explicit pairs whose chosen answer follows the review's word: something a few steps can learn."""
    records = []
    for i in range(offset, offset + n):
        good = i % 2 == 1
        right, wrong = ("positive", "negative") if good else ("negative", "positive")
        records.append({"prompt": f"Review {i}: {'great' if good else 'awful'} film. Positive or negative?",
                        "chosen": right, "rejected": wrong})
    return records


def unpaired_records(n: int) -> list[dict]:
    return [{"prompt": row["prompt"], "completion": row["chosen"] if i % 2 else row["rejected"], "label": bool(i % 2)}
            for i, row in enumerate(pair_records(n))]


@pytest.fixture
def preference_config(tiny_llama_dir, tmp_path, runs_dir) -> dict:
    data = tmp_path / "pairs"
    data.mkdir()
    return {
        "name": "tiny-dpo",
        "task": "dpo",
        "model": str(tiny_llama_dir),
        "adapter": {"kind": "lora", "r": 4, "alpha": 8},
        "data": {"train": str(write_chat_jsonl(data / "train.jsonl", pair_records(24))),
                 "validation": str(write_chat_jsonl(data / "valid.jsonl", pair_records(6, 100))),
                 "test": str(write_chat_jsonl(data / "test.jsonl", pair_records(4, 200)))},
        "training": {"epochs": 1, "batch_size": 4, "logging_steps": 2, "max_seq_length": 64,
                     "learning_rate": 5e-3, "max_new_tokens": 4, "beta": 0.1},
        "output": {"dir": str(runs_dir)},
    }


def in_process_trainer(config: dict, tmp_path: Path, **overrides):
    from ftkit.engine.training import build_trainer, prepare

    prepared = prepare(load_config(config, **overrides))
    return prepared, build_trainer(prepared, tmp_path / "trainer")


def test_dpo_steps_lower_the_preference_loss(preference_config, tmp_path):
    # One preference a random tiny model can learn in a few steps: always "positive" over "negative".
    pairs = write_chat_jsonl(tmp_path / "consistent.jsonl", [{**record, "chosen": "positive", "rejected": "negative"}
                                                             for record in pair_records(24)])
    prepared, trainer = in_process_trainer(preference_config, tmp_path,
                                           **{"data.train": str(pairs), "data.validation": str(pairs)})
    before = trainer.evaluate()
    # A fresh adapter changes nothing yet: the policy is its reference, so the loss is -log sigmoid(0).
    assert before["eval_loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert before["eval_rewards/margins"] == pytest.approx(0, abs=1e-4)
    trainer.train()
    after = trainer.evaluate()
    assert after["eval_loss"] < before["eval_loss"] - 0.01
    assert after["eval_rewards/margins"] > 0 and after["eval_rewards/accuracies"] > 0.5


def test_with_lora_the_reference_is_the_base_with_the_adapter_off_and_no_second_model_is_loaded(
        preference_config, tmp_path, monkeypatch):
    import trl.trainer.dpo_trainer as dpo_trainer
    from peft import PeftModel

    def no_second_model(*args, **kwargs):
        raise AssertionError("a second model was loaded as the reference")

    monkeypatch.setattr(dpo_trainer, "create_model_from_path", no_second_model)
    prepared, trainer = in_process_trainer(preference_config, tmp_path)
    assert trainer.ref_model is None
    assert isinstance(trainer.model, PeftModel) and list(trainer.model.peft_config) == ["default"]
    batch = next(iter(trainer.get_train_dataloader()))
    with trainer.model.disable_adapter():
        import torch

        with torch.no_grad():
            base_logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    for parameter in (p for n, p in trainer.model.named_parameters() if "lora_B" in n):
        parameter.data.normal_(0, 0.5)  # the adapter now changes the model: the reference must not see it
    reference = trainer.compute_ref_log_probs(trainer.model, batch)
    with torch.no_grad():
        policy_logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert not torch.allclose(policy_logits, base_logits)
    labels = batch["input_ids"][:, 1:]
    mask = batch["completion_mask"][:, 1:].bool()
    base_logps = torch.log_softmax(base_logits[:, :-1], -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    expected = (base_logps * mask).sum(-1)
    chosen, rejected = reference if isinstance(reference, tuple) else (reference["ref_chosen_logps"],
                                                                        reference["ref_rejected_logps"])
    assert torch.allclose(torch.cat([chosen, rejected]), expected, atol=1e-3)


@pytest.mark.parametrize("task,records", [("orpo", pair_records), ("kto", unpaired_records)])
def test_orpo_and_kto_train_through_their_trl_trainers(task, records, preference_config, tmp_path):
    data = tmp_path / task
    data.mkdir()
    config = {**preference_config, "task": task,
              "data": {"train": str(write_chat_jsonl(data / "train.jsonl", records(16))),
                       "validation": str(write_chat_jsonl(data / "valid.jsonl", records(8)))}}
    prepared, trainer = in_process_trainer(config, tmp_path, **{"training.max_steps": 2})
    output = trainer.train()
    assert output.global_step == 2 and math.isfinite(output.training_loss)
    assert type(trainer).__name__ == {"orpo": "FtkitORPOTrainer", "kto": "FtkitKTOTrainer"}[task]
    assert all(length > 0 for length in prepared.recipe.train_lengths(trainer))


def test_a_prompt_the_chat_template_cannot_render_is_refused_naming_its_file_and_line(
        preference_config, tmp_path, tiny_llama_dir):
    import shutil

    from transformers import AutoTokenizer

    model = tmp_path / "strict-template"
    shutil.copytree(tiny_llama_dir, model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.chat_template = ("{% for m in messages %}{% if 'forbidden' in m['content'] %}"
                               "{{ raise_exception('this template refuses the word') }}{% endif %}"
                               "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                               "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    tokenizer.save_pretrained(model)
    records = pair_records(4)
    records[2]["prompt"] = "a forbidden prompt"
    train = write_chat_jsonl(tmp_path / "bad.jsonl", records)
    with pytest.raises(DataError, match=r"bad\.jsonl:3.*does not render"):
        in_process_trainer(preference_config, tmp_path, model=str(model), **{"data.train": str(train)})


@pytest.mark.spawns
def test_reward_metrics_reach_the_events_and_the_curves_and_the_test_answers_are_generated(preference_config):
    preference_config["training"]["generate_every"] = 1  # answers generated while DPO trains, too
    run = ftkit.train(preference_config)
    run.wait(timeout=300)
    assert run.status == "completed", run.log_tail()
    events, _ = run.events()
    logs = [e for e in events if e["type"] == "log" and "loss" in e]
    assert logs, "no training log event"
    assert any("training dynamics are not recorded for dpo" in e.get("message", "") for e in events)
    assert not (run.dir / "dynamics.parquet").exists() and run.data_map().empty
    curves = Curves.of_run(run.dir / "events.jsonl")
    assert {"rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected"} <= set(curves.points)
    assert {"validation_loss", "validation_rewards/accuracies", "validation_rewards/margins"} <= set(curves.points)
    evaluations = [e for e in events if e["type"] == "eval"]
    assert [e["split"] for e in evaluations] == ["validation", "test"]  # the test evaluation is not a validation one
    validation = evaluations[0]
    assert {"exact_match", "label_accuracy", "generation_seconds"} <= set(validation["metrics"])
    assert validation["answers"] and "validation_exact_match" in curves.points
    test = evaluations[-1]["metrics"]
    assert {"loss", "rewards/accuracies", "rewards/margins", "exact_match", "label_accuracy"} <= set(test)
    rows = [json.loads(line) for line in (run.dir / "predictions" / "test.jsonl").read_text().splitlines()]
    assert [row["reference"] for row in rows] == [r["chosen"] for r in pair_records(4, 200)]
    record = json.loads((Path(run.checkpoints[-1]["path"]) / CHECKPOINT_RECORD_FILE).read_text())
    assert record["task"] == "dpo" and record["method"] == "dpo" and record["generative"]


@pytest.mark.spawns
def test_sft_then_dpo_records_the_lineage_and_starts_from_the_sft_runs_merged_best_checkpoint(
        sft_config, preference_config, runs_dir):
    sft = ftkit.train({**sft_config, "name": "stage-sft"})
    sft.wait(timeout=300)
    assert sft.status == "completed", sft.log_tail()
    dpo = ftkit.train({**preference_config, "model": "run:stage-sft", "name": "stage-dpo"})
    dpo.wait(timeout=300)
    assert dpo.status == "completed", dpo.log_tail()
    best = Path(sft.best_checkpoint()).name if hasattr(sft, "best_checkpoint") else Path(sft.checkpoints[-1]["path"]).name
    parent = json.loads((dpo.dir / "run.json").read_text())["parent"]
    assert parent == {"run": sft.id, "name": "stage-sft", "task": "sft", "checkpoint": best}
    assert load_config(dpo.dir / "config.yaml").model == f"run:{sft.id}/{best}"
    merged = runs_dir / ".cache" / "merged" / f"{sft.id}-{best}"
    assert (merged / "config.json").is_file() and not (merged / "adapter_config.json").exists()
    adapter = json.loads((Path(dpo.checkpoints[-1]["path"]) / "adapter_config.json").read_text())
    assert Path(adapter["base_model_name_or_path"]) == merged


def test_a_dpo_run_cannot_start_from_a_run_of_an_encoder_task(tiny_config, preference_config, runs_dir):
    from ftkit.errors import ConfigError
    from ftkit.runs import pin_parent_run
    from ftkit.runstore import RunStore

    store = RunStore(runs_dir)
    run_id = store.create_run(load_config(tiny_config))
    with pytest.raises(ConfigError, match="is a ner run; a dpo run starts from a run that trained"):
        pin_parent_run(store, load_config({**preference_config, "model": f"run:{run_id}"}))


@pytest.mark.spawns
def test_a_dpo_run_stops_resumes_merges_and_predicts_as_a_generative_model(preference_config, runs_dir, tmp_path):
    import subprocess
    import sys

    from tests.conftest import wait_for

    preference_config["training"].update(max_steps=200, batch_size=2, save_steps=1000, eval_steps=1000)
    preference_config["data"].pop("test")
    run = ftkit.train(preference_config)
    wait_for(lambda: run.progress["step"] >= 3, timeout=120)
    run.stop(wait=True, timeout=120)
    assert run.status == "stopped", run.log_tail()
    stopped_at = run.checkpoints[-1]["step"]
    assert 3 <= stopped_at < 200
    assert {"adapter_model.safetensors", "optimizer.pt", CHECKPOINT_RECORD_FILE} <= {
        p.name for p in (run.dir / f"checkpoint-{stopped_at}").iterdir()}
    run.resume().wait(timeout=300)
    assert run.status == "completed", run.log_tail()
    state = json.loads((run.dir / "checkpoint-200" / "trainer_state.json").read_text())
    assert state["global_step"] == 200 and state["log_history"][0]["step"] <= stopped_at  # one history, continued

    merged = subprocess.run([sys.executable, "-m", "ftkit.cli", "--runs-dir", str(runs_dir), "merge", run.id,
                             "--output", str(tmp_path / "merged"), "--json"], capture_output=True, text=True, timeout=300)
    assert merged.returncode == 0, merged.stderr
    folder = Path(json.loads(merged.stdout)["path"])
    assert (folder / "config.json").is_file() and not (folder / "adapter_config.json").exists()
    answers = run.predict(["Review 5: great film. Positive or negative?"])
    assert isinstance(answers[0], str)  # a generated answer, as for sft
