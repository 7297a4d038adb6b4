"""Per-head views of the model's weights, in the x @ W convention.

GPT-2 stores q, k and v of all heads in one `c_attn` matrix and the output projection of all heads
in one `c_proj`; these functions cut them into heads so that head h's query is
`x @ w_q[h] + b_q[h]` and its output `z_h @ w_o[h]`.
"""

from __future__ import annotations

import torch

from runner.model.transformer import Transformer

QKV = ("q", "k", "v")


def qkv_weight(model: Transformer, layer: int, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(W [head, d_model, d_head], b [head, d_head]) of head inputs `q`, `k` or `v`."""
    cfg = model.cfg
    attn = model.block(layer).attn
    i = QKV.index(which)
    rows = slice(i * cfg.d_model, (i + 1) * cfg.d_model)
    w = attn.c_attn.weight[rows].view(cfg.n_heads, cfg.d_head, cfg.d_model).transpose(1, 2)
    b = attn.c_attn.bias[rows].view(cfg.n_heads, cfg.d_head)
    return w, b


def w_o(model: Transformer, layer: int) -> torch.Tensor:
    """[head, d_head, d_model]: head h writes z_h @ w_o[h] into the residual stream."""
    cfg = model.cfg
    w = model.block(layer).attn.c_proj.weight  # [d_model, n_heads * d_head]
    return w.view(cfg.d_model, cfg.n_heads, cfg.d_head).permute(1, 2, 0)


def mlp_out(model: Transformer, layer: int) -> torch.Tensor:
    """[d_ff, d_model]: neuron i writes post_i * mlp_out[i] into the residual stream."""
    return model.block(layer).mlp.c_proj.weight.T


def head_output(model: Transformer, layer: int, z: torch.Tensor, head: int) -> torch.Tensor:
    """[..., d_model] residual write of one head from its z [..., n_heads, d_head]."""
    return z[..., head, :] @ w_o(model, layer)[head]
