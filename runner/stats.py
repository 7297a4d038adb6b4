"""Seeded cluster bootstrap of paired differences.

Reads in one sequence share a context, so they are not independent draws: the bootstrap
resamples whole sequences (clusters) with replacement and recomputes every statistic as a ratio
of cluster sums to cluster counts. Both sides of a comparison are resampled with the same
indices (a paired bootstrap), so the interval of `left - right` accounts for their correlation.
Percentile intervals; `n_resamples` and `seed` fix the result bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    """A mean over reads with its bootstrap percentile interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class PairedBootstrap:
    left: Estimate
    right: Estimate
    difference: Estimate  # left - right
    n_reads: int
    n_sequences: int


def paired_cluster_bootstrap(
    left: np.ndarray,
    right: np.ndarray,
    clusters: np.ndarray,
    confidence: float,
    seed: int,
    n_resamples: int = N_RESAMPLES,
) -> PairedBootstrap:
    """Intervals for mean(left), mean(right) and mean(left - right), resampling clusters."""
    if not (len(left) == len(right) == len(clusters)) or len(left) == 0:
        raise ValueError("left, right and clusters must be non-empty and of equal length")
    ids, cluster_of = np.unique(clusters, return_inverse=True)
    counts = np.bincount(cluster_of, minlength=len(ids)).astype(np.float64)
    sums = {
        "left": np.bincount(cluster_of, weights=left, minlength=len(ids)),
        "right": np.bincount(cluster_of, weights=right, minlength=len(ids)),
    }
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(ids), size=(n_resamples, len(ids)))
    total = counts[draws].sum(axis=1)
    boot = {k: v[draws].sum(axis=1) / total for k, v in sums.items()}
    tail = (1 - confidence) / 2

    def estimate(point: float, samples: np.ndarray) -> Estimate:
        low, high = np.quantile(samples, [tail, 1 - tail])
        return Estimate(float(point), float(low), float(high))

    return PairedBootstrap(
        left=estimate(float(left.mean()), boot["left"]),
        right=estimate(float(right.mean()), boot["right"]),
        difference=estimate(float((left - right).mean()), boot["left"] - boot["right"]),
        n_reads=len(left),
        n_sequences=len(ids),
    )
