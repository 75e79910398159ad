"""Padding-free batches: the packed collator, and a probe of whether a loaded model keeps packed rows apart.

Packing puts a batch's examples end to end in one row, with ``position_ids`` restarting at each
example (and flash-attention's sequence boundaries). Whether the examples then stay apart depends
on the model's architecture, its attention implementation and the installed transformers (BERT's
SDPA mask ignored packed boundaries in 5.24 and honours them in 5.25, where DistilBERT and RoBERTa
still do not; a causal LM with its KV cache on leaks the first example into the second). So ftkit does
not keep a table of what packs: it runs two short examples through the loaded model packed and
alone, and packs only when the outputs agree.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DataCollatorWithFlattening

# Two short examples of a few ordinary token ids (offsets into the vocabulary, away from the specials).
_PROBE_LENGTHS = (5, 4)


@dataclass(frozen=True)
class PackingProbe:
    """What the probe saw: ``apart`` when each packed example's outputs equal its outputs alone."""

    apart: bool
    reason: str  # a clause for error messages: what leaked, or why the probe could not run


_probes: "weakref.WeakKeyDictionary[Any, PackingProbe]" = weakref.WeakKeyDictionary()


def packed_collator() -> DataCollatorWithFlattening:
    """One padding-free row per batch: ``position_ids`` restart at each example, flash-attention's
    ``cu_seq_lens`` mark the boundaries, and the first label of each example is ignored."""
    return DataCollatorWithFlattening(return_flash_attn_kwargs=True, separator_id=-100)


def probe_packing(model: Any) -> PackingProbe:
    """Whether ``model`` keeps packed examples apart, probed once per loaded model (a cached forward
    of a few tokens, without gradients, in eval mode; the model's mode is restored)."""
    try:
        return _probes[model]
    except (KeyError, TypeError):
        pass
    result = _probe(model)
    with contextlib.suppress(TypeError):
        _probes[model] = result
    return result


def _probe(model: Any) -> PackingProbe:
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    vocabulary = model.get_input_embeddings().num_embeddings
    ids = [(100 + 37 * i) % vocabulary for i in range(sum(_PROBE_LENGTHS))]
    examples = [ids[: _PROBE_LENGTHS[0]], ids[_PROBE_LENGTHS[0]:]]
    packed = {key: value.to(device) if torch.is_tensor(value) else value
              for key, value in packed_collator()([{"input_ids": example} for example in examples]).items()
              if key != "labels"}
    attention = getattr(getattr(model, "config", None), "_attn_implementation", None) or "unknown"
    training = model.training
    model.eval()
    try:
        with torch.no_grad(), _autocast(device, attention):
            together = _output(model(**packed))[0].float()
            alone = [_output(model(input_ids=torch.tensor([example], device=device),
                                   attention_mask=torch.ones(1, len(example), dtype=torch.long, device=device)))[0].float()
                     for example in examples]
    except Exception as exc:  # noqa: BLE001 - a model that cannot take a packed row does not pack
        return PackingProbe(False, f"cannot take a packed row ({type(exc).__name__}: {str(exc)[:200]})")
    finally:
        model.train(training)
    tolerance = 1e-4 if device.type == "cpu" else 2e-2  # TF32 matmuls and half-precision kernels on a GPU
    start, leaked = 0, []
    for number, output in enumerate(alone, 1):
        part = together[start: start + len(output)]
        scale = output.abs().max().clamp(min=1.0)
        if part.shape != output.shape or (part - output).abs().max() > tolerance * scale:
            leaked.append(number)
        start += len(output)
    if leaked:
        which = " and ".join(("the first", "the second")[n - 1] for n in leaked)
        return PackingProbe(False, f"with {attention} attention, {which} of two packed examples came out different "
                                   "from the same example alone (packed examples would see each other)")
    return PackingProbe(True, f"packed examples stay apart with {attention} attention")


def _output(outputs: Any) -> torch.Tensor:
    logits = getattr(outputs, "logits", None)
    if logits is not None:
        return logits
    hidden = getattr(outputs, "last_hidden_state", None)
    return hidden if hidden is not None else outputs[0]


def _autocast(device: torch.device, attention: str) -> Any:
    """flash-attention runs in half precision only, as it does in GPU training (the Trainer's autocast)."""
    if device.type == "cuda" and attention.startswith("flash_attention"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    return contextlib.nullcontext()
