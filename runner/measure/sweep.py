"""Many single-site ablations on one checkpoint and probe, batched.

Ablating head h of layer l changes nothing before block l's attention output, so its run starts
from the clean resid_mid of block l plus the head's change, (z'_h − z_h) W_O^h, and recomputes
only what follows; an MLP or neuron ablation starts from the next block. The ablations that
restart at the same place are stacked along the batch (in chunks bounded by `max_rows`), and the
last block runs only at answer positions. The result equals one full forward pass per ablation
(a test asserts it), at a fraction of the cost (benchmarks/measure.py measures it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import torch

from runner.measure import behaviour
from runner.measure.interventions import Site
from runner.measure.probe import CleanRun, ProbeBatch, residual_names
from runner.measure.recompute import run_from
from runner.measure.weights import mlp_out, w_o
from runner.model.transformer import Transformer


def sweep_names(model: Transformer) -> list[str]:
    """Activations the sweep restarts from."""
    names = [*residual_names(model), f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"]
    for layer in range(model.cfg.n_layers):
        names += [f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.mlp.hook_post"]
    return names


def _layer_of(site: Site) -> int:
    return int(site.hook.split(".")[1])


def _restart(model: Transformer, run: CleanRun, site: Site, source: torch.Tensor):
    """(layer, stage, residual) from which the ablated run continues."""
    layer = _layer_of(site)
    clean = run[site.hook]
    change = site.part(source.expand_as(clean)) - site.part(clean)
    if site.hook.endswith("attn.hook_z") and site.head is not None:
        write = change @ w_o(model, layer)[site.head]
        return layer, "mlp", run[f"blocks.{layer}.hook_resid_mid"] + write
    if site.hook.endswith("mlp.hook_post") and site.role is None:
        w = mlp_out(model, layer)
        write = change @ (w if site.neurons is None else w[list(site.neurons)])
        if layer + 1 < model.cfg.n_layers:
            return layer + 1, "attn", run[f"blocks.{layer + 1}.hook_resid_pre"] + write
        return model.cfg.n_layers, "attn", run[f"blocks.{layer}.hook_resid_post"] + write
    raise ValueError(f"the sweep ablates heads, MLPs and neurons, not `{site.label}`")


@torch.no_grad()
def ablation_sweep(
    model: Transformer,
    probe: ProbeBatch,
    run: CleanRun,
    sites: Sequence[Site],
    sources: Mapping[str, torch.Tensor],
    max_rows: int = 512,
) -> dict[str, dict[str, torch.Tensor]]:
    """Per-read accuracy, loss and margin under each site's ablation, keyed by site label.

    `sources[site.label]` is the replacement activation (see interventions); `run` must cache
    `sweep_names(model)`.
    """
    groups: dict[tuple[int, str], list[tuple[Site, torch.Tensor]]] = defaultdict(list)
    for site in sites:
        layer, stage, resid = _restart(model, run, site, sources[site.label])
        groups[(layer, stage)].append((site, resid))
    n_seq = probe.n_seq
    per_chunk = max(1, max_rows // max(n_seq, 1))
    out: dict[str, dict[str, torch.Tensor]] = {}
    for (layer, stage), members in groups.items():
        for start in range(0, len(members), per_chunk):
            chunk = members[start : start + per_chunk]
            stacked = torch.cat([resid for _, resid in chunk])
            offsets = torch.arange(len(chunk)).repeat_interleave(len(probe)) * n_seq
            rows = (probe.read_seq.repeat(len(chunk)) + offsets, probe.answer.repeat(len(chunk)))
            logits = run_from(model, stacked, layer, stage, rows)
            for (site, _), part in zip(chunk, logits.split(len(probe)), strict=True):
                out[site.label] = behaviour.per_read(part, probe.target)
    return out
