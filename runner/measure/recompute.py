"""Recompute parts of the forward pass from cached activations.

Interventions and path patching change one component and need only what lies downstream of it.
`run_from` restarts the forward pass from a residual stream at a given layer and stage, and can
compute its last block only at the reads' answer positions (their queries still see every key),
which is all the margin needs. `head_pattern_and_z` recomputes one head from separate query, key
and value inputs, for path patching into a single input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from runner.measure.weights import qkv_weight
from runner.model import Transformer

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
    causal = model.blocks[layer].attn.causal_mask[:n_pos, :n_pos]
    pattern = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
    return pattern, pattern @ v, v


def _attention_at_rows(
    model: Transformer, layer: int, resid: torch.Tensor, rows: Rows
) -> torch.Tensor:
    """The block's attention output [read, d_model] at the given rows only."""
    cfg = model.cfg
    attn = model.blocks[layer].attn
    x = model.blocks[layer].ln1(resid)
    seq, pos = rows
    w, b = attn.c_attn.weight, attn.c_attn.bias
    d = cfg.d_model
    q = F.linear(x[seq, pos], w[:d], b[:d]).view(-1, cfg.n_heads, 1, cfg.d_head)
    kv = F.linear(x, w[d:], b[d:])  # [seq, pos, 2 * d_model]
    k, v = (t.view(*t.shape[:2], cfg.n_heads, cfg.d_head).transpose(1, 2) for t in kv.split(d, -1))
    k, v = k[seq], v[seq]  # [read, head, pos, d_head]
    scores = (q @ k.transpose(-2, -1)).squeeze(2) / math.sqrt(cfg.d_head)  # [read, head, pos]
    visible = torch.arange(resid.shape[1])[None, :] <= pos[:, None]
    scores = scores.masked_fill(~visible[:, None, :], float("-inf"))
    z = (torch.softmax(scores, dim=-1).unsqueeze(2) @ v).squeeze(2)  # [read, head, d_head]
    return attn.c_proj(z.reshape(len(seq), d))


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
    block runs only there; otherwise [seq, pos, vocab].
    """
    if stage not in ("attn", "mlp"):
        raise ValueError(f"stage must be 'attn' or 'mlp', not {stage!r}")
    n_layers = model.cfg.n_layers
    at_rows: torch.Tensor | None = None
    if rows is not None and layer == n_layers:
        at_rows = resid[rows]
    for index in range(layer, n_layers):
        block = model.blocks[index]
        skip_attn = index == layer and stage == "mlp"
        if rows is not None and index == n_layers - 1:
            at_rows = resid[rows]
            if not skip_attn:
                at_rows = at_rows + _attention_at_rows(model, index, resid, rows)
            at_rows = at_rows + block.mlp(block.ln2(at_rows))
            break
        if not skip_attn:
            resid = resid + block.attn(block.ln1(resid))
        resid = resid + block.mlp(block.ln2(resid))
    final = resid if at_rows is None else at_rows
    return F.linear(model.ln_final(final), model.embed.weight)
