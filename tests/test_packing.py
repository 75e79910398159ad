"""Padding-free batches follow a probe of the loaded model, not a table of which libraries pack.

The decision is checked on toy models whose behaviour is fixed here (one keeps packed examples
apart, others let them see each other), so these tests hold whatever the installed transformers
does; the real models ftkit builds are checked to run through the probe.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ftkit.config import load_config
from ftkit.engine.arguments import padding_free
from ftkit.engine.packing import packed_collator, probe_packing
from ftkit.errors import FtkitError


class Mixer(torch.nn.Module):
    """A stand-in for attention: each token's output is its embedding plus the mean of the tokens it
    sees. ``by_positions``: a packed row's examples are found where ``position_ids`` restart at 0 and
    see only themselves; otherwise the whole row is one example (``causal``: only the tokens before)."""

    def __init__(self, by_positions: bool, causal: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(64, 4)
        self.by_positions, self.causal, self.calls = by_positions, causal, 0
        self.config = SimpleNamespace(_attn_implementation="toy")

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids, attention_mask=None, position_ids=None, **flash_kwargs):
        self.calls += 1
        x = self.embed(input_ids)[0]
        length = len(x)
        segment = torch.zeros(length, dtype=torch.long)
        if self.by_positions and position_ids is not None:
            segment = (position_ids[0] == 0).cumsum(0)
        sees = segment[:, None] == segment[None, :]
        if self.causal:
            sees &= torch.ones(length, length, dtype=torch.bool).tril()
        return SimpleNamespace(logits=(x + (sees.float() / sees.sum(1, keepdim=True)) @ x)[None])


class NoPackedRows(Mixer):
    """A model whose forward takes no ``position_ids`` (as some custom heads)."""

    def forward(self, input_ids, attention_mask=None):
        return super().forward(input_ids, attention_mask)


def test_the_probe_says_safe_for_a_model_that_keeps_packed_examples_apart():
    probe = probe_packing(Mixer(by_positions=True))
    assert probe.apart, probe.reason


@pytest.mark.parametrize("causal, leaked", [(False, "the first and the second"), (True, "the second")])
def test_the_probe_says_leaks_for_a_model_whose_packed_examples_see_each_other(causal, leaked):
    probe = probe_packing(Mixer(by_positions=False, causal=causal))
    assert not probe.apart
    assert f"{leaked} of two packed examples came out different" in probe.reason and "toy attention" in probe.reason


def test_a_model_that_cannot_take_a_packed_row_does_not_pack():
    probe = probe_packing(NoPackedRows(by_positions=True))
    assert not probe.apart and probe.reason.startswith("cannot take a packed row (TypeError")


def test_the_probe_runs_once_per_model_without_gradients_and_restores_the_training_mode():
    model = Mixer(by_positions=True).train()
    seen = []
    model.register_forward_hook(lambda module, args, output: seen.append((module.training, torch.is_grad_enabled())))
    first = probe_packing(model)
    assert seen == [(False, False)] * 3  # packed, then each example alone: in eval mode, without gradients
    assert model.training
    assert probe_packing(model) is first and model.calls == 3
    evaluating = Mixer(by_positions=True).eval()
    probe_packing(evaluating)
    assert not evaluating.training


def _ner(choice: str):
    return load_config(task="ner", training={"padding_free": choice})


def test_padding_free_follows_the_probe_on_a_gpu_and_always_refuses_a_model_that_leaks():
    assert padding_free(_ner("auto"), Mixer(by_positions=True), cuda=True)
    assert not padding_free(_ner("auto"), Mixer(by_positions=False), cuda=True)
    assert padding_free(_ner("always"), Mixer(by_positions=True), cuda=False)
    with pytest.raises(FtkitError, match="padding_free is 'always', but Mixer with toy attention, the first and the "
                                         "second of two packed examples .* would see each other.*padding_free: auto"):
        padding_free(_ner("always"), Mixer(by_positions=False), cuda=True)


def test_padding_free_needs_no_probe_where_it_will_not_pack():
    model = Mixer(by_positions=True)
    assert not padding_free(_ner("never"), model, cuda=True)
    assert not padding_free(_ner("auto"), model, cuda=False)  # on CPU packing trains no faster (RESULTS.md)
    assert not padding_free(load_config(task="classification"), model, cuda=True)  # one pooled vector per row
    assert model.calls == 0
    with pytest.raises(FtkitError, match="classification cannot pack: packed batches need a token-level task"):
        padding_free(load_config(task="classification", training={"padding_free": "always"}), model, cuda=True)


def test_the_packed_collator_makes_one_row_with_sequence_boundaries():
    batch = packed_collator()([
        {"input_ids": [2, 10, 3], "labels": [-100, 1, -100]}, {"input_ids": [2, 11, 12, 3], "labels": [-100, 0, 2, -100]}])
    assert batch["input_ids"].shape == (1, 7)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 3]]
    assert batch["cu_seq_lens_q"].tolist() == [0, 3, 7]


class DropsPositions(torch.nn.Module):
    """A real model called without ``position_ids`` or boundaries: nothing tells it where examples start."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config = model, model.config

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def forward(self, input_ids, attention_mask=None, **ignored):
        return self.model(input_ids=input_ids, attention_mask=attention_mask)


def test_the_probe_runs_on_a_bert_token_classifier_and_catches_it_when_boundaries_are_lost(tiny_model_dir):
    from ftkit.engine.models import build_model

    model = build_model(str(tiny_model_dir), "ner", ["O", "B-PER", "I-PER"]).train()
    probe = probe_packing(model)
    assert not probe.reason.startswith("cannot"), probe.reason  # the packed row went through the model
    assert model.training
    blind = probe_packing(DropsPositions(model))
    assert not blind.apart and "the first and the second of two packed examples" in blind.reason


def test_build_trainer_packs_training_batches_exactly_when_the_probe_allows(tiny_model_dir, tmp_path, conll_sample,
                                                                           monkeypatch):
    from ftkit.engine import arguments
    from ftkit.engine.packing import PackingProbe
    from ftkit.engine.training import build_trainer, prepare

    config = load_config(task="ner", model=str(tiny_model_dir), data={"train": str(conll_sample)},
                         training={"max_seq_length": 32, "padding_free": "always"}, output={"dir": str(tmp_path)})
    prepared = prepare(config)
    monkeypatch.setattr(arguments, "probe_packing", lambda model: PackingProbe(True, "apart"))
    trainer = build_trainer(prepared, tmp_path / "run")
    assert type(trainer.train_data_collator).__name__ == "DataCollatorWithFlattening"
    assert type(trainer.data_collator).__name__ == "DataCollatorForTokenClassification"  # evaluation stays padded
    monkeypatch.setattr(arguments, "probe_packing", lambda model: PackingProbe(False, "leaks"))
    with pytest.raises(FtkitError, match="leaks"):
        build_trainer(prepared, tmp_path / "run2")
