"""A circuit's contribution when its paths may start or end at features.

Ordinary paths go through path patching (runner.measure.paths); `F -> unembed`,
`l2.error -> unembed` and `X -> F` through runner.measure.features. A circuit's contribution is
the sum of its paths'. The clean run must cache `names_for(model, bases)`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from hypodsl import plan as p
from runner.features.basis import Basis
from runner.measure import features
from runner.measure.paths import PathError, PathPatcher, path_names
from runner.measure.probe import CleanRun, ProbeBatch
from runner.model.transformer import Transformer


def names_for(model: Transformer, bases: Mapping[str, Basis]) -> list[str]:
    """Every activation a path contribution reads: the paths' and the bases' sites."""
    names = path_names(model)
    return names + sorted({b.info.site for b in bases.values()} - set(names))


def _basis(bases: Mapping[str, Basis], name: str) -> Basis:
    if name not in bases:
        raise PathError(f"basis `{name}` is not loaded")
    return bases[name]


def circuit_values(
    model: Transformer,
    probe: ProbeBatch,
    run: CleanRun,
    paths: Sequence[Sequence[p.PathNode]],
    bases: Mapping[str, Basis],
    seed: int = 0,
    method: str = "zero",
) -> torch.Tensor:
    """[read] the sum of the paths' contributions."""
    patcher: PathPatcher | None = None
    parts = []
    for nodes in paths:
        first, last = nodes[0], nodes[-1]
        if isinstance(first, p.FeatureNode | p.ErrorNode):
            basis = _basis(bases, first.basis)
            parts.append(features.to_unembed(model, run, probe, basis, first))
        elif isinstance(last, p.FeatureNode):
            basis = _basis(bases, last.basis)
            parts.append(features.lineage(model, run, probe, basis, first, last.ids))
        else:
            patcher = patcher or PathPatcher(model, probe, run, seed)
            parts.append(patcher.contribution(nodes, method))
    return torch.stack(parts).sum(dim=0)
