"""`hypo features explore`: what a basis's features do across the run, to suggest families.

On a discovery probe (by default the first 256 sequences of `val_iid`, not a split a study's
claims should test on), at every checkpoint and every read's answer position:

- per feature, its mean activation and active fraction: a trajectory over training;
- families: features whose mean-activation trajectories correlate (Pearson r over checkpoints)
  above a threshold, by average-linkage clustering of 1 − r (features never active are left
  out), each with a `family` line to paste into a spec;
- births: the first checkpoint from which a feature's mean activation stays at or above half
  of its largest value.

Exploration suggests; specs decide. Nothing here is read by `hypo run`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from runner.features.basis import Basis
from runner.kv import dataset
from runner.model import checkpoints
from runner.model.hooks import run_with_cache
from runner.model.rundir import data_dir, read_config

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Family:
    name: str
    features: tuple[int, ...]
    mean_correlation: float  # mean pairwise r of its members' trajectories
    birth: int | None  # the earliest birth among its members


@dataclass(frozen=True)
class Exploration:
    steps: tuple[int, ...]
    mean_activation: np.ndarray  # [step, feature]
    active_fraction: np.ndarray  # [step, feature]
    correlation: np.ndarray  # [feature, feature] of the mean-activation trajectories
    families: tuple[Family, ...]
    births: dict[int, int | None]  # feature -> birth step
    probe: str


def answer_activations(basis: Basis, model: torch.nn.Module, split: dataset.Split) -> torch.Tensor:
    """[read, d_sae] feature activations at every read's answer position."""
    n_pos = int(split.lengths.max())
    tokens = torch.as_tensor(split.tokens[:, :n_pos], dtype=torch.int64)
    seq = torch.as_tensor(split.reads.sequence, dtype=torch.int64)
    pos = torch.as_tensor(split.reads.single["answer"], dtype=torch.int64)
    out = []
    with torch.no_grad():
        for start in range(0, tokens.shape[0], 64):
            _, cache = run_with_cache(model, tokens[start : start + 64], [basis.info.site])
            chosen = (seq >= start) & (seq < start + 64)
            x = cache[basis.info.site][seq[chosen] - start, pos[chosen]]
            out.append(basis.sae.encode(x))
    return torch.cat(out)


def birth_step(series: np.ndarray, steps: tuple[int, ...]) -> int | None:
    """First step from which series stays at or above half its maximum (None if never > 0)."""
    top = float(series.max())
    if top <= 0:
        return None
    above = series >= top / 2
    for i in range(len(steps)):
        if above[i:].all():
            return steps[i]
    return None


def cluster(trajectories: np.ndarray, threshold: float) -> tuple[np.ndarray, list[list[int]]]:
    """Correlation matrix of the trajectories [step, feature] and the clusters (of ≥ 2 live
    features) whose average-linkage distance 1 − r stays below 1 − threshold."""
    n = trajectories.shape[1]
    live = [i for i in range(n) if np.ptp(trajectories[:, i]) > 0]
    corr = np.eye(n)
    if len(live) >= 2:
        corr[np.ix_(live, live)] = np.corrcoef(trajectories[:, live].T)
    groups: list[list[int]] = []
    if len(live) >= 2:
        distance = np.clip(1 - corr[np.ix_(live, live)], 0, 2)
        np.fill_diagonal(distance, 0)
        labels = fcluster(
            linkage(squareform(distance, checks=False), method="average"),
            t=1 - threshold,
            criterion="distance",
        )
        for label in sorted(set(labels)):
            members = sorted(live[i] for i in np.flatnonzero(labels == label))
            if len(members) >= 2:
                groups.append(members)
    groups.sort(key=lambda g: (-len(g), g))
    return corr, groups


def explore(
    basis: Basis,
    run_dir: Path,
    split: str = "val_iid",
    sequences: int = 256,
    threshold: float = 0.8,
    progress: ProgressFn | None = None,
) -> Exploration:
    config = read_config(run_dir)
    steps = tuple(checkpoints.list_steps(run_dir))
    probe = dataset.load_split(data_dir(run_dir), split, sequences)
    means, actives = [], []
    for i, step in enumerate(steps):
        model = checkpoints.load_model(run_dir, step, config.model)
        f = answer_activations(basis, model, probe)
        means.append(f.mean(dim=0).to(torch.float64).numpy())
        actives.append((f > 0).to(torch.float64).mean(dim=0).numpy())
        if progress:
            progress(i + 1, len(steps))
    mean_activation, active_fraction = np.stack(means), np.stack(actives)
    corr, groups = cluster(mean_activation, threshold)
    births = {i: birth_step(mean_activation[:, i], steps) for i in range(basis.info.d_sae)}
    families = []
    for k, members in enumerate(groups):
        pairs = corr[np.ix_(members, members)][np.triu_indices(len(members), 1)]
        born = [b for b in (births[i] for i in members) if b is not None]
        families.append(
            Family(f"c{k + 1}", tuple(members), float(pairs.mean()), min(born) if born else None)
        )
    return Exploration(
        steps, mean_activation, active_fraction, corr, tuple(families), births,
        f"{split} (first {len(probe)} sequences)",
    )  # fmt: skip
