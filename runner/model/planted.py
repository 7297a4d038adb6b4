"""A planted circuit: a transformer whose weights are set by hand to solve stream KV retrieval.

Ground truth for the measurement library (in the manner of compiled RASP programs): every
feature lives in its own residual dimension, so what each head does is known exactly.

Residual layout (d_model 320):

| dims | feature |
|---|---|
| 0-145 | token identity (one-hot) |
| 146-241 | position (one-hot) |
| 242, 243 | anchor: +C and −C at every position |
| 244-251 | previous token's key (written by L0.H0) |
| 252 | "this is a write's value" flag (written by L0.H1) |
| 253 | dump: −(sum of the other features), so every write has zero mean |

Every vector written into the residual stream sums to zero (its dump entry cancels the rest),
so LayerNorm's mean subtraction does nothing; the anchor dominates the norm, so its scale is
almost constant, and LayerNorm weights equal to that scale make each LayerNorm nearly the
identity.

Heads:

- L0.H0, previous-token head: attends from t to t − 1 (positional QK) and copies the key token
  found there into the previous-key dims. At a value position this is the key it belongs to.
- L0.H1, write flag: attends from t to t − 2 and copies "is `W`" into the flag dim: set exactly at
  the values of writes.
- L1.H0, retrieval: its query is the current token's key; its keys are the previous-key dims
  (K-composition with L0.H0), the flag, and a recency term ε·position. The latest write to the
  read's key wins by ≥ 3ε·(3 positions); it copies that value token into the output (gain G).
- L1.H1: a distractor that attends uniformly and writes a weak copy of the value tokens it sees.

MLPs are zero. Ablating L0.H0 or L1.H0 destroys retrieval; ablating L0.H1 or L1.H1 does not
(without the flag a later read of the key, whose answer is the same value, can win instead).
"""

from __future__ import annotations

import math

import torch

from runner.kv import vocab
from runner.model.transformer import ModelConfig, Transformer

N_CTX = 96
TOKENS = 0
POSITIONS = vocab.VOCAB_SIZE  # 146
ANCHOR_POS, ANCHOR_NEG = POSITIONS + N_CTX, POSITIONS + N_CTX + 1  # 242, 243
PREV_KEY = ANCHOR_NEG + 1  # 244..251
FLAG = PREV_KEY + vocab.N_KEYS  # 252
DUMP = FLAG + 1  # 253

ANCHOR = 100.0  # C
POSITIONAL_SCORE = 30.0  # score of the attended position in the L0 heads
KEY_SCORE = 400.0  # score per matching feature in the retrieval head
RECENCY = 3.0  # ε: score per position in the retrieval head
RETRIEVAL_GAIN = 20.0  # G
DISTRACTOR_GAIN = 1.0

CONFIG = ModelConfig(
    vocab_size=vocab.VOCAB_SIZE, n_ctx=N_CTX, d_model=320, n_layers=2, n_heads=2, d_ff=16
)


def _feature(dim: int, gain: float = 1.0) -> torch.Tensor:
    """A residual write of `gain` at `dim`, balanced in the dump dim so it has zero mean."""
    v = torch.zeros(CONFIG.d_model)
    v[dim] += gain
    v[DUMP] -= gain
    return v


def _head_rows(head: int) -> slice:
    return slice(head * CONFIG.d_head, (head + 1) * CONFIG.d_head)


@torch.no_grad()
def planted_model() -> Transformer:
    """The planted transformer (deterministic; no randomness)."""
    cfg = CONFIG
    model = Transformer(cfg)
    for param in model.parameters():
        param.zero_()
    model.embed.weight.copy_(torch.stack([_feature(TOKENS + t) for t in range(cfg.vocab_size)]))
    anchor = torch.zeros(cfg.d_model)
    anchor[ANCHOR_POS], anchor[ANCHOR_NEG] = ANCHOR, -ANCHOR
    model.pos_embed.weight.copy_(
        torch.stack([_feature(POSITIONS + t) + anchor for t in range(N_CTX)])
    )
    # The anchor dominates every residual norm: LayerNorm divides by about this scale.
    scale = math.sqrt(2 * ANCHOR**2 / cfg.d_model)
    blocks = [model.block(i) for i in range(cfg.n_layers)]
    for ln in [*(b.ln1 for b in blocks), *(b.ln2 for b in blocks), model.ln_final]:
        ln.weight.fill_(scale)

    root = math.sqrt(cfg.d_head)
    d = cfg.d_model
    attn0, attn1 = blocks[0].attn, blocks[1].attn
    w0 = attn0.c_attn.weight  # [3 d_model, d_model]: rows q | k | v, columns residual dims
    # L0.H0 (previous token) and L0.H1 (two back): positional QK, each query position t's
    # query dim t matches the key dim of position t - offset.
    for head, offset in ((0, 1), (1, 2)):
        q_rows, k_rows = _head_rows(head), _head_rows(head)
        for t in range(N_CTX):
            w0[q_rows.start + t % cfg.d_head, POSITIONS + t] = POSITIONAL_SCORE * root
            if t + offset < N_CTX:
                w0[d + k_rows.start + (t + offset) % cfg.d_head, POSITIONS + t] = 1.0
    v0 = 2 * d
    for key in range(vocab.N_KEYS):
        w0[v0 + _head_rows(0).start + key, TOKENS + vocab.key_token(key)] = 1.0
        attn0.c_proj.weight[:, _head_rows(0).start + key] = _feature(PREV_KEY + key)
    w0[v0 + _head_rows(1).start, TOKENS + vocab.WRITE] = 1.0
    attn0.c_proj.weight[:, _head_rows(1).start] = _feature(FLAG)

    # L1.H0 (retrieval): score = KEY_SCORE·[previous key matches] + KEY_SCORE·flag
    # + RECENCY·position, all divided back out of the 1/sqrt(d_head) scaling.
    w1 = attn1.c_attn.weight
    rows = _head_rows(0)
    for key in range(vocab.N_KEYS):
        w1[rows.start + key, TOKENS + vocab.key_token(key)] = KEY_SCORE * root
        w1[d + rows.start + key, PREV_KEY + key] = 1.0
    # The anchor is constant, so it serves as a query bias: `ANCHOR / scale`-free after LN.
    flag_q, recency_q = rows.start + vocab.N_KEYS, rows.start + vocab.N_KEYS + 1
    w1[flag_q, ANCHOR_POS] = KEY_SCORE * root / ANCHOR
    w1[d + flag_q, FLAG] = 1.0
    w1[recency_q, ANCHOR_POS] = RECENCY * root / ANCHOR
    for t in range(N_CTX):
        w1[d + recency_q, POSITIONS + t] = float(t)
    for value in range(vocab.N_VALUES):
        token = vocab.value_token(value)
        w1[2 * d + rows.start + value, TOKENS + token] = 1.0
        attn1.c_proj.weight[:, rows.start + value] = _feature(TOKENS + token, RETRIEVAL_GAIN)
        # L1.H1 (distractor): zero QK, so uniform attention; a weak copy of value tokens.
        w1[2 * d + _head_rows(1).start + value, TOKENS + token] = 1.0
        attn1.c_proj.weight[:, _head_rows(1).start + value] = _feature(
            TOKENS + token, DISTRACTOR_GAIN
        )
    return model
