"""Recompute parts of the forward pass from cached activations.

Interventions and path patching change one component and need only what lies downstream of it.
`run_from` restarts the forward pass from a residual stream at a given layer and stage, and can
compute its last MLP only at the reads' answer positions, which is all the margin needs.
`head_pattern_and_z` recomputes one head from separate query, key and value inputs, for path
patching into a single input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from runner.measure.weights import qkv_weight
from runner.model.transformer import Transformer

Rows = tuple[torch.Tensor, torch.Tensor]  # (sequence index [read], position [read])


def head_pattern_and_z(
    model: Transformer,
    layer: int,
    head: int,
    x_q: torch.Tensor,
    x_k: torch.Tensor,
    x_v: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Attention pattern [seq, query, key], z [seq, pos, d_head] and v of one head, each input
    [seq, pos, d_model] already through the block's first LayerNorm."""
    (w_q, b_q), (w_k, b_k), (w_v, b_v) = (qkv_weight(model, layer, x) for x in "qkv")
    q = x_q @ w_q[head] + b_q[head]
    k = x_k @ w_k[head] + b_k[head]
    v = x_v @ w_v[head] + b_v[head]
    n_pos = x_q.shape[1]
    scores = q @ k.transpose(1, 2) / math.sqrt(model.cfg.d_head)
    causal = model.block(layer).attn.causal_mask[:n_pos, :n_pos]
    pattern = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
    return pattern, pattern @ v, v


def run_from(
    model: Transformer,
    resid: torch.Tensor,
    layer: int,
    stage: str,
    rows: Rows | None = None,
) -> torch.Tensor:
    """Logits from a residual stream [seq, pos, d_model] entering block `layer` at `stage`.

    stage "attn": `resid` is the block's input (resid_pre); "mlp": it is resid_mid, and the
    block's attention is skipped. `layer == n_layers` means only the final LayerNorm and the
    unembedding remain. With `rows`, the result is [read, vocab] at those positions, and the last
    block's MLP runs only there; otherwise [seq, pos, vocab].
    """
    if stage not in ("attn", "mlp"):
        raise ValueError(f"stage must be 'attn' or 'mlp', not {stage!r}")
    n_layers = model.cfg.n_layers
    at_rows: torch.Tensor | None = None
    if rows is not None and layer == n_layers:
        at_rows = resid[rows]
    for index in range(layer, n_layers):
        block = model.block(index)
        skip_attn = index == layer and stage == "mlp"
        if rows is not None and index == n_layers - 1:
            if not skip_attn:
                resid = resid + block.attn(block.ln1(resid))
            at_rows = resid[rows]
            at_rows = at_rows + block.mlp(block.ln2(at_rows))
            break
        if not skip_attn:
            resid = resid + block.attn(block.ln1(resid))
        resid = resid + block.mlp(block.ln2(resid))
    final = resid if at_rows is None else at_rows
    return F.linear(model.ln_final(final), model.embed.weight)
