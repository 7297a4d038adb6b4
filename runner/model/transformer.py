"""A GPT-2-architecture decoder written for reading, with a hook point on every activation.

Learned positions, pre-LayerNorm blocks, GELU MLP, biased projections, tied input/output
embeddings and a final LayerNorm (the layout of nanoGPT's `model.py`). Every activation passes
through a `HookPoint` named as in TransformerLens; the comment on each states its shape.

Per-head attention outputs (`hook_result`) are only materialised while a hook on them is
attached: summing per-head results reorders the floating-point sum of the output projection,
so the plain forward keeps the single matrix product, the computation GPT-2's forward makes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import nn

from runner.model.hooks import HookPoint


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    vocab_size: int = 146  # 10 specials + 8 keys + 128 values
    n_ctx: int = 96  # the benchmark's longest sequence
    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 4
    d_ff: int = 512  # 4 * d_model, as in GPT-2
    dropout: float = 0.0  # the draft trains without dropout
    ln_eps: float = 1e-5  # GPT-2's

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads


class LayerNorm(nn.Module):
    """LayerNorm with its scale exposed (`hook_scale`), so attribution can freeze it."""

    def __init__(self, d_model: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))
        self.hook_scale = HookPoint()  # [batch, pos, 1]
        self.hook_normalized = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(dim=-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(dim=-1, keepdim=True) + self.eps).sqrt())
        return self.hook_normalized(x / scale) * self.weight + self.bias


class CausalSelfAttention(nn.Module):
    causal_mask: torch.Tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.d_head = cfg.n_heads, cfg.d_head
        self.c_attn = nn.Linear(cfg.d_model, 3 * cfg.d_model)  # q, k, v for all heads
        self.c_proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.per_head_result = False
        mask = torch.tril(torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool))
        self.register_buffer("causal_mask", mask, persistent=False)
        self.hook_q = HookPoint()  # [batch, pos, head, d_head]
        self.hook_k = HookPoint()  # [batch, pos, head, d_head]
        self.hook_v = HookPoint()  # [batch, pos, head, d_head]
        self.hook_attn_scores = HookPoint()  # [batch, head, query_pos, key_pos]
        self.hook_pattern = HookPoint()  # [batch, head, query_pos, key_pos]
        self.hook_z = HookPoint()  # [batch, pos, head, d_head]
        self.hook_result = HookPoint()  # [batch, pos, head, d_model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.mix(x))

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """Each head's z: its attention-weighted values [B, T, nh, hs]."""
        B, T, D = x.shape
        q, k, v = self.c_attn(x).split(D, dim=2)
        q = self.hook_q(q.view(B, T, self.n_heads, self.d_head))  # (B, T, nh, hs)
        k = self.hook_k(k.view(B, T, self.n_heads, self.d_head))  # (B, T, nh, hs)
        v = self.hook_v(v.view(B, T, self.n_heads, self.d_head))  # (B, T, nh, hs)
        scores = q.transpose(1, 2) @ k.transpose(1, 2).transpose(-2, -1)  # (B, nh, T, T)
        # In place: the product is a fresh tensor and neither step's gradient needs its output.
        scores = scores.div_(math.sqrt(self.d_head))
        scores = scores.masked_fill_(~self.causal_mask[:T, :T], float("-inf"))
        pattern = self.hook_pattern(F.softmax(self.hook_attn_scores(scores), dim=-1))
        return self.hook_z((pattern @ v.transpose(1, 2)).transpose(1, 2))  # (B, T, nh, hs)

    def mix_at(self, x: torch.Tensor, queries: torch.Tensor, split: bool = False) -> torch.Tensor:
        """Each head's z at some query positions only: `queries` [B, M] (M >= 2) ->
        [B, M, nh, hs], equal to `mix(x)` at those positions up to float rounding: keys and
        values at every position, then the same products over fewer rows, which the CPU library
        may sum in another order. (M >= 2 keeps a single query row off the matrix-vector kernel,
        which on the processors measured sums in another order than the matrix kernel.) The
        hooks of q, k and v see every position; scores, pattern and z have no hook here.

        With `split` (and no hook on q), q is computed at the query positions only, from the
        fused product's columns for q: the same values. Passes that are differentiated keep the
        fused product, whose gradient the split would sum in another order."""
        B, T, D = x.shape
        M = queries.shape[1]
        if not split or self.hook_q._forward_hooks:
            q, k, v = self.c_attn(x).split(D, dim=2)
            q = self.hook_q(q.view(B, T, self.n_heads, self.d_head)).transpose(1, 2)
            rows = queries[:, None, :, None].expand(B, self.n_heads, M, self.d_head)
            q = q.gather(2, rows)
        else:
            # The fused product split by output columns: each column sums the same terms, in
            # the same order where the library keeps its kernel (`_rows_linear` pads the
            # small products that take another kernel on the processors measured).
            weight, bias = self.c_attn.weight, self.c_attn.bias
            k, v = (
                _rows_linear(x.reshape(B * T, D), weight[D:], bias[D:])
                .view(B, T, 2 * D)
                .split(D, dim=2)
            )
            at = x.gather(1, queries[:, :, None].expand(B, M, D)).reshape(B * M, D)
            q = _rows_linear(at, weight[:D], bias[:D]).view(B, M, self.n_heads, self.d_head)
            q = q.transpose(1, 2).contiguous()  # (B, nh, M, hs): the layout `gather` gives
        k = self.hook_k(k.reshape(B, T, self.n_heads, self.d_head))
        v = self.hook_v(v.reshape(B, T, self.n_heads, self.d_head))
        scores = q @ k.transpose(1, 2).transpose(-2, -1)  # (B, nh, M, T)
        scores = scores.div_(math.sqrt(self.d_head))
        future = torch.arange(T, device=x.device)[None, None, None, :] > queries[:, None, :, None]
        pattern = F.softmax(scores.masked_fill_(future, float("-inf")), dim=-1)
        return (pattern @ v.transpose(1, 2)).transpose(1, 2)  # (B, M, nh, hs)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """The output projection of the heads' z [..., nh, hs]."""
        *lead, _, _ = z.shape
        D = self.n_heads * self.d_head
        if not self.per_head_result:
            return self.c_proj(z.reshape(*lead, D))
        w_o = self.c_proj.weight.view(D, self.n_heads, self.d_head)  # (D, nh, hs)
        result = self.hook_result(torch.einsum("...nh,dnh->...nd", z, w_o))  # (..., nh, D)
        return result.sum(dim=-2) + self.c_proj.bias


