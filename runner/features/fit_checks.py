"""What `hypo features fit` checks before it reads a checkpoint or creates a directory: that the
site names a per-token activation of the run's model, and that the autoencoder it would train
fits in this machine's memory.

The site is looked up on a copy of the model built on PyTorch's `meta` device, which has shapes
and no storage: a forward pass there gives the activation's shape without loading or
allocating a weight.
"""

from __future__ import annotations

import os

import torch

from hypodsl.errors import suggest
from runner.features.basis import BasisError
from runner.model.hooks import hook_points, run_with_cache
from runner.model.transformer import ModelConfig, Transformer

FLOAT_BYTES = 4
# A fit holds each weight four times (value, gradient, Adam's two moments) and three more
# weight-sized copies while it starts and ends (initial directions, folded scale, saved
# state); each batch holds about four [batch, width] arrays (pre-activation, activation and
# their gradients).
WEIGHT_COPIES = 7
BATCH_COPIES = 4
MEMORY_SHARE = 0.5  # of physical memory, leaving the rest to the activations and the system


def site_width(model: ModelConfig, site: str, where: str = "--site") -> int:
    """d of the site's [batch, pos, d] activation; a BasisError naming `where` otherwise."""
    with torch.device("meta"):
        skeleton = Transformer(model)
    names = hook_points(skeleton)
    if site not in names:
        hint = suggest(site, names)
        raise BasisError(f"{where} {site}: the model has no hook point `{site}`{hint}")
    tokens = torch.zeros(1, 2, dtype=torch.int64, device="meta")
    _, cache = run_with_cache(skeleton, tokens, [site])
    shape = list(cache[site].shape)
    if len(shape) != 3 or shape[-1] < 2:
        raise BasisError(
            f"{where} {site}: its activation is {shape}; a basis needs one vector per token "
            "([batch, pos, d] with d ≥ 2)"
        )
    return int(shape[-1])


def fit_bytes(d_in: int, width: int, batch_size: int) -> int:
    return FLOAT_BYTES * width * (WEIGHT_COPIES * d_in + BATCH_COPIES * batch_size)


def memory_budget() -> int:
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * MEMORY_SHARE)


def check_fit_memory(d_in: int, width: int, batch_size: int, budget: int | None = None) -> None:
    """A BasisError naming --width when training `width` features would not fit `budget`."""
    budget = memory_budget() if budget is None else budget
    needed = fit_bytes(d_in, width, batch_size)
    if needed > budget:
        most = budget // fit_bytes(d_in, 1, batch_size)
        raise BasisError(
            f"--width {width}: fitting {width} features on {d_in}-wide activations needs about "
            f"{_gib(needed)} of memory, more than the {_gib(budget)} a fit may use here "
            f"(half of this machine's); use --width {most} or less"
        )


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"
