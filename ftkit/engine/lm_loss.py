"""A causal LM's loss taken only where it trains: the LM head never builds batch x length x vocabulary logits.

SFT trains on the answers, a few tokens of each example, but a model's own loss projects every
position onto the whole vocabulary first (SmolLM2: 49,152 words, so 8 rows of 60 tokens make a
94 MB logits tensor, and its float copy, log-softmax and gradient as much again each). Here the
model is asked, through its own forward (so DDP, FSDP and PEFT wrappers see the call), for the
logits of only the positions whose next token is trained in some row of the batch
(transformers' ``logits_to_keep`` with a tensor of positions), and the loss is the same sum over
the trained tokens, divided the way the Trainer divides it (``num_items_in_batch``: the trained
tokens of the whole accumulated batch). A model whose forward ignores ``logits_to_keep`` returns
every position, which is then indexed here: the same loss, without the saving.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def trained_positions(labels: torch.Tensor) -> torch.Tensor:
    """Positions whose next token is trained in at least one row (where a logit row is needed)."""
    return (labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)


def loss_at_trained_positions(model: Any, inputs: Mapping[str, Any],
                              num_items_in_batch: torch.Tensor | int | None = None,
                              on_tokens: Callable[..., None] | None = None) -> torch.Tensor:
    """The next-token cross-entropy summed over trained tokens, over ``num_items_in_batch`` (or their count).

    Equal to the model's own causal LM loss (labels shifted by one inside, -100 ignored) on the same batch.
    ``on_tokens(positions, trained, gold, logprob, predicted)`` hears each trained token's log-probability
    and the model's own top token (training dynamics): ``trained`` masks the [batch, positions] grid.
    """
    labels = inputs["labels"]
    positions = trained_positions(labels)
    forward = {key: value for key, value in inputs.items() if key != "labels"}
    logits = model(**forward, use_cache=False, logits_to_keep=positions).logits
    if logits.shape[1] != positions.numel():  # the forward kept every position
        logits = logits[:, positions.to(logits.device)]
    targets = labels[:, 1:][:, positions].to(logits.device)
    flat = logits.float().flatten(0, 1)
    losses = F.cross_entropy(flat, targets.flatten(), ignore_index=IGNORE_INDEX, reduction="none")
    total = losses.sum()
    if on_tokens is not None:
        trained = targets != IGNORE_INDEX
        keep = trained.flatten()
        with torch.no_grad():
            on_tokens(positions, trained, targets.flatten()[keep], -losses.detach()[keep], flat.detach()[keep].argmax(-1))
    count = (targets != IGNORE_INDEX).sum() if num_items_in_batch is None else num_items_in_batch
    return total / torch.as_tensor(count, device=total.device).clamp(min=1)


def computes_plain_lm_loss(model: Any) -> bool:
    """Whether the model's own loss is the plain next-token cross-entropy this module reproduces.

    A mixture of experts adds its router's balancing loss to it, which only the model's forward computes.
    """
    config = getattr(model, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return not getattr(text_config, "output_router_logits", False)


__all__ = ["computes_plain_lm_loss", "loss_at_trained_positions", "trained_positions"]
