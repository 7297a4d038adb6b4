"""Whether a probe's clean forward pass fits in memory, checked before anything is measured.

The engine runs one forward pass per (checkpoint, probe) over the whole probe and keeps the
activations its quantities read; edited passes then go a window of sequences at a time. The
clean pass's memory therefore grows with the probe: for each sequence position it holds the
logits (one float per vocabulary entry) and, per layer, the residual stream at a few places,
the heads' queries, keys, values and outputs, the MLP's neurons, and the attention scores and
pattern (one float per earlier position per head). A probe whose estimate passes the limit
(half the machine's memory) is refused with its size, instead of failing part-way with an
allocation error.
"""

from __future__ import annotations

import os

from runner.model.rundir import RunError
from runner.model.transformer import ModelConfig

BYTES_PER_FLOAT = 4
# Activations are kept, and the pass's temporaries (a softmax's input and output, a GELU's),
# the edited passes' windows and the model live beside them: the reference study's measured
# peak at 512 sequences (3.6-3.9 GB, docs/performance.md) is about three times what is kept.
WORKING_FACTOR = 3


def clean_pass_bytes(n_sequences: int, n_positions: int, model: ModelConfig) -> int:
    """An upper estimate of the clean forward pass's memory over a probe."""
    per_layer = 8 * model.d_model + model.d_ff + 2 * model.n_heads * n_positions
    per_position = model.vocab_size + model.n_layers * per_layer
    kept = n_sequences * n_positions * per_position * BYTES_PER_FLOAT
    return WORKING_FACTOR * kept


def memory_limit() -> int:
    """Half the machine's physical memory."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2


def check_probe_fits(name: str, n_sequences: int, n_positions: int, model: ModelConfig) -> None:
    needed, limit = clean_pass_bytes(n_sequences, n_positions, model), memory_limit()
    if needed > limit:
        most = max(1, n_sequences * limit // needed)
        raise RunError(
            f"probe `{name}`: {n_sequences} sequences of {n_positions} positions need about "
            f"{needed / 2**30:.1f} GiB for one forward pass, more than the {limit / 2**30:.1f} GiB "
            f"allowed (half this machine's memory); write `n {most}` or fewer on the probe"
        )
