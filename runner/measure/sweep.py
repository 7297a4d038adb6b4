"""Many single-site ablations on one checkpoint and probe, batched: per-read behaviour under
each.

Each ablation is one edited run of `runner.measure.batched`: it restarts from the clean pass
just before the site (a head's z, an MLP's neurons, the stream entering a block), the
ablations that restart at the same place are stacked along the batch in chunks of `max_rows`
sequences, and the last block's MLP runs only at the answer positions. The result equals one
full hooked forward pass per ablation up to float rounding (tests/unit/test_batched.py), at a
fraction of the cost (benchmarks/measure.py measures it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from runner.measure import batched, behaviour
from runner.measure.interventions import Site, replace_edit
from runner.measure.probe import CleanRun, ProbeBatch
from runner.model.transformer import Transformer


def sweep_names(model: Transformer) -> list[str]:
    """Activations the sweep restarts from."""
    return batched.restart_names(model)


def clean_pass(model: Transformer, probe: ProbeBatch) -> CleanRun:
    """The clean pass the sweep needs and no more: `sweep_names` cached, the last block at
    the answers only (`batched.restart_pass`)."""
    return batched.restart_pass(model, probe)


@torch.no_grad()
def ablation_sweep(
    model: Transformer,
    probe: ProbeBatch,
    run: CleanRun,
    sites: Sequence[Site],
    sources: Mapping[str, torch.Tensor],
    max_rows: int = batched.DEFAULT_MAX_ROWS,
) -> dict[str, dict[str, torch.Tensor]]:
    """Per-read accuracy, loss and margin under each site's ablation, keyed by site label.

    `sources[site.label]` is the replacement activation (see interventions); `run` must cache
    `sweep_names(model)`: `clean_pass`, or a full clean pass shared with other quantities.
    """
    runs = [
        batched.EditedRun(site.label, (replace_edit(site, sources[site.label], probe),))
        for site in sites
    ]
    edited = batched.run_many(model, probe, run, runs, max_rows)
    return {key: behaviour.per_read(out.logits, probe.target) for key, out in edited.items()}