# Products over fewer rows than this take other CPU kernels, which sum in another order
# (measured on Intel AVX-512: up to 5 rows at d_model 128; other processors differ).
_MIN_ROWS = 8


def _rows_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """F.linear of x [rows, in], padded with zero rows to `_MIN_ROWS` when it has fewer."""
    n = x.shape[0]
    if n >= _MIN_ROWS:
        return F.linear(x, weight, bias)
    padded = torch.cat([x, x.new_zeros(_MIN_ROWS - n, x.shape[1])])
    return F.linear(padded, weight, bias)[:n]


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.d_model, cfg.d_ff)
        self.c_proj = nn.Linear(cfg.d_ff, cfg.d_model)
        self.hook_pre = HookPoint()  # [batch, pos, d_ff]
        self.hook_post = HookPoint()  # [batch, pos, d_ff]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.hidden(x))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The neurons' activations [..., d_ff]."""
        return self.hook_post(F.gelu(self.hook_pre(self.c_fc(x)), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = LayerNorm(cfg.d_model, cfg.ln_eps)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = LayerNorm(cfg.d_model, cfg.ln_eps)
        self.mlp = MLP(cfg)
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
        self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]

    def forward(self, resid: torch.Tensor) -> torch.Tensor:
        resid = self.hook_resid_pre(resid)
        return self.from_z(resid, self.attn.mix(self.ln1(resid)))

    # The block split at its heads' z and its neurons' activations: the forward pass is these
    # steps in order, and an edited pass can restart at either from cached clean activations.
    def from_z(self, resid_pre: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        resid = self.hook_resid_mid(resid_pre + self.hook_attn_out(self.attn.project(z)))
        return self.from_post(resid, self.mlp.hidden(self.ln2(resid)))

    def from_post(self, resid_mid: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
        return self.hook_resid_post(resid_mid + self.hook_mlp_out(self.mlp.c_proj(post)))


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)  # also the unembedding (tied)
        self.pos_embed = nn.Embedding(cfg.n_ctx, cfg.d_model)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.ln_final = LayerNorm(cfg.d_model, cfg.ln_eps)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: scale residual writes by depth
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [batch, pos, vocab] for tokens [batch, pos]."""
        resid = self.embed_tokens(tokens)
        for block in self.blocks:
            resid = block(resid)
        return F.linear(self.ln_final(resid), self.embed.weight)  # (B, T, vocab)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The residual stream entering block 0: token plus position embeddings."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        pos = self.pos_embed(positions).expand(tokens.shape[0], -1, -1)
        return self.hook_embed(self.embed(tokens)) + self.hook_pos_embed(pos)

    def block(self, layer: int) -> Block:
        """Block `layer`, typed (indexing the ModuleList gives a plain Module)."""
        block = self.blocks[layer]
        assert isinstance(block, Block)
        return block

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
