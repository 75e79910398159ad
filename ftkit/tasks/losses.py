"""Losses that tasks with a label per token or per text hand to the Trainer (torch imported on call)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def label_weighted_loss(outputs: Any, labels: "torch.Tensor", num_items_in_batch: Any = None) -> "torch.Tensor":
    """Cross-entropy summed over the labelled tokens (or texts), divided by their count in the whole
    optimiser step: across accumulation steps and processes, exactly as one big batch would be.

    transformers 5.24 assumes that a model whose forward takes ``**kwargs`` divides its loss by
    ``num_items_in_batch`` itself, and scales it up by the accumulation steps and the process count
    accordingly. BERT's classification heads take ``**kwargs`` but average per batch, so without
    this the gradient would grow with gradient_accumulation_steps and with the number of processes.
    """
    import torch

    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    labels = labels.to(logits.device)
    loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1),
                                             ignore_index=-100, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (labels != -100).sum().clamp(min=1)
    return loss / count

