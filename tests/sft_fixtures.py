"""Session fixtures for SFT tests: SmolLM2's real tokenizer and a tiny random llama that uses it.

The tokenizer comes from the converted default-causal folder (converted once per machine, then
cached), so masks are checked against the real ChatML template whose pad token is its end-of-turn
token. The model is a 2-layer llama with hidden size 32 built from a config: seconds, offline.
Import the fixtures into a test module: ``from tests.sft_fixtures import smollm2_tokenizer``.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def default_causal_dir() -> Path:
    from ftkit.engine.causal import default_causal_model_dir

    return default_causal_model_dir()


@pytest.fixture(scope="session")
def smollm2_tokenizer(default_causal_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_causal_dir)


@pytest.fixture(scope="session")
def tiny_llama(smollm2_tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(smollm2_tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         pad_token_id=smollm2_tokenizer.pad_token_id, eos_token_id=smollm2_tokenizer.eos_token_id)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()
