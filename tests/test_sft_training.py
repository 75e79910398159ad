"""sft runs end to end through the real worker process: the tiny llama with SmolLM2's tokenizer, then
(slow) the embedded SmolLM2 itself, whose held-out loss must fall."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ftkit
from ftkit.runstore.layout import CACHE_DIR, HEARTBEAT_FILE, LIFE_LOCK_FILE, LOCK_FILE, SUMMARY_FILE
from tests.conftest import wait_for
from tests.sft_fixtures import (chat_records, default_causal_dir, sft_config, smollm2_tokenizer,  # noqa: F401
                                tiny_llama, tiny_llama_dir, write_chat_jsonl)

# What every run folder holds: its record, and the locks and heartbeat that keep it to one writer.
RECORD_FILES = {"config.yaml", "run.json", "events.jsonl", SUMMARY_FILE, "train.log", LOCK_FILE, LIFE_LOCK_FILE, HEARTBEAT_FILE}


def cli(runs_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ftkit.cli", "--runs-dir", str(runs_dir), *args], input=stdin,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.spawns
def test_an_sft_run_reports_loss_and_perplexity_generates_the_test_answers_and_saves_its_chat_template(
        sft_config, smollm2_tokenizer, runs_dir):
    run = ftkit.train(sft_config)
    run.wait(timeout=300)
    assert run.status == "completed", run.log_tail()
    events, _ = run.events()
    evals = {e["split"]: e["metrics"] for e in events if e["type"] == "eval"}
    assert {"loss", "perplexity"} <= set(evals["validation"])
    assert evals["validation"]["perplexity"] == pytest.approx(2.718281828 ** evals["validation"]["loss"], rel=1e-6)
    test = evals["test"]
    assert {"loss", "perplexity", "exact_match", "label_accuracy", "stopped"} <= set(test) and test["samples"] == 6
    assert run.metrics["test"]["exact_match"] == test["exact_match"]
    report = next(e["message"] for e in events if e["type"] == "log" and "test report" in (e.get("message") or ""))
    assert "perplexity" in report and "exact match" in report

    rows = [json.loads(line) for line in (run.dir / "predictions" / "test.jsonl").read_text().splitlines()]
    test_chats = [json.loads(line)["messages"] for line in Path(sft_config["data"]["test"]).read_text().splitlines()]
    assert [row["prompt"] for row in rows] == [chat[0]["content"] for chat in test_chats]  # the split's order
    assert [row["reference"] for row in rows] == [chat[1]["content"] for chat in test_chats]
    assert all({"generation", "match", "stopped", "choice"} <= set(row) for row in rows)
    assert test["exact_match"] == sum(row["match"] for row in rows) / 6

    # training dynamics of a generative run: each example's answer, scored by its trained tokens' probability
    data_map = run.data_map()
    train_chats = [json.loads(line)["messages"] for line in Path(sft_config["data"]["train"]).read_text().splitlines()]
    assert list(data_map["gold"]) == [chat[-1]["content"] for chat in train_chats]  # all 24, in order
    assert data_map["confidence"].between(0, 1).all() and (data_map["issue_score"] == data_map["confidence"]).all()

    checkpoint = Path(run.checkpoints[-1]["path"])
    adapter = json.loads((checkpoint / "adapter_config.json").read_text())
    assert adapter["task_type"] == "CAUSAL_LM" and not adapter.get("modules_to_save")
    assert {name.split(".")[-1] for name in adapter["target_modules"]} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(checkpoint).chat_template == smollm2_tokenizer.chat_template

    prompt = "Review 7: great film. Positive?"
    answer = run.generate(prompt, max_new_tokens=4)  # the best checkpoint, greedy
    assert isinstance(answer, str) and run.predict(prompt) == answer  # predict generates max_new_tokens (4) too
    assert run.generate([{"role": "user", "content": prompt}], max_new_tokens=4) == answer
    assert "".join(run.stream(prompt, max_new_tokens=4)) == answer

    once = cli(runs_dir, "chat", run.id, "Review 7: great film. Positive?", "--max-new-tokens", "3")
    assert once.returncode == 0, once.stderr
    from ftkit.rendering import cut_mark

    def printed(answer: str, limit: int) -> set[str]:  # an answer the token limit cut says so after it
        return {f"{answer}\n", f"{answer} {cut_mark(limit)}\n"}

    assert once.stdout in printed(run.generate("Review 7: great film. Positive?", 3), 3)
    turns = cli(runs_dir, "chat", run.id, "--max-new-tokens", "2", stdin="Hi\nAnd then?\n")
    first = run.generate("Hi", 2)
    second = run.generate([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": first},
                           {"role": "user", "content": "And then?"}], 2)  # the second turn sees the first
    assert turns.returncode == 0, turns.stderr
    assert turns.stdout in {one + two for one in printed(first, 2) for two in printed(second, 2)}

    evaluated = cli(runs_dir, "eval", run.id, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["exact_match"] == test["exact_match"]  # the same best checkpoint, the same answers
    predicted = cli(runs_dir, "predict", run.id, prompt, "--json")
    assert predicted.returncode == 0 and json.loads(predicted.stdout) == answer, predicted.stderr


@pytest.mark.spawns
def test_sft_stop_resume_and_merge_into_a_model_plain_transformers_loads_and_generates(sft_config, runs_dir, tmp_path):
    sft_config["training"].update(max_steps=300, batch_size=2, save_steps=1000, eval_steps=1000)
    sft_config["data"].pop("test")
    run = ftkit.train(sft_config)
    wait_for(lambda: run.progress["step"] >= 3, timeout=120)
    run.stop(wait=True, timeout=120)
    assert run.status == "stopped", run.log_tail()
    stopped_at = run.checkpoints[-1]["step"]
    assert 3 <= stopped_at < 300
    stopped_dir = run.dir / f"checkpoint-{stopped_at}"
    assert {"adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"} <= {
        p.name for p in stopped_dir.iterdir()}
    run.resume().wait(timeout=300)
    assert run.status == "completed", run.log_tail()
    assert run.progress["step"] == 300
    state = json.loads((run.dir / "checkpoint-300" / "trainer_state.json").read_text())
    assert state["global_step"] == 300 and state["log_history"][0]["step"] <= stopped_at  # one history, continued

    merged = cli(runs_dir, "merge", run.id, "--output", str(tmp_path / "merged"), "--json")
    assert merged.returncode == 0, merged.stderr
    folder = Path(json.loads(merged.stdout)["path"])
    assert not (folder / "adapter_config.json").exists()
    code = ("import sys, torch; from transformers import AutoModelForCausalLM, AutoTokenizer; "
            f"m = AutoModelForCausalLM.from_pretrained({str(folder)!r}); t = AutoTokenizer.from_pretrained({str(folder)!r}); "
            "ids = t.apply_chat_template([{'role': 'user', 'content': 'Hi'}], add_generation_prompt=True, "
            "return_tensors='pt', return_dict=True); "
            "out = m.generate(**ids, max_new_tokens=3, do_sample=False); "
            "print(type(m).__name__, out.shape[1] > ids['input_ids'].shape[1], bool(t.chat_template))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert loaded.stdout.split() == ["LlamaForCausalLM", "True", "True"], loaded.stderr[-2000:]


@pytest.mark.spawns
def test_packed_training_runs_for_sft_on_the_cpu(sft_config):
    sft_config["training"]["padding_free"] = "always"
    sft_config["data"].pop("test")
    run = ftkit.train(sft_config).wait(timeout=300)
    assert run.status == "completed", run.log_tail()
    assert run.metrics["validation"]["loss"] > 0


@pytest.mark.spawns
def test_full_fine_tuning_of_a_causal_lm_checkpoints_a_model_that_predicts_and_generates(sft_config):
    sft_config["adapter"] = {"kind": "full"}
    sft_config["data"].pop("test")
    run = ftkit.train(sft_config).wait(timeout=300)
    assert run.status == "completed", run.log_tail()
    checkpoint = Path(run.checkpoints[-1]["path"])
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "chat_template.jinja").is_file()
    assert run.predict("Hi") == run.generate("Hi", max_new_tokens=4)  # both load the tied LM head back


@pytest.mark.parametrize("line, message", [
    ({"messages": [{"role": "user", "content": "Hi"}]}, "no assistant turn"),
    ({"prompt": "Hi", "completion": ""}, "empty completion"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hi"},
                   {"role": "assistant", "content": "A"}]}, "roles out of order"),
    ({"prompt": "Hi", "completion": "Hello"}, "this row is prompt-completion but the first row"),
])
@pytest.mark.spawns
def test_bad_sft_data_fails_the_run_naming_file_and_line_and_writes_nothing_else(sft_config, runs_dir, line, message):
    bad = Path(sft_config["data"]["train"])
    records = [{"prompt": "Q", "completion": "A"}] * 2 if message == "empty completion" else chat_records(2)
    write_chat_jsonl(bad, records + [line])
    run = ftkit.train(sft_config).wait(timeout=300)
    assert run.status == "failed"
    assert f"{bad}:3" in run.error and message in run.error, run.error
    assert {p.name for p in run.dir.iterdir()} == RECORD_FILES  # no checkpoint, predictions or data snapshot
    assert not (runs_dir / CACHE_DIR).exists()  # nothing tokenised either


@pytest.mark.spawns
def test_a_prompt_template_naming_a_missing_column_fails_the_run_with_the_file(sft_config, runs_dir, tmp_path):
    table = tmp_path / "train.tsv"
    table.write_text("sentence\tlabel\ngood\t1\nbad\t0\n")
    sft_config["data"] = {"train": str(table), "prompt_template": "Review: {review}", "completion_column": "label"}
    run = ftkit.train(sft_config).wait(timeout=300)
    assert run.status == "failed" and "column 'review' is not in the data" in run.error and str(table) in run.error
    assert {p.name for p in run.dir.iterdir()} == RECORD_FILES


# ----- the embedded SmolLM2: a few real steps must lower the held-out loss -------------------------------------


@pytest.mark.slow
def test_a_few_lora_steps_of_default_causal_on_sst2_instructions_lower_the_held_out_loss(default_causal_dir, tmp_path,
                                                                                       runs_dir):
    """SST-2 as instructions in the config alone; LoRA, batch 4, 64 tokens; validation loss at step 0 and after."""
    sst2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
    config = {
        "name": "sst2-sft", "task": "sft", "model": "default-causal",
        "data": {"train": str(sst2 / "train.tsv"), "validation": str(sst2 / "dev.tsv"),
                 "prompt_template": "Review: {sentence}\nIs this review positive or negative?",
                 "completion_column": "label", "answer_map": {0: "negative", 1: "positive"}},
        "training": {"max_steps": 8, "batch_size": 4, "max_seq_length": 64, "learning_rate": 1e-3, "warmup": 0,
                     "max_train_samples": 64, "max_eval_samples": 16, "eval_steps": 8, "logging_steps": 2,
                     "trainer_args": {"eval_on_start": True}},  # the held-out loss before any step
        "output": {"dir": str(runs_dir)},
    }
    started = time.monotonic()
    run = ftkit.train(config).wait(timeout=900)
    elapsed = time.monotonic() - started
    assert run.status == "completed", run.log_tail()
    events, _ = run.events()
    losses = {e["step"]: e["metrics"]["loss"] for e in events if e["type"] == "eval" and e["split"] == "validation"}
    before = losses[0]
    after = losses[8]
    print(f"default-causal SFT: validation loss {before:.4f} -> {after:.4f}, wall {elapsed:.0f} s, "
          f"train runtime {run.store.read_record(run.id)['resources']['train_runtime_seconds']:.1f} s for 8 steps")
    assert after < before - 0.1
