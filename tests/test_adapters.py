"""Adapters decide what trains; checkpoints of every kind reload into the model that was trained."""

from __future__ import annotations

import json

import pytest
import torch

from ftkit.engine.adapters import (
    adapter_only,
    apply_adapter,
    describe_parameters,
    load_for_inference,
    merge_checkpoint,
    parameter_counts,
    save_checkpoint,
)
from ftkit.config import AdapterConfig
from ftkit.errors import ConfigError, FtkitError
from ftkit.engine.models import build_model, load_tokenizer

NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
SENTENCES = [["john", "smith", "lives", "in", "new", "york"], ["peter", "blackburn", "said", "xylophonist"]]


def labels_for(task):
    return NER_LABELS if task == "ner" else ["negative", "positive"]


def trainable_names(model):
    return {name for name, p in model.named_parameters() if p.requires_grad}


def encode(tokenizer, task):
    if task == "ner":
        return tokenizer(SENTENCES, is_split_into_words=True, padding=True, return_tensors="pt")
    return tokenizer([" ".join(words) for words in SENTENCES], padding=True, return_tensors="pt")


def train_a_few_steps(model, tokenizer, task, steps=5):
    """Move every trainable weight (LoRA B starts at zero, the head at random) away from its start."""
    torch.manual_seed(1)
    batch = encode(tokenizer, task)
    shape = batch["input_ids"].shape if task == "ner" else (batch["input_ids"].shape[0],)
    labels = torch.randint(0, len(labels_for(task)), shape)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return model


def logits_of(model, tokenizer, task):
    with torch.no_grad():
        return model(**encode(tokenizer, task)).logits


@pytest.fixture
def tokenizer(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))


def adapted(tiny_model_dir, task, kind, **kw):
    return apply_adapter(build_model(str(tiny_model_dir), task, labels_for(task)), AdapterConfig(kind=kind, **kw), task)


# ----- what trains ------------------------------------------------------------------------------


def test_full_adapter_trains_every_weight(tiny_model_dir):
    model = adapted(tiny_model_dir, "ner", "full")
    trainable, total = parameter_counts(model)
    assert trainable == total


def test_head_adapter_freezes_the_encoder_and_trains_only_the_classifier(tiny_model_dir):
    model = adapted(tiny_model_dir, "ner", "head")
    assert trainable_names(model) == {"classifier.weight", "classifier.bias"}


def test_head_adapter_for_classification_also_trains_the_pooler(tiny_model_dir):
    names = trainable_names(adapted(tiny_model_dir, "classification", "head"))
    assert {"classifier.weight", "bert.pooler.dense.weight"} <= names
    assert not any(".encoder." in name or ".embeddings." in name for name in names)


def test_lora_trains_attention_adapters_and_the_head_but_no_base_weight(tiny_model_dir):
    names = trainable_names(adapted(tiny_model_dir, "ner", "lora", r=4))
    assert any("attention.self.query.lora_A" in n for n in names)
    assert any("attention.self.value.lora_B" in n for n in names)
    assert any("classifier.modules_to_save" in n for n in names)
    assert all("lora_" in n or "modules_to_save" in n for n in names)


def test_trainable_parameters_grow_from_head_to_lora_to_full(tiny_model_dir):
    head, lora, full = (parameter_counts(adapted(tiny_model_dir, "ner", kind, r=4))[0] for kind in ("head", "lora", "full"))
    assert head < lora < full
    assert head * 5 < lora


def test_describe_parameters_shows_counts_and_share(tiny_model_dir):
    text = describe_parameters(adapted(tiny_model_dir, "ner", "head"))
    trainable, total = parameter_counts(adapted(tiny_model_dir, "ner", "head"))
    assert text == f"trainable {trainable:,} / {total:,} ({100 * trainable / total:.2f}%)"


def _tiny(config_class, **kw):
    from transformers import AutoModelForTokenClassification

    config = config_class(vocab_size=64, num_labels=3, **kw)
    return AutoModelForTokenClassification.from_config(config)


