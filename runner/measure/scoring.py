"""Forward passes over a split in batches, reduced to per-read and per-split behaviour."""

from __future__ import annotations

import numpy as np
import torch

from runner.kv.dataset import Split
from runner.measure import behaviour

BATCH = 256


@torch.no_grad()
def score_split(model: torch.nn.Module, split: Split) -> dict[str, np.ndarray | float]:
    """Per-read accuracy, loss and margin, plus the token-level loss and accuracy of the split."""
    reads = split.reads
    per_read: dict[str, list[torch.Tensor]] = {"accuracy": [], "loss": [], "margin": []}
    token_loss = token_correct = n_targets = 0.0
    device = next(model.parameters()).device
    for start in range(0, len(split), BATCH):
        tokens = torch.as_tensor(split.tokens[start : start + BATCH])
        tokens = tokens[:, : int(split.lengths[start : start + BATCH].max())].to(device)
        logits = model(tokens)
        in_batch = (reads.sequence >= start) & (reads.sequence < start + len(tokens))
        seq = torch.as_tensor(reads.sequence[in_batch] - start, device=device)
        pos = torch.as_tensor(reads.single["answer"][in_batch], device=device)
        target = torch.as_tensor(reads.target[in_batch], device=device)
        for name, values in behaviour.per_read(logits[seq, pos], target).items():
            per_read[name].append(values.cpu())
        n = int((tokens[:, 1:] != 0).sum())
        loss, acc = behaviour.token_loss_and_accuracy(logits, tokens)
        token_loss += float(loss) * n
        token_correct += float(acc) * n
        n_targets += n
    out: dict[str, np.ndarray | float] = {
        name: torch.cat(v).numpy() for name, v in per_read.items()
    }
    out["token_loss"] = token_loss / n_targets
    out["token_accuracy"] = token_correct / n_targets
    return out


def split_summary(model: torch.nn.Module, split: Split) -> dict[str, float]:
    """The metrics logged at every checkpoint for one split."""
    scores = score_split(model, split)
    return {
        "loss": float(scores["token_loss"]),
        "token_accuracy": float(scores["token_accuracy"]),
        "answer_accuracy": float(np.mean(scores["accuracy"])),
        "answer_loss": float(np.mean(scores["loss"])),
        "answer_margin": float(np.mean(scores["margin"])),
    }
