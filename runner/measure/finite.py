"""Whether a forward pass is trustworthy: no cached activation holds NaN or Inf.

A LayerNorm whose variance overflows returns finite values (its bias) from an infinite scale,
so finite logits alone do not make a pass trustworthy: the activations must be checked too.
Attention scores are -inf where the causal mask hides a position; only NaN or +inf there is a
fault.

Reading every cached activation costs a tenth of a forward pass, so the check reads a few
witnesses whose finiteness proves the rest finite in IEEE arithmetic, where a sum with a NaN or
infinite term is NaN or infinite, and so is a product of one with anything:

- the residual stream is a running sum (embeddings, then each block's attention and MLP
  writes): a finite stream after block L makes every partial sum before it and every term
  finite, so the stream, the embeddings and the writes of blocks 0..L;
- a finite write `c_proj(x)` makes its input x finite (each output sums a product with every
  input): the heads' z and the neurons' activations;
- finite z makes the queries, values, pattern and scores of its block trustworthy (a NaN or
  infinite query or value, or a NaN or +inf score, reaches z through the softmax and the
  weighted sum).

Every other activation (LayerNorm scales and outputs, keys, a stream with no witness cached) is
read directly. Only when a witness fails is every activation read, to name the first faulty one.
tests/unit/test_finite.py poisons each cached activation in turn and checks that the fault is
found.
"""

from __future__ import annotations

import re

import torch

from runner.measure.probe import CleanRun

# Activations of block L that a finite residual stream after block L proves finite.
_PROVED_IN_BLOCK = (
    "hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out",
    "attn.hook_z", "mlp.hook_post", "attn.hook_q", "attn.hook_v", "attn.hook_pattern",
    "attn.hook_attn_scores",
)  # fmt: skip
_STREAM = re.compile(rf"^blocks\.(\d+)\.({'|'.join(map(re.escape, _PROVED_IN_BLOCK))})$")


def non_finite_site(run: CleanRun) -> str | None:
    """The first activation of an unedited forward pass holding NaN or Inf (`logits` for the
    output), in name order; None when the pass is finite. (An edit could keep a cached value
    from flowing on, so the witnesses would not see it.)"""
    if not _trustworthy("logits", run.logits):
        return "logits"
    if all(_trustworthy(name, run[name]) for name in witnesses(run.cache)):
        return None
    for name in sorted(run.cache):
        if not _trustworthy(name, run[name]):
            return name
    return None  # not reached: a failed witness is itself in the cache


def witnesses(names: list[str] | dict[str, torch.Tensor]) -> list[str]:
    """The cached activations the check reads: the deepest residual stream cached and every
    activation it does not prove finite."""
    streams = [m for name in names if (m := _STREAM.match(name))]
    deepest = max((int(m[1]) for m in streams if m[2] == "hook_resid_post"), default=-1)
    witness = f"blocks.{deepest}.hook_resid_post"
    return [name for name in sorted(names) if name == witness or not _proved(name, deepest)]


def _proved(name: str, deepest: int) -> bool:
    """Whether a finite stream after block `deepest` proves `name` finite."""
    if deepest < 0:
        return False
    if name in ("hook_embed", "hook_pos_embed"):
        return True
    match = _STREAM.match(name)
    return match is not None and int(match.group(1)) <= deepest


def _trustworthy(name: str, x: torch.Tensor) -> bool:
    if x.numel() == 0:
        return True
    low, high = x.aminmax()  # one reduction; NaN propagates through both
    if name.endswith("hook_attn_scores"):
        return not bool(torch.isnan(high) or torch.isposinf(high))
    return bool(torch.isfinite(low) and torch.isfinite(high))
