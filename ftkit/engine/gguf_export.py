"""A standalone causal LM folder written as one GGUF file, for llama.cpp, Ollama and LM Studio.

Written with the `gguf` package alone (its writer, tensor-name map and quantisers), the way llama.cpp's
``convert_hf_to_gguf.py`` writes the same architectures, so no llama.cpp build is needed: the model's
hyperparameters, its tensors under llama.cpp's names (the query and key projections of the llama family
permuted as llama.cpp expects; a tied output head left out), the byte-level BPE tokenizer with its
merges, the special tokens (end-of-turn, padding) and the chat template the run trained with.

`ollama_modelfile` writes what ``ollama create NAME -f Modelfile`` reads for a ChatML template.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import FtkitError
from ..runstore.layout import GGUF_QUANTS

END_OF_TURN = "<|im_end|>"  # ChatML's end-of-turn token (SmolLM2, Qwen2)


@dataclass(frozen=True)
class Architecture:
    """How llama.cpp names one transformers architecture, and whether its q/k rows are permuted."""

    gguf_name: str
    permutes_query_key: bool


ARCHITECTURES = {
    "LlamaForCausalLM": Architecture("llama", permutes_query_key=True),
    "Qwen2ForCausalLM": Architecture("qwen2", permutes_query_key=False),
}

# tokenizer.json pre-tokenizers llama.cpp knows by name (``tokenizer.ggml.pre``); others get "default".
_PRE_TOKENIZERS = {"qwen2": "qwen2"}
_SMOLLM_PRE_TOKENIZER = {"type": "Sequence", "pretokenizers": [
    {"type": "Digits", "individual_digits": True},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}


def architecture_of(config: dict[str, Any]) -> tuple[str, Architecture]:
    """The model's transformers architecture and how GGUF writes it; a clear error for any other."""
    names = config.get("architectures") or []
    for name in names:
        if name in ARCHITECTURES:
            return name, ARCHITECTURES[name]
    raise FtkitError(f"GGUF export does not support {', '.join(names) or 'a model without architectures'}; "
                     f"it supports {', '.join(ARCHITECTURES)}")


def write_gguf(folder: str | Path, out: str | Path, quant: str = "f16", name: str | None = None,
               on_tensor: Callable[[int, int], None] | None = None) -> Path:
    """Write the merged model in ``folder`` (config.json, safetensors, tokenizer files) as GGUF ``out``.

    ``quant``: f16 (2-D weights in float16), q8_0 or q4_0 (2-D weights quantised in blocks of 32; a
    weight whose rows do not split into blocks stays f16, as llama.cpp does). Norms stay float32.
    ``on_tensor(done, total)`` hears after each tensor (progress, and a place to stop).
    """
    import gguf

    if quant not in GGUF_QUANTS:
        raise FtkitError(f"quant must be one of {', '.join(GGUF_QUANTS)}, not '{quant}'")
    folder, out = Path(folder), Path(out)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    _, architecture = architecture_of(config)
    _check_rope(config)
    arch = gguf.MODEL_ARCH[architecture.gguf_name.upper()]
    writer = gguf.GGUFWriter(str(out), architecture.gguf_name)
    try:
        _write_hyperparameters(writer, config, quant, name or folder.name)
        _write_tokenizer(writer, folder, architecture, config)
        tensors = list(_tensors(folder, config, architecture))
        names = gguf.get_tensor_name_map(arch, config["num_hidden_layers"])
        for index, (hf_name, data) in enumerate(tensors):
            gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if gguf_name is None:
                raise FtkitError(f"GGUF export cannot name tensor {hf_name} of {architecture.gguf_name}")
            array, qtype = _quantised(data, quant)
            writer.add_tensor(gguf_name, array, raw_dtype=qtype)
            if on_tensor is not None:
                on_tensor(index + 1, len(tensors))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return out


def _check_rope(config: dict[str, Any]) -> None:
    rope = config.get("rope_scaling") or {}
    kind = rope.get("rope_type") or rope.get("type") if isinstance(rope, dict) else None
    parameters = config.get("rope_parameters") or {}
    kind = kind or (parameters.get("rope_type") if isinstance(parameters, dict) else None)
    if kind not in (None, "default"):
        raise FtkitError(f"GGUF export does not write rope scaling '{kind}' yet: only models without rope scaling")


def _rope_theta(config: dict[str, Any]) -> float:
    parameters = config.get("rope_parameters") if isinstance(config.get("rope_parameters"), dict) else {}
    return float(parameters.get("rope_theta") or config.get("rope_theta") or 10000.0)


