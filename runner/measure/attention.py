"""Attention geometry: where a head looks from a read, how its QK scores separate roles, and
whether its OV circuit copies value tokens.

For head h at a read r with query position f (the `from` role, usually `answer`):

- `attention_mass` = Σ_{j ∈ to(r)} A_h[f, j], the attention probability on the `to` positions.
- `qk_gap` = mean_{j ∈ to(r)} S_h[f, j] − mean_{j ∈ contrast(r)} S_h[f, j], where S is the
  scaled pre-softmax score q_f·k_j/√d_head. The contrast defaults to every position the query can
  see (j ≤ f) that is not a `to` position. A read with an empty `to` or contrast set gives NaN.
- `ov_copy`: for value token v, its OV image is o_v = LN1(E_v) W_V^h W_O^h read through the final
  LayerNorm's weight and the unembedding, restricted to value tokens:
  s_v = (centre(o_v) ⊙ w_lnf) · E_{v'} for every value v'. The head copies v when s_v[v] is
  strictly the largest. The per-read value is 1 when the head copies the read's target.
  (The final LayerNorm's scale is positive and common to all v', so it cannot change the argmax.)
  On a task imported from a task file, "value tokens" are the task's `answer_tokens` (by default
  the whole vocabulary: the usual copying score of an induction head).
"""

from __future__ import annotations

import torch

from runner.kv import vocab
from runner.measure.probe import CleanRun, ProbeBatch
from runner.measure.weights import qkv_weight, w_o
from runner.model.transformer import Transformer


def _query_rows(
    probe: ProbeBatch, tensor: torch.Tensor, head: int, from_role: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows [read, key_pos] of a [seq, head, query, key] tensor at the reads' `from` positions,
    and the [read, key_pos] mask of positions the query can see."""
    frm = probe.role_positions(from_role)
    rows = tensor[probe.read_seq, head, frm]
    visible = torch.arange(probe.n_pos, device=probe.device)[None, :] <= frm[:, None]
    return rows, visible


def attention_mass(
    run: CleanRun, probe: ProbeBatch, layer: int, head: int, from_role: str, to_role: str
) -> torch.Tensor:
    """[read] attention probability from the `from` position onto the `to` positions."""
    rows, _ = _query_rows(probe, run[f"blocks.{layer}.attn.hook_pattern"], head, from_role)
    return (rows * probe.role_mask(to_role)).sum(dim=-1)


def qk_gap(
    run: CleanRun,
    probe: ProbeBatch,
    layer: int,
    head: int,
    from_role: str,
    to_role: str,
    contrast_role: str | None = None,
) -> torch.Tensor:
    """[read] mean QK score on `to` positions minus mean score on contrast positions."""
    scores, visible = _query_rows(
        probe, run[f"blocks.{layer}.attn.hook_attn_scores"], head, from_role
    )
    to = probe.role_mask(to_role) & visible
    others = ~to if contrast_role is None else probe.role_mask(contrast_role)
    contrast = visible & others
    finite = torch.where(visible, scores, torch.zeros_like(scores))

    def mean_over(mask: torch.Tensor) -> torch.Tensor:
        n = mask.sum(dim=-1)
        total = (finite * mask).sum(dim=-1)
        return torch.where(n > 0, total / n.clamp(min=1), torch.full_like(total, float("nan")))

    return mean_over(to) - mean_over(contrast)


@torch.no_grad()
def ov_copy_table(
    model: Transformer, layer: int, head: int, answer_tokens: tuple[int, int] | None = None
) -> torch.Tensor:
    """[value] bool: whether the head's OV circuit ranks each value token first among values."""
    device = model.embed.weight.device
    first, count = (vocab.FIRST_VALUE, vocab.N_VALUES) if answer_tokens is None else answer_tokens
    values = torch.arange(first, first + count, device=device)
    embedded = model.embed.weight[values]  # [value, d_model]
    x = model.block(layer).ln1(embedded[None])[0]
    w_v, b_v = qkv_weight(model, layer, "v")
    image = (x @ w_v[head] + b_v[head]) @ w_o(model, layer)[head]  # [value, d_model]
    image = (image - image.mean(dim=-1, keepdim=True)) * model.ln_final.weight
    scores = image @ model.embed.weight[values].T  # [value, value']
    own = scores.diagonal()
    others = scores.clone()
    others.fill_diagonal_(float("-inf"))
    return own > others.max(dim=-1).values


def ov_copy(model: Transformer, probe: ProbeBatch, layer: int, head: int) -> torch.Tensor:
    """[read] 1.0 when the head's OV circuit copies the read's target value token, else 0.0."""
    table = ov_copy_table(model, layer, head, probe.answer_tokens)
    first = vocab.FIRST_VALUE if probe.answer_tokens is None else probe.answer_tokens[0]
    return table[probe.target - first].float()