@pytest.mark.parametrize("architecture", ["bert", "roberta", "electra", "distilbert", "deberta-v2"])
def test_lora_targets_every_linear_layer_of_each_encoder_block_and_nothing_else(architecture):
    """Attention projections and feed-forward layers alike (the study in RESULTS.md), never the head."""
    from transformers import BertConfig, DebertaV2Config, DistilBertConfig, ElectraConfig, RobertaConfig

    small = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    configs = {
        "bert": lambda: _tiny(BertConfig, **small),
        "roberta": lambda: _tiny(RobertaConfig, **small),
        "electra": lambda: _tiny(ElectraConfig, embedding_size=16, **small),
        "distilbert": lambda: _tiny(DistilBertConfig, dim=16, n_layers=1, n_heads=2, hidden_dim=32),
        "deberta-v2": lambda: _tiny(DebertaV2Config, **small),
    }
    base = configs[architecture]()
    block_linears = {name.split("layer.0.")[1] for name, module in base.named_modules()
                     if isinstance(module, torch.nn.Linear) and "layer.0." in name}
    model = apply_adapter(base, AdapterConfig(kind="lora", r=2), "ner")
    adapted = {name.removesuffix(".lora_A.default.weight") for name, _ in model.named_parameters()
               if name.endswith("lora_A.default.weight")}
    assert all("layer.0." in name for name in adapted)
    assert {name.split("layer.0.")[1] for name in adapted} == block_linears
    assert len(block_linears) >= 6  # q, k, v, attention output, and the two feed-forward layers


def test_lora_with_unknown_target_modules_says_which_layers_exist(tiny_model_dir):
    with pytest.raises(ConfigError, match="query"):
        adapted(tiny_model_dir, "ner", "lora", target_modules=["no_such_layer"])


# ----- saving and reloading (the known trap: a LoRA model that lost its trained head) ------------


@pytest.mark.parametrize("task", ["ner", "classification"])
def test_reloaded_lora_checkpoint_keeps_its_trained_head_and_predictions(tiny_model_dir, tokenizer, tmp_path, task):
    model = train_a_few_steps(adapted(tiny_model_dir, task, "lora", r=4), tokenizer, task)
    expected = logits_of(model, tokenizer, task)
    save_checkpoint(model, tokenizer, tmp_path / "checkpoint-5")

    reloaded, reloaded_tokenizer = load_for_inference(tmp_path / "checkpoint-5")

    assert adapter_only(tmp_path / "checkpoint-5")
    assert reloaded.config.id2label == dict(enumerate(labels_for(task)))
    torch.testing.assert_close(logits_of(reloaded, reloaded_tokenizer, task), expected)


def test_lora_checkpoint_saved_by_peft_alone_still_restores_the_head(tiny_model_dir, tokenizer, tmp_path):
    # The Trainer saves LoRA checkpoints with PeftModel.save_pretrained: no config.json, so no label names.
    model = train_a_few_steps(adapted(tiny_model_dir, "ner", "lora", r=4), tokenizer, "ner")
    model.save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")

    reloaded, _ = load_for_inference(tmp_path / "ckpt")

    assert len(reloaded.config.id2label) == len(NER_LABELS)
    torch.testing.assert_close(logits_of(reloaded, tokenizer, "ner"), logits_of(model, tokenizer, "ner"))


def test_reloaded_full_checkpoint_gives_identical_predictions(tiny_model_dir, tokenizer, tmp_path):
    model = train_a_few_steps(adapted(tiny_model_dir, "ner", "full"), tokenizer, "ner")
    model.save_pretrained(tmp_path / "full")
    tokenizer.save_pretrained(tmp_path / "full")

    reloaded, _ = load_for_inference(tmp_path / "full")

    assert not adapter_only(tmp_path / "full")
    assert reloaded.config.id2label == dict(enumerate(NER_LABELS))
    torch.testing.assert_close(logits_of(reloaded, tokenizer, "ner"), logits_of(model, tokenizer, "ner"))


@pytest.mark.parametrize("kind", ["lora", "full"])
def test_merged_checkpoint_loads_with_plain_transformers_and_predicts_the_same(tiny_model_dir, tokenizer, tmp_path, kind):
    from transformers import AutoModelForTokenClassification

    model = train_a_few_steps(adapted(tiny_model_dir, "ner", kind, r=4), tokenizer, "ner")
    save_checkpoint(model, tokenizer, tmp_path / "checkpoint")

    out = merge_checkpoint(tmp_path / "checkpoint", tmp_path / "merged")
    merged = AutoModelForTokenClassification.from_pretrained(out).eval()

    assert not adapter_only(out) and (out / "tokenizer.json").is_file()
    assert merged.config.id2label == dict(enumerate(NER_LABELS))
    torch.testing.assert_close(logits_of(merged, tokenizer, "ner"), logits_of(model, tokenizer, "ner"), rtol=1e-4, atol=1e-5)


