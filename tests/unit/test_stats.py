"""The paired cluster bootstrap and the verdict rules, against known truth."""

from __future__ import annotations

import numpy as np

from runner.stats import paired_cluster_bootstrap
from runner.verdicts import decide


def clustered(rng: np.random.Generator, n_seq: int, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Bernoulli reads whose success rate varies by sequence around p (correlated reads)."""
    per_seq = np.clip(rng.normal(p, 0.15, n_seq), 0, 1)
    reads = rng.integers(5, 9, n_seq)
    clusters = np.repeat(np.arange(n_seq), reads)
    values = (rng.random(len(clusters)) < per_seq[clusters]).astype(float)
    return values, clusters


def test_same_seed_same_interval_and_estimate_is_the_mean():
    rng = np.random.default_rng(0)
    values, clusters = clustered(rng, 100, 0.7)
    zero = np.zeros_like(values)
    a = paired_cluster_bootstrap(values, zero, clusters, 0.95, seed=5)
    b = paired_cluster_bootstrap(values, zero, clusters, 0.95, seed=5)
    assert a == b
    assert a.left.value == values.mean() and a.difference.value == values.mean()
    assert a.n_sequences == 100 and a.n_reads == len(values)


def test_interval_covers_the_true_mean_near_the_nominal_rate():
    rng = np.random.default_rng(1)
    covered, sims = 0, 300
    for i in range(sims):
        values, clusters = clustered(rng, 80, 0.7)
        boot = paired_cluster_bootstrap(
            values, np.zeros_like(values), clusters, 0.9, seed=i, n_resamples=500
        )
        covered += boot.left.low <= 0.7 <= boot.left.high
    # 90% nominal; Monte-Carlo sd is about 1.7 points at 300 simulations
    assert 0.84 <= covered / sims <= 0.95


def test_an_independent_bootstrap_would_be_too_narrow_for_clustered_reads():
    rng = np.random.default_rng(2)
    values, clusters = clustered(rng, 80, 0.6)
    by_cluster = paired_cluster_bootstrap(values, np.zeros_like(values), clusters, 0.95, seed=0)
    by_read = paired_cluster_bootstrap(
        values, np.zeros_like(values), np.arange(len(values)), 0.95, seed=0
    )
    width = lambda b: b.left.high - b.left.low  # noqa: E731
    assert width(by_cluster) > 1.2 * width(by_read)


def test_verdict_rules():
    assert decide(">", 0.1, 0.2, 0.95)[0] == "supported"
    assert decide(">", -0.2, -0.1, 0.95)[0] == "negative"
    assert decide(">", -0.1, 0.1, 0.95)[0] == "unsupported"
    assert decide(">", 0.0, 0.0, 0.95)[0] == "negative"  # exactly equal is not greater
    assert decide(">=", 0.0, 0.0, 0.95)[0] == "supported"
    assert decide("<", -0.3, -0.1, 0.95)[0] == "supported"
    assert decide("<", 0.1, 0.3, 0.95)[0] == "negative"
    assert decide("<=", 0.0, 0.0, 0.95)[0] == "supported"
    assert "straddles" in decide("<", -0.1, 0.1, 0.95)[1]
