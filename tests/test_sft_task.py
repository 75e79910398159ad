"""The sft task through ftkit's data, config and model layers: every layout, every bad input, the
tokens trained, statistics and preview, scoring, LoRA on every linear layer, and packing decided by
probing the model as it trains."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import ftkit
from ftkit.config import Config, DataConfig, load_config
from ftkit.errors import ConfigError, DataError, FtkitError
from ftkit.tasks import get_task
from ftkit.tasks.alignment import tokenize_dataset
from ftkit.tasks.loading import load, load_splits
from ftkit.tasks.sft import SftTask, _lcs_f1, answer_metrics, answer_set, exact_match, rouge_l
from ftkit.tasks.sft_encoding import IGNORE_INDEX, render_ids
from tests.sft_fixtures import (chat_records, default_causal_dir, sft_config, smollm2_tokenizer, tiny_llama,  # noqa: F401
                                tiny_llama_dir, write_chat_jsonl)

SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
SST2_TEMPLATE = "Review: {sentence}\nIs this review positive or negative?"


def lines(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# ----- the task in the registry and the config -----------------------------------------------------------


def test_sft_is_a_registered_task_without_labels_or_head_and_picks_checkpoints_by_lowest_loss():
    task = get_task("sft")
    assert isinstance(task, SftTask) and task.label_column is None and task.columns[0] == "messages"
    assert (task.default_metric, task.peft_task_type, task.architecture_suffix) == ("loss", "CAUSAL_LM", "ForCausalLM")
    assert task.compute_metrics({}) is None and task.loss_function() is None and task.label_list([]) == []
    config = Config(task="sft")
    assert config.best_metric == "loss" and config.adapter.kind == "lora"  # LoRA by default for sft only
    assert Config(task="ner").adapter.kind == "full" and load_config(task="sft", adapter={"kind": "full"}).adapter.kind == "full"
    assert math.isclose(task.loss_metrics(2.0)["perplexity"], math.exp(2.0))


def test_sft_config_keys_answer_map_keys_match_as_text_and_train_on_has_choices():
    config = load_config({"task": "sft", "data": {"answer_map": {0: "negative", 1: "positive"}}})
    assert config.data.answer_map == {"0": "negative", "1": "positive"}
    assert load_config({"task": "sft", "data": {"answer_map": {"0": "negative"}}}).data.answer_map == {"0": "negative"}
    assert load_config(task="sft", training={"train_on": "all"}).training.train_on == "all"
    with pytest.raises(ConfigError, match="'training.train_on' must be one of assistant, completion, all"):
        load_config(task="sft", training={"train_on": "answers"})
    with pytest.raises(ConfigError, match="'training.max_new_tokens' must be a positive integer"):
        load_config(task="sft", training={"max_new_tokens": 0})
    with pytest.raises(ConfigError, match="'data.answer_map' must be a mapping"):
        load_config(task="sft", data={"answer_map": ["negative", "positive"]})
    assert set(get_task("sft").form_fields) >= {"data.prompt_template", "data.completion_column", "data.answer_map",
                                                "training.train_on", "training.max_new_tokens"}


def test_model_default_means_the_causal_default_for_sft(default_causal_dir):
    from ftkit.engine.models import resolve_model_source

    assert resolve_model_source("default", "sft") == str(default_causal_dir)
    assert resolve_model_source("default-causal") == str(default_causal_dir)
    assert resolve_model_source("default", "ner") != str(default_causal_dir)


# ----- data: every layout into canonical messages -----------------------------------------------------------


@pytest.mark.parametrize("record, layout", [
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}, "messages"),
    ({"prompt": "Hi", "completion": "Hello"}, "prompt-completion"),
    ({"instruction": "Hi", "input": "", "output": "Hello"}, "alpaca"),
    ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}, "sharegpt"),
])
def test_each_layout_loads_as_canonical_messages_with_its_layout_and_origin(tmp_path, record, layout):
    path = lines(tmp_path / "train.jsonl", [record, record])
    train = load(str(path), task="sft")["train"]
    assert train.column_names == ["messages", "layout", "origin"]
    assert train[0]["messages"] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert train["layout"] == [layout, layout] and train["origin"] == [f"{path}:1", f"{path}:2"]


def test_a_saved_datasets_folder_of_chats_loads(tmp_path):
    import datasets

    rows = chat_records(4)
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows),
                          "test": datasets.Dataset.from_list(chat_records(2, 10))}).save_to_disk(tmp_path / "chats")
    loaded = load(str(tmp_path / "chats"), task="sft")
    assert set(loaded) == {"train", "test"} and loaded["train"]["messages"] == [r["messages"] for r in rows]


def test_sst2_becomes_an_instruction_set_in_the_config_alone():
    config = load_config({"task": "sft", "data": {"train": str(SST2 / "train.tsv"), "validation": str(SST2 / "dev.tsv"),
                                                 "prompt_template": SST2_TEMPLATE, "completion_column": "label",
                                                 "answer_map": {0: "negative", 1: "positive"}}})
    splits = load_splits(config.data, "sft")
    first = splits["validation"][0]
    assert first["messages"] == [
        {"role": "user", "content": "Review: one long string of cliches .\nIs this review positive or negative?"},
        {"role": "assistant", "content": "negative"}]
    assert first["origin"].endswith("dev.tsv:2") and first["layout"] == "prompt-completion"
    assert set(splits["train"]["messages"][i][1]["content"] for i in range(50)) == {"negative", "positive"}


# ----- bad input: clear errors naming file and line ----------------------------------------------------------


@pytest.mark.parametrize("bad, message", [
    ({"messages": [{"role": "user", "content": "Hi"}]}, "no assistant turn"),
    ({"messages": [{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Q"},
                   {"role": "assistant", "content": "A"}]}, "roles out of order"),
    ({"prompt": "Hi", "completion": "  "}, "empty completion"),
    ({"prompt": "Hi", "output": "x", "instruction": "y"}, "this row is alpaca but the first row"),
])
def test_bad_chat_rows_are_data_errors_naming_file_and_line(tmp_path, bad, message):
    good = {"prompt": "Hi", "completion": "Hello"} if "prompt" in bad else \
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    path = lines(tmp_path / "train.jsonl", [good, good, bad])
    with pytest.raises(DataError, match=message) as caught:
        load(str(path), task="sft")
    assert caught.value.path == str(path) and caught.value.line == 3


def test_a_prompt_template_that_does_not_render_names_the_file_or_the_row(tmp_path):
    table = tmp_path / "train.tsv"
    table.write_text("sentence\tlabel\ngood film\t1\n\t0\n")
    with pytest.raises(DataError, match="column 'review' is not in the data") as caught:
        load(str(table), task="sft", prompt_template="Review: {review}", completion_column="label")
    assert caught.value.path == str(table)
    with pytest.raises(DataError, match=r"prompt_template does not render"):
        load(str(table), task="sft", prompt_template="Review: {sentence", completion_column="label")
    with pytest.raises(DataError, match="column 'sentence' is empty") as caught:
        load(str(table), task="sft", prompt_template="Review: {sentence}", completion_column="label")
    assert caught.value.line == 3
    with pytest.raises(DataError, match="needs data.completion_column"):
        load(str(table), task="sft", prompt_template="Review: {sentence}")


# ----- tokens: what the encoder trains on ---------------------------------------------------------------


def test_the_encoder_trains_the_answer_and_its_end_of_turn_token_and_drops_rows_cut_before_the_answer(smollm2_tokenizer):
    tokenizer = smollm2_tokenizer
    task = get_task("sft")
    long_prompt = "word " * 80
    batch = {"messages": [[{"role": "user", "content": "Good?"}, {"role": "assistant", "content": "positive"}],
                          [{"role": "user", "content": long_prompt}, {"role": "assistant", "content": "negative"}]],
             "layout": ["prompt-completion", "prompt-completion"], "origin": ["a.jsonl:1", "a.jsonl:2"]}
    rows = task.encoder(tokenizer, {}, 48)(batch, [7, 8])
    assert len(rows["input_ids"]) == 1  # the second answer lies beyond 48 tokens: nothing to learn, dropped
    assert rows["sentence_id"] == [7]  # each kept row says which row of the split it is (training dynamics)
    trained = [t for t, label in zip(rows["input_ids"][0], rows["labels"][0]) if label != IGNORE_INDEX]
    assert trained == tokenizer("positive", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert rows["length"] == [len(rows["input_ids"][0])] and set(rows["attention_mask"][0]) == {1}


def test_train_on_defaults_by_layout_and_the_option_overrides_it(smollm2_tokenizer):
    task = get_task("sft")
    two_turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                 {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye"}]

    def trained(layout, train_on=None):
        rows = task.encoder(smollm2_tokenizer, {}, 128, train_on=train_on)(
            {"messages": [two_turns], "layout": [layout], "origin": ["x:1"]}, [0])
        return sum(label != IGNORE_INDEX for label in rows["labels"][0]), len(rows["input_ids"][0])

    chat, completion = trained("messages")[0], trained("prompt-completion")[0]
    assert chat > completion > 0  # assistant: both turns; prompt/completion: the last answer
    assert trained("messages", "completion")[0] == completion
    assert trained("messages", "all")[0] == trained("messages", "all")[1]
    assert task.encoder_options(load_config(task="sft", training={"train_on": "all"})) == {"train_on": "all"}


def test_tokenising_for_training_keeps_the_chat_template_in_the_cache_key(smollm2_tokenizer, tmp_path):
    import copy

    raw = load(chat_records(4), task="sft")
    first = tokenize_dataset(raw, smollm2_tokenizer, {}, "sft", 64, cache_dir=tmp_path, options={"train_on": None})
    other = copy.deepcopy(smollm2_tokenizer)
    other.chat_template = smollm2_tokenizer.chat_template.replace("<|im_start|>", "<|im_start|> ")
    second = tokenize_dataset(raw, other, {}, "sft", 64, cache_dir=tmp_path, options={"train_on": None})
    assert first["train"]["input_ids"] != second["train"]["input_ids"]


def test_the_collator_pads_on_the_right_with_labels_ignored_and_the_mask_zero(smollm2_tokenizer):
    collate = get_task("sft").collator(smollm2_tokenizer, None)
    batch = collate([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, smollm2_tokenizer.pad_token_id] * 1 + [smollm2_tokenizer.pad_token_id]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_the_tokenizer_of_a_chat_model_is_not_reloaded_with_a_prefix_space(default_causal_dir):
    from ftkit.engine.models import load_tokenizer

    sft = load_tokenizer(str(default_causal_dir), "sft")
    words = load_tokenizer(str(default_causal_dir), "ner")
    assert not getattr(sft, "add_prefix_space", False) and words.add_prefix_space


# ----- statistics and preview ------------------------------------------------------------------------------


def test_stats_count_turns_tokens_and_truncation_and_the_preview_highlights_trained_tokens(tmp_path, smollm2_tokenizer):
    path = write_chat_jsonl(tmp_path / "train.jsonl", chat_records(6) + [
        {"messages": [{"role": "user", "content": "word " * 100}, {"role": "assistant", "content": "negative"}]}])
    summary = ftkit.data_stats(str(path), "sft", tokenizer=smollm2_tokenizer, max_length=64)
    train = summary.splits["train"]
    assert train.examples == 7 and train.label_counts == {"negative": 4, "positive": 3}
    assert train.extra["turns"] == 14 and train.extra["assistant turns"] == 7
    assert train.extra["truncated at 64"] == 1 and train.extra["dropped (answer cut)"] == 1
    assert train.extra["completion tokens"]["max"] == 2  # the answer word and <|im_end|>
    text = str(summary)
    assert "conversations" in text and "truncated at 64" in text and "prompt tokens" in text
    preview = ftkit.data_preview(load(str(path), task="sft")["train"], n=7, task="sft", tokenizer=smollm2_tokenizer,
                                 max_length=64)
    assert '<span class="ftkit-trained"' in preview and "negative&lt;|im_end|&gt;" in preview
    assert "&lt;|im_start|&gt;user" in preview and "cut at 64 of" in preview and "dropped" in preview
    assert "<script" not in ftkit.data_preview(load([{"prompt": "<script>", "completion": "x"}], task="sft")["train"],
                                               task="sft", tokenizer=smollm2_tokenizer)


def test_stats_without_a_tokenizer_use_the_default_causal_models(tmp_path, default_causal_dir):
    path = write_chat_jsonl(tmp_path / "train.jsonl", chat_records(3))
    assert ftkit.data_stats(str(path), "sft").splits["train"].extra["completion tokens"]["max"] == 2


def test_the_data_picker_shows_an_sft_file_with_its_answers_and_trained_tokens(tmp_path, default_causal_dir):
    from ftkit.notebook.widgets.data_picker import DataPicker

    path = write_chat_jsonl(tmp_path / "train.jsonl", chat_records(4))
    picker = DataPicker(str(path), task="sft")
    assert picker.dataset is not None and "examples per answer" in picker.distribution.value
    assert "ftkit-trained" in picker.preview.value and "prompt tokens" in picker.stats_view.value


# ----- scoring ----------------------------------------------------------------------------------------------


def test_exact_match_ignores_case_and_whitespace_and_rouge_l_is_the_lcs_f_measure():
    assert exact_match("  Positive\n", "positive") and exact_match("a  b", "A b") and not exact_match("positive.", "positive")
    assert _lcs_f1("the cat sat".split(), "the cat".split()) == pytest.approx(0.8)
    assert _lcs_f1([], ["a"]) == 0.0 and rouge_l("A B C", "a b c") == pytest.approx(1.0)
    assert answer_set(["a", "b", "a"]) == ["a", "b"] and answer_set(["a", "b"]) == [] and answer_set(["a", "a"]) == []
    rows = [{"match": True, "stopped": True, "choice": "a", "reference": "a", "generation": "a"},
            {"match": False, "stopped": False, "choice": "a", "reference": "b", "generation": "c"}]
    assert answer_metrics(rows, rouge=True) == {"exact_match": 0.5, "stopped": 0.5, "samples": 2,
                                                "label_accuracy": 0.5, "rouge_l": 0.5}


def test_the_report_shows_loss_perplexity_and_exact_match():
    from ftkit.tasks.scoring import report_table

    table = report_table({"test_loss": 0.5, "test_perplexity": 1.65, "test_exact_match": 0.75, "test_samples": 8}, "sft")
    assert "loss" in table and "perplexity" in table and "exact match" in table and "0.7500" in table


# ----- the model: LoRA on every linear layer, no head; packing ---------------------------------------------------


def test_lora_for_sft_wraps_every_linear_layer_but_the_lm_head_and_saves_no_head(tiny_llama_dir):
    from ftkit.config import AdapterConfig
    from ftkit.engine.adapters import apply_adapter
    from ftkit.engine.models import build_model

    model = apply_adapter(build_model(str(tiny_llama_dir), "sft", []), AdapterConfig(kind="lora", r=2), "sft")
    wrapped = {name.split(".")[-1] for name, _ in model.named_modules() if name.endswith(".lora_A")}
    lora_layers = {name.rsplit(".", 2)[-2] for name, _ in model.named_modules() if name.endswith(".lora_A")}
    assert wrapped and lora_layers == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert not model.peft_config["default"].modules_to_save
    assert not any(p.requires_grad for name, p in model.named_parameters() if "lora_" not in name)
    with pytest.raises(ConfigError, match="adapter 'head' trains only a new task head, and sft has none"):
        apply_adapter(build_model(str(tiny_llama_dir), "sft", []), AdapterConfig(kind="head"), "sft")
    full = apply_adapter(build_model(str(tiny_llama_dir), "sft", []), AdapterConfig(kind="full"), "sft")
    assert all(p.requires_grad for p in full.parameters())


def test_the_memory_estimate_counts_lora_on_every_linear_layer_and_the_vocabulary_logits(tiny_llama_dir):
    from ftkit.engine.models import estimate_peak_memory

    lora = estimate_peak_memory(str(tiny_llama_dir), "sft", "lora", 4, 64, lora_r=2)
    full = estimate_peak_memory(str(tiny_llama_dir), "sft", "full", 4, 64)
    # 2 layers x (q,k,v,o,gate,up,down) x r (in + out)
    per_layer = 2 * ((32 + 32) + (32 + 16) + (32 + 16) + (32 + 32) + (32 + 64) * 2 + (64 + 32))
    assert lora["trainable_parameters"] == 2 * per_layer and full["trainable_parameters"] == full["parameters"]
    assert lora["activations"] > 4 * 64 * 49152 * 4  # the logits over the vocabulary


def test_sft_packing_is_probed_on_the_model_as_it_trains_with_its_kv_cache_off(sft_config, tmp_path, monkeypatch):
    """configure_model turns the KV cache off before the probe sees the model (with a cache on, causal
    masks stop finding packed rows from position_ids), and the trainer packs as the probe says."""
    from ftkit.engine import arguments
    from ftkit.engine.packing import PackingProbe
    from ftkit.engine.training import build_trainer, prepare

    sft_config["training"]["padding_free"] = "always"
    prepared = prepare(load_config(sft_config))
    caches = []
    monkeypatch.setattr(arguments, "probe_packing",
                        lambda model: caches.append(model.config.use_cache) or PackingProbe(True, "apart"))
    trainer = build_trainer(prepared, tmp_path / "run")
    assert caches == [False]
    assert type(trainer.train_data_collator).__name__ == "DataCollatorWithFlattening"


def test_the_probe_runs_on_a_lora_wrapped_causal_lm(tiny_llama_dir):
    from ftkit.config import AdapterConfig
    from ftkit.engine.adapters import apply_adapter
    from ftkit.engine.models import build_model
    from ftkit.engine.packing import probe_packing

    model = build_model(str(tiny_llama_dir), "sft", [])
    get_task("sft").configure_model(model)
    model = apply_adapter(model, AdapterConfig(kind="lora", r=2), "sft").train()
    probe = probe_packing(model)
    assert not probe.reason.startswith("cannot"), probe.reason  # the packed row went through the model
    assert model.training