def _write_hyperparameters(writer: Any, config: dict[str, Any], quant: str, name: str) -> None:
    import gguf

    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    writer.add_name(name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    if head_dim * heads != config["hidden_size"]:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    file_type = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
                 "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[quant]
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _write_tokenizer(writer: Any, folder: Path, architecture: Architecture, config: dict[str, Any]) -> None:
    """The byte-level BPE vocabulary, merges, special token ids and chat template (as llama.cpp's gpt2 vocab)."""
    import gguf
    from transformers import AutoTokenizer

    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise FtkitError(f"{folder} has no tokenizer.json: GGUF export writes byte-level BPE tokenizers from it")
    spec = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise FtkitError("GGUF export writes byte-level BPE tokenizers (SmolLM2, Qwen2, Llama 3); this model's "
                         f"tokenizer is {model.get('type')}{' with byte fallback (SentencePiece)' if model.get('byte_fallback') else ''}")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    vocab_size = max(config["vocab_size"], len(tokenizer))
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for index in range(vocab_size):
        if index not in by_id:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif index in added:
            tokens.append(added[index].content)
            types.append(gguf.TokenType.CONTROL if added[index].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[index])
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(spec, architecture))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(tokens))
    if tokenizer.chat_template:
        special.chat_template = tokenizer.chat_template  # the template the run trained with, saved with its checkpoint
    if tokenizer.pad_token_id is not None:
        special.special_token_ids["pad"] = tokenizer.pad_token_id
    if END_OF_TURN in tokenizer.get_vocab():
        special.special_token_ids["eot"] = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    special.add_to_gguf(writer, quiet=True)
    writer.add_add_space_prefix(False)


def _pre_tokenizer(spec: dict[str, Any], architecture: Architecture) -> str:
    if architecture.gguf_name in _PRE_TOKENIZERS:
        return _PRE_TOKENIZERS[architecture.gguf_name]
    return "smollm" if spec.get("pre_tokenizer") == _SMOLLM_PRE_TOKENIZER else "default"


def _tensors(folder: Path, config: dict[str, Any], architecture: Architecture) -> Iterator[tuple[str, Any]]:
    """(name, float32 array) per tensor of the safetensors files, q/k permuted as llama.cpp expects."""
    from safetensors import safe_open

    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    tied = config.get("tie_word_embeddings", False)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FtkitError(f"{folder} has no .safetensors weights to export")
    for file in files:
        with safe_open(str(file), framework="pt") as weights:
            for name in weights.keys():
                if name.endswith("rotary_emb.inv_freq") or (tied and name == "lm_head.weight"):
                    continue
                data = weights.get_tensor(name).float().numpy()
                if architecture.permutes_query_key and name.endswith("q_proj.weight"):
                    data = _permute(data, heads, heads)
                elif architecture.permutes_query_key and name.endswith("k_proj.weight"):
                    data = _permute(data, heads, kv_heads)
                yield name, data


def _permute(weights: Any, heads: int, kv_heads: int) -> Any:
    """llama.cpp's row order for rotary q/k projections (its ``LlamaModel.permute``)."""
    if kv_heads != heads:
        heads = kv_heads
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _quantised(data: Any, quant: str) -> tuple[Any, Any]:
    import gguf
    import numpy as np

    if data.ndim < 2:
        return data.astype(np.float32), gguf.GGMLQuantizationType.F32
    if quant == "f16":
        return data.astype(np.float16), gguf.GGMLQuantizationType.F16
    qtype = gguf.GGMLQuantizationType.Q8_0 if quant == "q8_0" else gguf.GGMLQuantizationType.Q4_0
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    if data.shape[-1] % block:
        return data.astype(np.float16), gguf.GGMLQuantizationType.F16
    return gguf.quants.quantize(data, qtype), qtype


# ----- Ollama --------------------------------------------------------------------------------------------


def ollama_modelfile(gguf_file: str, tokenizer: Any) -> str:
    """A Modelfile for ``ollama create``: FROM the file, the chat template in Ollama's Go-template syntax,
    the default system prompt the template adds, and the end-of-turn stop. ChatML templates only."""
    template = tokenizer.chat_template or ""
    if "<|im_start|>" not in template or END_OF_TURN not in template:
        raise FtkitError("--ollama writes the TEMPLATE of ChatML chat templates (<|im_start|>role ... <|im_end|>: "
                         "SmolLM2, Qwen2); this model's template is not ChatML. The GGUF file itself is written; "
                         "write its Modelfile TEMPLATE by hand (https://ollama.com/library for examples)")
    system = default_system_prompt(tokenizer)
    lines = [f"FROM ./{gguf_file}", "", 'TEMPLATE """' + OLLAMA_CHATML_TEMPLATE + '"""']
    if system:
        lines += ["", f'SYSTEM """{system}"""']
    lines += ["", f'PARAMETER stop "{END_OF_TURN}"']
    eos = tokenizer.eos_token
    if eos and eos != END_OF_TURN:
        lines.append(f'PARAMETER stop "{eos}"')
    return "\n".join(lines) + "\n"


# ChatML in Ollama's template language: each message as <|im_start|>role\ncontent<|im_end|>\n, then the
# assistant's turn opened. Ollama puts the Modelfile's SYSTEM first as a system message when none is given.
OLLAMA_CHATML_TEMPLATE = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
                          "<|im_start|>assistant\n")


def default_system_prompt(tokenizer: Any) -> str | None:
    """The system message a chat template adds when a conversation has none (SmolLM2's), else None."""
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "\x00"}], tokenize=False,
                                             add_generation_prompt=True)
    found = re.match(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", rendered, flags=re.S)
    return found.group(1) if found else None


__all__ = ["ARCHITECTURES", "OLLAMA_CHATML_TEMPLATE", "architecture_of", "default_system_prompt",
           "ollama_modelfile", "write_gguf"]