def lora_trainer(model_dir, tokenizer, output_dir, steps):
    """ftkit's Trainer on a LoRA NER model, saving a checkpoint every 2 steps."""
    from datasets import Dataset
    from transformers import DataCollatorForTokenClassification, TrainingArguments

    from ftkit.engine.trainer import FtkitTrainer

    encoded = encode(tokenizer, "ner")
    rows = [{"input_ids": ids, "attention_mask": mask, "labels": [i % len(NER_LABELS) for i in range(len(ids))]}
            for ids, mask in zip(encoded["input_ids"].tolist(), encoded["attention_mask"].tolist())] * 4
    args = TrainingArguments(str(output_dir), max_steps=steps, save_steps=2, per_device_train_batch_size=4,
                             learning_rate=1e-2, report_to=[], use_cpu=True, disable_tqdm=True)
    return FtkitTrainer(model=adapted(model_dir, "ner", "lora", r=4), args=args, train_dataset=Dataset.from_list(rows),
                        data_collator=DataCollatorForTokenClassification(tokenizer), processing_class=tokenizer)


def test_lora_checkpoints_saved_by_the_trainer_keep_label_names_and_still_resume(tiny_model_dir, tokenizer, tmp_path):
    def trainer(steps):
        return lora_trainer(tiny_model_dir, tokenizer, tmp_path, steps)

    first = trainer(2)
    first.train()
    reloaded, _ = load_for_inference(tmp_path / "checkpoint-2")
    assert reloaded.config.id2label == dict(enumerate(NER_LABELS))
    torch.testing.assert_close(logits_of(reloaded, tokenizer, "ner"), logits_of(first.model.eval(), tokenizer, "ner"))

    trainer(4).train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert load_for_inference(tmp_path / "checkpoint-4")[0].config.id2label == dict(enumerate(NER_LABELS))


class KilledAfterRename(BaseException):
    """The worker dying in the instant after a checkpoint's rename, before anything else runs."""


def test_a_crash_just_after_the_rename_leaves_a_lora_checkpoint_that_loads_with_its_labels(
        tiny_model_dir, tokenizer, tmp_path, monkeypatch):
    import os

    from ftkit.runstore.layout import PARTIAL_PREFIX

    real_replace, renamed = os.replace, {}

    def replace_then_die(source, target):
        if not os.path.basename(source).startswith(PARTIAL_PREFIX):
            return real_replace(source, target)
        renamed[os.path.basename(target)] = sorted(os.listdir(source))  # the folder as it is renamed
        real_replace(source, target)
        raise KilledAfterRename

    monkeypatch.setattr(os, "replace", replace_then_die)
    with pytest.raises(KilledAfterRename):
        lora_trainer(tiny_model_dir, tokenizer, tmp_path, 4).train()
    monkeypatch.undo()

    assert list(renamed) == ["checkpoint-2"]
    assert "config.json" in renamed["checkpoint-2"] and "adapter_model.safetensors" in renamed["checkpoint-2"]
    checkpoints = sorted(tmp_path.glob("checkpoint-*"))
    assert [c.name for c in checkpoints] == ["checkpoint-2"]
    for folder in checkpoints:
        assert json.loads((folder / "config.json").read_text())["id2label"] == {str(i): label for i, label in enumerate(NER_LABELS)}
        assert load_for_inference(folder)[0].config.id2label == dict(enumerate(NER_LABELS))

def test_load_for_inference_explains_a_folder_that_is_no_checkpoint(tmp_path):
    with pytest.raises(FtkitError, match="not a checkpoint"):
        load_for_inference(tmp_path)
    with pytest.raises(FtkitError, match="does not exist"):
        load_for_inference(tmp_path / "missing")


def test_a_lora_checkpoint_whose_base_model_is_gone_says_how_to_recover(tiny_model_dir, tokenizer, tmp_path):
    import shutil

    base = shutil.copytree(tiny_model_dir, tmp_path / "base")
    model = apply_adapter(build_model(str(base), "ner", NER_LABELS), AdapterConfig(kind="lora", r=4), "ner")
    save_checkpoint(model, tokenizer, tmp_path / "checkpoint")
    shutil.rmtree(base)
    with pytest.raises(FtkitError, match="no longer exists.*merge"):
        load_for_inference(tmp_path / "checkpoint")


def test_checkpoint_config_records_the_base_model_for_lora(tiny_model_dir, tokenizer, tmp_path):
    save_checkpoint(adapted(tiny_model_dir, "ner", "lora", r=4), tokenizer, tmp_path / "c")
    adapter_config = json.loads((tmp_path / "c" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(tiny_model_dir)
    assert "classifier" in adapter_config["modules_to_save"]
