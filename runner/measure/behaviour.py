"""Behaviour at read answers, per example: correctness, loss and margin.

For a read whose answer position is p and whose target value token is y, with logits l at p:

- `accuracy`: 1 if argmax_z l_z = y else 0;
- `loss`: -log softmax(l)_y;
- `margin`: l_y - logsumexp_{z != y} l_z (positive exactly when y is the argmax by a softmax
  margin; it is the quantity path contributions decompose).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from runner.kv import vocab


def margin(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[read] l_y - logsumexp over z != y, for [read, vocab] logits."""
    correct = logits.gather(1, target[:, None]).squeeze(1)
    others = logits.scatter(1, target[:, None], float("-inf"))
    return correct - torch.logsumexp(others, dim=1)


def per_read(logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """accuracy, loss and margin of every read from its [read, vocab] answer logits."""
    return {
        "accuracy": (logits.argmax(dim=1) == target).float(),
        "loss": F.cross_entropy(logits, target, reduction="none"),
        "margin": margin(logits, target),
    }


def token_loss_and_accuracy(
    logits: torch.Tensor, tokens: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean next-token loss and accuracy over every non-padding target of a batch."""
    targets = tokens[:, 1:]
    keep = targets != vocab.PAD
    flat = logits[:, :-1][keep]
    return F.cross_entropy(flat, targets[keep]), (flat.argmax(-1) == targets[keep]).float().mean()


def next_token_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The training objective: mean cross-entropy over every non-padding next-token target."""
    targets = tokens[:, 1:].reshape(-1)
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), targets, ignore_index=vocab.PAD
    )
