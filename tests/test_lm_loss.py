"""The SFT loss from the logits of trained positions alone equals the model's own full-logits loss."""

from __future__ import annotations

import pytest
import torch

from ftkit.engine.lm_loss import loss_at_trained_positions, trained_positions
from ftkit.engine.packing import packed_collator
from ftkit.tasks.sft_encoding import SFTCollator, encode_conversation
from tests.sft_fixtures import chat_records, default_causal_dir, smollm2_tokenizer, tiny_llama  # noqa: F401


@pytest.fixture()
def rows(smollm2_tokenizer):
    """Chats of different lengths, trained on their answers only (a few tokens per row)."""
    records = chat_records(3)
    records[1]["messages"][0]["content"] += " A much longer review, padded rows differ in length."
    return [encode_conversation(smollm2_tokenizer, r["messages"], "completion") for r in records]


def _batch(rows, tokenizer):
    return SFTCollator(pad_token_id=tokenizer.pad_token_id)([{"input_ids": r.input_ids, "labels": r.labels}
                                                              for r in rows])


def _gradients(model, loss):
    model.zero_grad()
    loss.backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_only_positions_whose_next_token_is_trained_get_logits(rows, smollm2_tokenizer):
    batch = _batch(rows, smollm2_tokenizer)
    positions = trained_positions(batch["labels"])
    assert len(positions) < batch["labels"].shape[1] / 2
    assert ((batch["labels"][:, 1:] != -100).any(0).nonzero().squeeze(-1) == positions).all()


@pytest.mark.parametrize("num_items", [None, 11])
def test_the_loss_and_its_gradients_equal_the_full_logits_loss_of_a_padded_batch(tiny_llama, rows,
                                                                                  smollm2_tokenizer, num_items):
    batch = _batch(rows, smollm2_tokenizer)
    extra = {} if num_items is None else {"num_items_in_batch": torch.tensor(num_items)}
    full = tiny_llama(**batch, **extra).loss
    sparse = loss_at_trained_positions(tiny_llama, batch, extra.get("num_items_in_batch"))
    assert sparse.item() == pytest.approx(full.item(), rel=1e-5)
    for a, b in zip(_gradients(tiny_llama, full), _gradients(tiny_llama, sparse)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_the_loss_of_a_packed_row_equals_the_full_logits_loss(tiny_llama, rows):
    batch = packed_collator()([{"input_ids": r.input_ids, "labels": r.labels} for r in rows])
    full = tiny_llama(**batch, use_cache=False).loss  # as trained: a KV cache would let packed examples meet
    assert loss_at_trained_positions(tiny_llama, batch).item() == pytest.approx(full.item(), rel=1e-5)


def test_a_forward_that_ignores_logits_to_keep_gives_the_same_loss(tiny_llama, rows, smollm2_tokenizer, monkeypatch):
    batch = _batch(rows, smollm2_tokenizer)
    full = tiny_llama(**batch).loss
    forward = tiny_llama.forward
    monkeypatch.setattr(tiny_llama, "forward", lambda *a, logits_to_keep=0, **k: forward(*a, **k))
    assert loss_at_trained_positions(tiny_llama, batch).item() == pytest.approx(full.item(), rel=1e-5)


def test_an_sft_trainer_trains_and_evaluates_on_the_sparse_loss_with_the_same_values(tiny_llama, rows,
                                                                                     smollm2_tokenizer, tmp_path):
    from transformers import TrainingArguments

    from ftkit.engine.trainer import FtkitTrainer

    batch = _batch(rows, smollm2_tokenizer)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    dense = FtkitTrainer(model=tiny_llama, args=args)
    sparse = FtkitTrainer(model=tiny_llama, args=args, sparse_lm_loss=True)
    count = torch.tensor(9)
    assert sparse.compute_loss(tiny_llama, dict(batch), num_items_in_batch=count).item() == pytest.approx(
        dense.compute_loss(tiny_llama, dict(batch), num_items_in_batch=count).item(), rel=1e-5)
    loss, logits, labels = sparse.prediction_step(tiny_llama, dict(batch), prediction_loss_only=True)
    assert logits is None and labels is None
    assert loss.item() == pytest.approx(dense.prediction_step(tiny_llama, dict(batch), True)[0].item(), rel=1e-5)
