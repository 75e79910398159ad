"""Which tokens SFT trains on, exactly: assistant spans with their end-of-turn token, truncation, padding.

Run against SmolLM2's real tokenizer: a ChatML template without ``{% generation %}`` markers whose
pad token is its end-of-turn token.
"""

from __future__ import annotations

import copy

import pytest

from ftkit.data.chat import chatterbot_pairs, chitchat_conversations
from ftkit.errors import DataError
from ftkit.tasks.sft_encoding import (IGNORE_INDEX, SFTCollator, assistant_spans, drop_untrained, encode_batch,
                                      encode_conversation, render_ids, sft_token_stats, trained_spans_html)
from tests.sft_fixtures import default_causal_dir, smollm2_tokenizer, tiny_llama  # noqa: F401 (fixtures)

EXCHANGE = [{"role": "user", "content": "Is this review positive? Great fun."},
            {"role": "assistant", "content": "positive"}]
MULTI_TURN = [{"role": "system", "content": "Answer briefly."},
              {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"},
              {"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "Fine, thanks."},
              {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye!"}]


def trained_runs(tokenizer, input_ids, labels) -> list[str]:
    """The decoded text of each contiguous run of trained positions."""
    runs, current = [], []
    for token, label in zip(input_ids, labels):
        if label != IGNORE_INDEX:
            assert label == token  # a trained label is the token itself (the model shifts)
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tokenizer.decode(run, skip_special_tokens=False) for run in runs]


def test_the_premises_pad_is_end_of_turn_and_the_template_has_no_generation_markers(smollm2_tokenizer):
    assert smollm2_tokenizer.pad_token_id == smollm2_tokenizer.eos_token_id == smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert "{% generation %}" not in smollm2_tokenizer.chat_template
    masks = smollm2_tokenizer.apply_chat_template(EXCHANGE, tokenize=True, return_dict=True,
                                                  return_assistant_tokens_mask=True)["assistant_masks"]
    assert not any(masks)  # why the masks are computed from prefixes instead


def test_assistant_turn_trains_exactly_its_content_and_end_of_turn_token(smollm2_tokenizer):
    tokenizer = smollm2_tokenizer
    encoded = encode_conversation(tokenizer, EXCHANGE)
    expected = tokenizer("positive", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    trained = [i for i, label in enumerate(encoded.labels) if label != IGNORE_INDEX]
    prompt = render_ids(tokenizer, EXCHANGE[:1], add_generation_prompt=True)
    assert trained == list(range(len(prompt), len(prompt) + len(expected)))
    assert [encoded.input_ids[i] for i in trained] == expected
    assert encoded.input_ids[trained[-1]] == tokenizer.pad_token_id  # the end-of-turn token is trained although pad == eos
    assert tokenizer.decode(encoded.input_ids[trained[-1] + 1:]) == "\n"  # ChatML's newline after the turn is not


def test_multi_turn_chat_trains_every_assistant_turn_and_nothing_else(smollm2_tokenizer):
    encoded = encode_conversation(smollm2_tokenizer, MULTI_TURN, train_on="assistant")
    assert trained_runs(smollm2_tokenizer, encoded.input_ids, encoded.labels) == [
        "Hello there<|im_end|>", "Fine, thanks.<|im_end|>", "Goodbye!<|im_end|>"]
    assert len(encoded.assistant_spans) == 3


def test_completion_trains_only_the_final_answer(smollm2_tokenizer):
    encoded = encode_conversation(smollm2_tokenizer, MULTI_TURN, train_on="completion")
    assert trained_runs(smollm2_tokenizer, encoded.input_ids, encoded.labels) == ["Goodbye!<|im_end|>"]


def test_all_trains_every_token(smollm2_tokenizer):
    encoded = encode_conversation(smollm2_tokenizer, MULTI_TURN, train_on="all")
    assert encoded.labels == encoded.input_ids == render_ids(smollm2_tokenizer, MULTI_TURN)


def test_a_template_that_rewrites_earlier_turns_fails_naming_the_example(smollm2_tokenizer):
    tokenizer = copy.copy(smollm2_tokenizer)
    tokenizer.chat_template = ("{% for m in messages %}{% if loop.last %}[last] {% endif %}{{ m['role'] }}: "
                               "{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}")
    with pytest.raises(DataError, match=r"^train.jsonl:7: the chat template renders the first 1 message\(s\) with "
                                        r"the generation prompt differently .*not a token prefix"):
        encode_conversation(tokenizer, EXCHANGE, origin="train.jsonl:7")


def test_a_template_that_raises_is_a_data_error_naming_the_example(smollm2_tokenizer):
    tokenizer = copy.copy(smollm2_tokenizer)
    tokenizer.chat_template = "{{ raise_exception('roles must alternate') }}"
    with pytest.raises(DataError, match=r"^train.jsonl:3: the chat template does not render .*roles must alternate"):
        encode_conversation(tokenizer, EXCHANGE, origin="train.jsonl:3")


def test_truncation_inside_the_answer_trains_what_is_left(smollm2_tokenizer):
    full = encode_conversation(smollm2_tokenizer, MULTI_TURN)
    last_start = full.assistant_spans[-1][0]
    cut = encode_conversation(smollm2_tokenizer, MULTI_TURN, max_length=last_start + 1)
    assert cut.truncated and len(cut.input_ids) == last_start + 1
    assert cut.labels == full.labels[: last_start + 1]


@pytest.mark.parametrize("train_on", ["assistant", "completion", "all"])
def test_truncation_never_trains_on_a_cut_prompt_only(smollm2_tokenizer, train_on):
    answer_start = encode_conversation(smollm2_tokenizer, EXCHANGE).assistant_spans[0][0]
    for max_length in (5, answer_start):
        cut = encode_conversation(smollm2_tokenizer, EXCHANGE, train_on=train_on, max_length=max_length)
        assert cut.truncated and cut.trained_tokens == 0 and set(cut.labels) == {IGNORE_INDEX}
    kept = encode_conversation(smollm2_tokenizer, EXCHANGE, train_on=train_on, max_length=answer_start + 1)
    assert kept.trained_tokens >= 1


def test_encode_batch_with_datasets_map_flags_and_drops_untrainable_rows(smollm2_tokenizer):
    import datasets

    answer_start = encode_conversation(smollm2_tokenizer, EXCHANGE).assistant_spans[0][0]
    long_prompt = [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}]
    rows = datasets.Dataset.from_dict({"messages": [EXCHANGE, long_prompt, MULTI_TURN]})
    encoded = rows.map(encode_batch, batched=True, with_indices=True, remove_columns=["messages"],
                       fn_kwargs={"tokenizer": smollm2_tokenizer, "max_length": answer_start + 8})
    assert encoded["truncated"] == [False, True, True]
    assert encoded["trained_tokens"][1] == 0
    assert encoded["length"] == [len(ids) for ids in encoded["input_ids"]]
    kept, dropped = drop_untrained(encoded)
    assert (len(kept), dropped) == (2, 1)


def test_encode_batch_errors_name_the_origin_column(smollm2_tokenizer):
    tokenizer = copy.copy(smollm2_tokenizer)
    tokenizer.chat_template = "{{ raise_exception('no') }}"
    batch = {"messages": [EXCHANGE], "origin": ["chat.jsonl:9"]}
    with pytest.raises(DataError, match=r"^chat.jsonl:9: "):
        encode_batch(batch, [0], tokenizer=tokenizer)


@pytest.mark.parametrize("side", ["right", "left"])
def test_collator_pads_from_the_attention_mask_and_keeps_the_end_of_turn_label(smollm2_tokenizer, side):
    tokenizer = smollm2_tokenizer
    features = encode_batch({"messages": [EXCHANGE, MULTI_TURN]}, tokenizer=tokenizer)
    rows = [{key: features[key][i] for key in ("input_ids", "labels")} for i in range(2)]
    batch = SFTCollator(tokenizer.pad_token_id, padding_side=side)(rows)
    short, long = len(rows[0]["input_ids"]), len(rows[1]["input_ids"])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (2, long)
    real = slice(0, short) if side == "right" else slice(long - short, long)
    padding = slice(short, long) if side == "right" else slice(0, long - short)
    assert batch["input_ids"][0, real].tolist() == rows[0]["input_ids"]
    assert batch["labels"][0, real].tolist() == rows[0]["labels"]
    assert batch["attention_mask"][0, real].tolist() == [1] * short
    assert set(batch["input_ids"][0, padding].tolist()) == {tokenizer.pad_token_id}
    assert set(batch["labels"][0, padding].tolist()) == {IGNORE_INDEX}
    assert set(batch["attention_mask"][0, padding].tolist()) == {0}
    assert tokenizer.eos_token_id in batch["labels"][0, real].tolist()  # same id as the padding, still trained


def test_padded_batch_loss_equals_the_token_weighted_loss_of_each_example(smollm2_tokenizer, tiny_llama):
    import torch

    features = encode_batch({"messages": [EXCHANGE, MULTI_TURN]}, tokenizer=smollm2_tokenizer)
    rows = [{key: features[key][i] for key in ("input_ids", "labels")} for i in range(2)]
    with torch.no_grad():
        batch_loss = tiny_llama(**SFTCollator(smollm2_tokenizer.pad_token_id)(rows)).loss
        weighted = sum(tiny_llama(**SFTCollator(smollm2_tokenizer.pad_token_id)([row])).loss * n
                       for row, n in zip(rows, features["trained_tokens"])) / sum(features["trained_tokens"])
    assert torch.isfinite(batch_loss)
    assert batch_loss.item() == pytest.approx(weighted.item(), rel=1e-5)


def test_a_batch_without_trained_tokens_is_an_error_naming_its_examples(smollm2_tokenizer):
    features = encode_batch({"messages": [EXCHANGE], "origin": ["a.jsonl:4"]}, tokenizer=smollm2_tokenizer, max_length=5)
    row = {"input_ids": features["input_ids"][0], "labels": features["labels"][0], "origin": "a.jsonl:4"}
    with pytest.raises(DataError, match=r"a batch has no trained tokens .*: a.jsonl:4"):
        SFTCollator(smollm2_tokenizer.pad_token_id)([row])


def test_preview_highlights_trained_tokens_and_escapes_html(smollm2_tokenizer):
    messages = [{"role": "user", "content": "Is <b>this</b> good?"}, {"role": "assistant", "content": "yes & no"}]
    encoded = encode_conversation(smollm2_tokenizer, messages)
    page = trained_spans_html(smollm2_tokenizer, encoded.input_ids, encoded.labels)
    assert '<span class="ftkit-trained" style="background: #c6f0c2; color: #000">yes &amp; no&lt;|im_end|&gt;</span>' in page
    assert "Is &lt;b&gt;this&lt;/b&gt; good?" in page and "<b>" not in page
    assert page.count('class="ftkit-trained"') == 1


def test_token_stats_count_turns_lengths_and_truncation(smollm2_tokenizer):
    answer_start = encode_conversation(smollm2_tokenizer, EXCHANGE).assistant_spans[0][0]
    stats = sft_token_stats(smollm2_tokenizer, [EXCHANGE, MULTI_TURN], max_length=answer_start)
    assert (stats["examples"], stats["turns"], stats["assistant_turns"]) == (2, 9, 4)
    assert (stats["truncated"], stats["dropped_by_truncation"]) == (2, 1)
    exchange_answer = len(smollm2_tokenizer("positive", add_special_tokens=False)["input_ids"]) + 1
    assert stats["completion_tokens"]["min"] == exchange_answer
    assert stats["prompt_tokens"]["min"] == answer_start + 1  # the newline after <|im_end|> is outside the answer


def test_real_corpora_render_as_token_prefixes(smollm2_tokenizer):
    conversations = chatterbot_pairs()[:300] + chitchat_conversations(limit=30)
    for index, messages in enumerate(conversations):
        ids, spans = assistant_spans(smollm2_tokenizer, messages, f"example {index}")
        assert len(spans) == sum(m["role"] == "assistant" for m in messages)
        assert all(ids[end - 1] == smollm2_tokenizer.eos_token_id for _, end in spans)
