"""Static spaces of byte-level BPE models (SmolLM2): words shown without ``Ġ``, non-words left out.

The vocabulary rules are checked on SmolLM2's real tokenizer; spaces are built from a tiny random
llama that uses it (`tests/sft_fixtures.py`); the real default-causal's neighbours in the slow test.
"""

from __future__ import annotations

import pytest

import ftkit.embeddings
from ftkit.embeddings.vocabulary import byte_level_words, decode_token, is_byte_level
from tests.sft_fixtures import default_causal_dir, smollm2_tokenizer, tiny_llama  # noqa: F401 - fixtures


@pytest.mark.parametrize("token, text", [("Ġparis", " paris"), ("ing", "ing"), ("Ċ", "\n"), ("ĠcafÃ©", " café"),
                                         ("Ã", None)])  # a lone lead byte of a two-byte character
def test_byte_level_tokens_decode_to_their_text(token, text):
    assert decode_token(token) == text


@pytest.fixture(scope="module")
def vocabulary(smollm2_tokenizer):  # noqa: F811
    return list(smollm2_tokenizer.get_vocab().items()), set(smollm2_tokenizer.all_special_tokens)


def test_word_initial_tokens_become_words_and_the_rest_is_left_out(smollm2_tokenizer, vocabulary):  # noqa: F811
    vocab = smollm2_tokenizer.get_vocab()
    words = dict(byte_level_words(*vocabulary))
    assert is_byte_level(smollm2_tokenizer)
    assert words["King"] == vocab["ĠKing"] and words["the"] == vocab["Ġthe"]
    assert not any(word.startswith("Ġ") or "Ċ" in word for word in words)
    assert "<|im_end|>" not in words and "ation" not in words  # a special token; a piece only found inside words
    assert not any(not any(char.isalpha() for char in word) for word in words)  # no punctuation, digits, spaces
    assert len(words) == len(set(words))


def test_subwords_add_pieces_only_where_no_word_initial_token_reads_the_same(smollm2_tokenizer, vocabulary):  # noqa: F811
    vocab = smollm2_tokenizer.get_vocab()
    assert "ation" in vocab and "Ġation" not in vocab
    assert "King" in vocab and "ĠKing" in vocab  # the same letters, inside a word and as a word
    with_pieces = dict(byte_level_words(*vocabulary, subwords=True))
    assert with_pieces["ation"] == vocab["ation"]
    assert with_pieces["King"] == vocab["ĠKing"]  # the duplicate resolves to the word's own row
    assert set(dict(byte_level_words(*vocabulary))) < set(with_pieces)


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory, tiny_llama, smollm2_tokenizer):  # noqa: F811
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama.save_pretrained(folder)
    smollm2_tokenizer.save_pretrained(folder)
    return folder


def test_a_causal_models_static_space_holds_words_with_their_embedding_rows(tiny_llama_dir, tiny_llama,  # noqa: F811
                                                                         smollm2_tokenizer):  # noqa: F811
    space = ftkit.embeddings.load(tiny_llama_dir, cache=False)
    vocab = smollm2_tokenizer.get_vocab()
    assert "King" in space and "ĠKing" not in space and not space.lowercase
    table = tiny_llama.get_input_embeddings().weight.detach()
    assert space.vector("King").tolist() == pytest.approx(table[vocab["ĠKing"]].tolist())
    neighbours = space.neighbors("King", k=5)
    assert len(neighbours) == 5 and all("Ġ" not in word for word, _ in neighbours)
    pieces = smollm2_tokenizer(" xylophonists", add_special_tokens=False)["input_ids"]
    assert space.vector("xylophonists").tolist() == pytest.approx(table[pieces].mean(dim=0).tolist())


def test_a_lora_checkpoint_of_a_causal_model_loads_as_a_space(tmp_path, tiny_llama_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
                           LoraConfig(task_type="CAUSAL_LM", r=4, target_modules="all-linear"))
    model.save_pretrained(tmp_path / "checkpoint-2")
    space = ftkit.embeddings.load(tmp_path / "checkpoint-2", cache=False)
    base = ftkit.embeddings.load(tiny_llama_dir, cache=False)
    assert space.words == base.words  # LoRA on linear layers leaves the input embeddings as they were
    assert torch.equal(space.vectors, base.vectors)


@pytest.mark.slow
def test_the_default_causal_model_has_neighbours_of_words():
    space = ftkit.embeddings.load("default-causal")
    assert 20_000 < len(space) < 49_152
    assert {"Tuesday", "Wednesday"} <= {word for word, _ in space.neighbors("Monday", k=5)}
    assert "queen" in {word for word, _ in space.neighbors("king", k=5)}
