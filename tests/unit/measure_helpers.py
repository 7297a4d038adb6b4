"""Shared helpers for the measurement tests."""

from __future__ import annotations

import numpy as np
import torch

from runner.features.basis import Basis, BasisInfo, FittedRun
from runner.features.sae import SparseAutoencoder
from runner.kv.dataset import Split
from runner.kv.roles import build_read_table
from runner.measure.probe import ProbeBatch


def split_of(arrays, name: str, n: int | None = None) -> Split:
    tokens = arrays[name]["tokens"].astype(np.int64)[:n]
    return Split(name, tokens, arrays[name]["lengths"][:n], build_read_table(tokens))


def probe_of(arrays, name: str, n: int | None = None) -> ProbeBatch:
    return ProbeBatch.from_split(split_of(arrays, name, n))


WIDTH = 40  # features of a random basis


def random_basis(site: str, d_in: int, seed: int, dtype=torch.float64) -> Basis:
    gen = torch.Generator().manual_seed(seed)
    sae = SparseAutoencoder(d_in, WIDTH)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, WIDTH, generator=gen) * 0.5)
        sae.b_enc.copy_(torch.randn(WIDTH, generator=gen) * 0.2)
        sae.W_dec.copy_(torch.randn(WIDTH, d_in, generator=gen))
        sae.b_dec.copy_(torch.randn(d_in, generator=gen) * 0.1)
    info = BasisInfo(
        site=site, d_in=d_in, d_sae=WIDTH, run=FittedRun(name="r", config_hash="c", data_hash="d"),
        checkpoints={}, fit={}, weights_sha256="",
    )  # fmt: skip
    return Basis(sae.to(dtype).requires_grad_(False), info, None)  # type: ignore[arg-type]
