"""Models load offline with labelled heads; memory estimates follow from the config alone."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import BertConfig

from ftkit.config import Config
from ftkit.errors import FtkitError
from ftkit.engine.models import (
    build_model,
    default_model_dir,
    describe_memory,
    device_summary,
    estimate_peak_memory,
    load_tokenizer,
    oom_advice,
)

NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


@pytest.mark.parametrize("task, head", [("ner", "BertForTokenClassification"),
                                        ("classification", "BertForSequenceClassification")])
def test_build_model_names_every_label_in_both_directions(tiny_model_dir, task, head):
    model = build_model(str(tiny_model_dir), task, NER_LABELS)
    assert type(model).__name__ == head
    assert model.config.num_labels == len(NER_LABELS)
    assert model.config.id2label == dict(enumerate(NER_LABELS))
    assert model.config.label2id == {label: i for i, label in enumerate(NER_LABELS)}


def test_build_model_does_not_report_the_expected_new_head(tiny_model_dir, capfd, caplog):
    with caplog.at_level(logging.WARNING):
        build_model(str(tiny_model_dir), "ner", NER_LABELS)
    output = capfd.readouterr()
    assert "LOAD REPORT" not in output.err + output.out + caplog.text
    assert "lacks" not in caplog.text


def test_build_model_warns_when_the_checkpoint_lacks_encoder_weights(tiny_model_dir, tmp_path, caplog):
    import json
    import shutil

    folder = shutil.copytree(tiny_model_dir, tmp_path / "three-layers")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with caplog.at_level(logging.WARNING, logger="ftkit"):
        build_model(str(folder), "ner", NER_LABELS)
    assert "lacks" in caplog.text and "encoder.layer.2." in caplog.text
    assert "classifier" not in caplog.text


def test_build_model_rejects_an_empty_label_set_and_unknown_tasks(tiny_model_dir):
    with pytest.raises(FtkitError, match="at least one label"):
        build_model(str(tiny_model_dir), "ner", [])
    with pytest.raises(FtkitError, match="unknown task"):
        build_model(str(tiny_model_dir), "summarise", NER_LABELS)


def test_a_hub_id_offline_fails_with_advice_to_use_a_local_folder():
    with pytest.raises(FtkitError, match="model: default"):
        build_model("nobody-here/no-such-model", "ner", NER_LABELS)
    with pytest.raises(FtkitError, match="model: default"):
        load_tokenizer("nobody-here/no-such-model")


def test_tokenizer_is_fast_and_aligns_pre_split_words(tiny_model_dir):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    encoded = tokenizer(["john", "xylophonist"], is_split_into_words=True)
    assert tokenizer.is_fast
    assert encoded.word_ids()[0] is None and encoded.word_ids()[1] == 0 and encoded.word_ids().count(1) > 1


def test_byte_level_bpe_tokenizers_get_a_prefix_space_so_pre_split_words_work(tmp_path):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["john smith lives in new york"] * 5, vocab_size=300, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(tmp_path))
    RobertaTokenizer(vocab=str(tmp_path / "vocab.json"), merges=str(tmp_path / "merges.txt")).save_pretrained(tmp_path / "tok")

    tokenizer = load_tokenizer(str(tmp_path / "tok"))

    assert tokenizer.add_prefix_space
    word_ids = tokenizer(["john", "smith"], is_split_into_words=True).word_ids()
    assert word_ids[0] is None and word_ids[-1] is None and set(word_ids[1:-1]) == {0, 1}


def test_the_embedded_default_model_loads_offline_with_every_encoder_weight(caplog):
    from safetensors import safe_open

    with caplog.at_level(logging.WARNING, logger="ftkit"):
        model = build_model(str(default_model_dir()), "ner", NER_LABELS)
    assert "lacks" not in caplog.text
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (384, 6)
    with safe_open(str(default_model_dir() / "model.safetensors"), "pt") as weights:
        for key in ("embeddings.word_embeddings.weight", "encoder.layer.5.output.dense.weight"):
            torch.testing.assert_close(model.bert.get_parameter(key), weights.get_tensor(key))


# ----- memory ----------------------------------------------------------------------------------------


def test_memory_estimate_grows_with_the_batch_size():
    small, large = (estimate_peak_memory(BertConfig(), "ner", "full", batch, 128) for batch in (8, 32))
    assert large["activations"] > 3.9 * small["activations"]
    assert large["weights"] == small["weights"] and large["total"] > small["total"]


def test_lora_cuts_optimizer_state_by_over_90_percent_on_bert_base():
    full = estimate_peak_memory(BertConfig(), "ner", "full", 16, 128)
    lora = estimate_peak_memory(BertConfig(), "ner", "lora", 16, 128)
    assert 105e6 < full["parameters"] < 115e6  # BERT-base: ~110M parameters with the embeddings
    assert full["optimizer"] == 8 * full["parameters"]
    assert lora["optimizer"] < 0.1 * full["optimizer"]
    assert lora["weights"] == full["weights"]


def test_a_frozen_encoder_needs_no_encoder_activations_and_half_precision_halves_them():
    full = estimate_peak_memory(BertConfig(), "classification", "full", 16, 128)
    head = estimate_peak_memory(BertConfig(), "classification", "head", 16, 128)
    bf16 = estimate_peak_memory(BertConfig(), "classification", "full", 16, 128, precision="bf16")
    assert head["activations"] < 0.05 * full["activations"]
    assert 0.5 < bf16["activations"] / full["activations"] < 0.6
    assert set(full) >= {"weights", "gradients", "optimizer", "activations", "total"}
    assert full["total"] == full["weights"] + full["gradients"] + full["optimizer"] + full["activations"]


def test_memory_estimate_reads_the_config_of_a_model_folder(tiny_model_dir):
    estimate = estimate_peak_memory(str(tiny_model_dir), "ner", "full", 4, 32)
    model = build_model(str(tiny_model_dir), "ner", [f"T{i}" for i in range(9)])
    assert estimate["parameters"] == sum(p.numel() for p in model.parameters())
    assert describe_memory(estimate).startswith("~")


def test_oom_advice_halves_the_batch_and_doubles_accumulation_to_keep_the_effective_batch():
    advice = oom_advice(Config.from_dict({"training": {"batch_size": 32, "gradient_accumulation_steps": 2, "max_seq_length": 256}}))
    assert "training.batch_size=16" in advice and "training.gradient_accumulation_steps=4" in advice
    assert "effective batch of 64" in advice
    assert "adapter.kind=lora" in advice and "training.max_seq_length=128" in advice
    assert "training.batch_size=auto" in advice
    assert "training.batch_size=4" in oom_advice({"training": {"batch_size": 8}, "adapter": {"kind": "lora"}})


def test_device_summary_says_whether_cuda_and_bf16_are_there():
    summary = device_summary()
    assert summary["cuda_available"] == torch.cuda.is_available()
    assert set(summary) >= {"cuda_available", "name", "bf16_supported"}
