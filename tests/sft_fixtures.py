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


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_llama, smollm2_tokenizer) -> Path:
    """The tiny llama saved with SmolLM2's tokenizer and chat template: a `model:` folder for sft runs."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama.save_pretrained(folder)
    smollm2_tokenizer.save_pretrained(folder)
    return folder


def chat_records(n: int, offset: int = 0) -> list[dict]:
    """Short single-turn chats whose answer is a word from a two-word set (a label-like answer)."""
    words = ["positive", "negative"]
    return [{"messages": [{"role": "user", "content": f"Review {i}: {'great' if i % 2 else 'awful'} film. Positive?"},
                          {"role": "assistant", "content": words[(i + 1) % 2]}]} for i in range(offset, offset + n)]


def write_chat_jsonl(path: Path, records: list) -> Path:
    import json

    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


@pytest.fixture
def sft_config(tiny_llama_dir, tmp_path, runs_dir) -> dict:
    """A short sft run of the tiny llama on chat JSONL files (LoRA, the default adapter for sft here)."""
    data = tmp_path / "chat"
    data.mkdir()
    return {
        "name": "tiny-sft",
        "task": "sft",
        "model": str(tiny_llama_dir),
        "adapter": {"kind": "lora", "r": 4, "alpha": 8},
        "data": {"train": str(write_chat_jsonl(data / "train.jsonl", chat_records(24))),
                 "validation": str(write_chat_jsonl(data / "valid.jsonl", chat_records(6, 100))),
                 "test": str(write_chat_jsonl(data / "test.jsonl", chat_records(6, 200)))},
        "training": {"epochs": 1, "batch_size": 4, "logging_steps": 2, "max_seq_length": 64,
                     "learning_rate": 5e-3, "max_new_tokens": 4},
        "output": {"dir": str(runs_dir)},
    }
