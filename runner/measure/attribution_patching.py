"""Attribution patching: first-order estimates of every head and neuron ablation at once.

Replacing an activation a by a' changes the margin by about (a' − a) · ∂m/∂a. One forward pass
caches every head's z and every neuron's activation; one backward pass of the summed answer
margins gives ∂m/∂a for all of them; the zero, mean and resample replacements are then a few
elementwise products. Sequences do not interact, so the estimate is per sequence: the change of
the sum of its reads' margins. It is a screen; `sweep.ablation_sweep` gives the exact effect.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from runner.measure import behaviour
from runner.measure import interventions as iv
from runner.measure.probe import ProbeBatch
from runner.model.hooks import run_with_cache
from runner.model.transformer import Transformer

KINDS = ("zero", "mean", "resample")


@dataclass(frozen=True)
class AttributionScores:
    """Estimated change of each sequence's summed read margins, per ablation kind."""

    heads: dict[str, torch.Tensor]  # kind -> [layer, seq, head]
    neurons: dict[str, torch.Tensor]  # kind -> [layer, seq, neuron]
    n_reads: int

    def mean_head_effect(self, kind: str) -> torch.Tensor:
        """[layer, head] estimated mean change of the margin per read."""
        return self.heads[kind].sum(dim=1) / self.n_reads

    def mean_neuron_effect(self, kind: str) -> torch.Tensor:
        return self.neurons[kind].sum(dim=1) / self.n_reads


def attribution_patching(
    model: Transformer, probe: ProbeBatch, seed: int = 0, kinds: tuple[str, ...] = KINDS
) -> AttributionScores:
    n_layers = model.cfg.n_layers
    z_names = [f"blocks.{layer}.attn.hook_z" for layer in range(n_layers)]
    post_names = [f"blocks.{layer}.mlp.hook_post" for layer in range(n_layers)]
    logits, cache = run_with_cache(model, probe.tokens, z_names + post_names, detach=False)
    total = behaviour.margin(probe.at_answers(logits), probe.target).sum()
    acts = [cache[n] for n in z_names + post_names]
    grads = torch.autograd.grad(total, acts)
    token_mask = probe.token_mask()
    heads: dict[str, list[torch.Tensor]] = {k: [] for k in kinds}
    neurons: dict[str, list[torch.Tensor]] = {k: [] for k in kinds}
    with torch.no_grad():
        for i, (act, grad) in enumerate(zip(acts, grads, strict=True)):
            act = act.detach()
            # effect = Σ_pos (replacement − act) · grad; summed over d_head too for heads
            dims = (1, 3) if i < n_layers else (1,)
            own = (act * grad).sum(dim=dims)
            for kind in kinds:
                if kind == "zero":
                    effect = -own
                elif kind == "mean":
                    mean = iv.mean_source(act, token_mask, probe.n_pos)
                    effect = (mean * grad).sum(dim=dims) - own
                else:
                    effect = (iv.resample_source(act, seed) * grad).sum(dim=dims) - own
                (heads if i < n_layers else neurons)[kind].append(effect)
    return AttributionScores(
        heads={k: torch.stack(v) for k, v in heads.items()},
        neurons={k: torch.stack(v) for k, v in neurons.items()},
        n_reads=len(probe),
    )
