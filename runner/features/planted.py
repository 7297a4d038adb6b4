"""A feature basis set by hand for the planted circuit (runner.model.planted): ground truth for
the feature layer.

The planted retrieval head L1.H0 writes the retrieved value token's identity dimension (gain
20) into the residual stream, so `blocks.1.hook_resid_post` (the final residual) carries one
known feature per value token. The planted basis has, at that site:

- features 0..127: value token v's identity dimension, f_v = ReLU(x[token(v)]) (encoder and
  decoder e_token(v), no biases). The family of all 128 is the retrieved value: active at
  every read, carrying most of the answer margin; zeroing it leaves no value evidence.
- features 128..(128 + N_IDLE − 1): the identity dimensions of special tokens that never occur
  at an answer position (`<pad>`, `<eos>`, ...), never active there: a family the model does
  not use.
"""

from __future__ import annotations

import torch

from runner.features.sae import SparseAutoencoder
from runner.kv import vocab
from runner.model.planted import CONFIG, TOKENS

SITE = "blocks.1.hook_resid_post"
VALUE_FEATURES = tuple(range(vocab.N_VALUES))
IDLE_TOKENS = (vocab.PAD, vocab.EOS)
IDLE_FEATURES = tuple(range(vocab.N_VALUES, vocab.N_VALUES + len(IDLE_TOKENS)))
WIDTH = vocab.N_VALUES + len(IDLE_TOKENS)


@torch.no_grad()
def planted_basis() -> SparseAutoencoder:
    sae = SparseAutoencoder(CONFIG.d_model, WIDTH)
    dims = [TOKENS + vocab.value_token(v) for v in range(vocab.N_VALUES)]
    dims += [TOKENS + t for t in IDLE_TOKENS]
    for feature, dim in enumerate(dims):
        sae.W_enc[dim, feature] = 1.0
        sae.W_dec[feature, dim] = 1.0
    return sae.eval().requires_grad_(False)
