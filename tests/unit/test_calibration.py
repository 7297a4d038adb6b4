"""Calibration of verdicts on synthetic measurements whose truth is known.

Each simulated claim is a probe of sequences with correlated reads (a per-sequence offset plus
per-read noise, 3 to 8 reads per sequence), judged by the code the engine uses: the `Resampler`,
a `stats` test, the study's correction and `verdicts.decide`. Monte-Carlo error is stated with
each bound; the seeds are fixed, so each test is deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from runner.stats import bootstrap
from runner.stats.rules import decide

ALPHA = 0.05
CONFIDENCE = 1 - ALPHA
N_SEQ = 60
SEQ_SD, READ_SD = 0.5, 1.0


def probe(rng: np.random.Generator, mean: float) -> tuple[np.ndarray, np.ndarray]:
    reads = rng.integers(3, 9, N_SEQ)
    clusters = np.repeat(np.arange(N_SEQ), reads)
    offsets = rng.normal(0, SEQ_SD, N_SEQ)
    return mean + offsets[clusters] + rng.normal(0, READ_SD, len(clusters)), clusters


def true_standard_error(n: int = 20000) -> float:
    """SD of the mean over many independent probes (the estimator's sampling error)."""
    rng = np.random.default_rng(99)
    return float(np.std([probe(rng, 0.0)[0].mean() for _ in range(n)]))


SE = true_standard_error(4000)


def verdict(test: bootstrap.Test, correction: str = "none") -> str:
    return decide(test, test.p_value, test.p_contrary, CONFIDENCE, correction)[0]


def comparison(rng: np.random.Generator, mean: float, seed: int) -> bootstrap.Test:
    values, clusters = probe(rng, mean)
    v = bootstrap.Resampler(N_SEQ, seed).mean(values, clusters)
    return bootstrap.compare(v, ">", CONFIDENCE, N_SEQ)


def mc_error(rate: float, n: int) -> float:
    return math.sqrt(rate * (1 - rate) / n)


def test_with_no_true_effect_supported_stays_at_or_under_alpha():
    rng = np.random.default_rng(0)
    n = 1000
    supported = sum(verdict(comparison(rng, 0.0, i)) == "supported" for i in range(n))
    rate = supported / n
    # `x > 0` with x = 0: the test is one-sided at α/2, so about 0.025 is expected.
    assert rate <= ALPHA + 2 * mc_error(ALPHA, n), rate
    assert rate > 0.005  # not vacuous: false positives do happen at about the nominal rate


def test_interval_coverage_is_near_nominal():
    rng = np.random.default_rng(1)
    n, covered = 1000, 0
    for i in range(n):
        values, clusters = probe(rng, 0.3)
        ci = bootstrap.percentile_interval(
            bootstrap.Resampler(N_SEQ, i).mean(values, clusters), 0.95
        )
        covered += ci.low <= 0.3 <= ci.high
    # Percentile intervals over 60 clusters run a little narrow; 3 Monte-Carlo SEs either side.
    assert abs(covered / n - 0.95) <= 3 * mc_error(0.95, n), covered / n


def test_an_effect_of_three_standard_errors_is_supported_at_least_80_percent_of_the_time():
    rng = np.random.default_rng(2)
    n = 1000
    supported = sum(verdict(comparison(rng, 3 * SE, i)) == "supported" for i in range(n))
    # Expected power of a two-sided 5% test at 3 SE: Φ(3 − 1.96) ≈ 0.85.
    assert supported / n >= 0.80, supported / n


def test_holm_keeps_the_family_wise_rate_under_alpha_for_20_claims():
    rng = np.random.default_rng(3)
    studies, claims = 500, 20
    any_holm = any_raw = 0
    for s in range(studies):
        # 20 null claims on one probe, as in a study: the same draws serve every quantity.
        resampler = bootstrap.Resampler(N_SEQ, s)
        tests = []
        for _ in range(claims):
            values, clusters = probe(rng, 0.0)
            tests.append(
                bootstrap.compare(resampler.mean(values, clusters), ">", CONFIDENCE, N_SEQ)
            )
        adjusted = bootstrap.adjust([t.p_value for t in tests], "holm")
        contrary = bootstrap.adjust([t.p_contrary for t in tests], "holm")
        verdicts = [
            decide(t, a, b, CONFIDENCE, "holm")[0]
            for t, a, b in zip(tests, adjusted, contrary, strict=True)
        ]
        any_holm += "supported" in verdicts
        any_raw += any(verdict(t) == "supported" for t in tests)
    fwer = any_holm / studies
    assert fwer <= ALPHA + 2 * mc_error(ALPHA, studies), fwer
    assert any_raw / studies > 0.25  # uncorrected, 20 claims almost surely find something


def test_equivalence_at_the_bound_is_supported_at_most_alpha_of_the_time():
    rng = np.random.default_rng(4)
    n, bound = 1000, 3 * SE
    supported = 0
    for i in range(n):
        values, clusters = probe(rng, bound)  # true |x| = bound: not equivalent
        x = bootstrap.Resampler(N_SEQ, i).mean(values, clusters)
        supported += verdict(bootstrap.equivalence(x, bound, CONFIDENCE, N_SEQ)) == "supported"
    assert supported / n <= ALPHA + 2 * mc_error(ALPHA, n), supported / n


def test_equivalence_of_a_null_effect_within_a_wide_bound_is_found():
    rng = np.random.default_rng(5)
    n = 300
    supported = 0
    for i in range(n):
        values, clusters = probe(rng, 0.0)
        x = bootstrap.Resampler(N_SEQ, i).mean(values, clusters)
        supported += verdict(bootstrap.equivalence(x, 4 * SE, CONFIDENCE, N_SEQ)) == "supported"
    # TOST power at a bound of 4 SE: about 1 − 2 Φ(1.645 − 4) ≈ 0.98.
    assert supported / n >= 0.9


@pytest.mark.parametrize("checkpoints", [6, 10])
def test_trend_with_no_trend_is_supported_at_most_alpha_of_the_time(checkpoints: int):
    rng = np.random.default_rng(6 + checkpoints)
    n = 400
    steps = np.arange(checkpoints) * 100.0
    supported = 0
    for i in range(n):
        resampler = bootstrap.Resampler(N_SEQ, i)
        series = []
        for _ in range(checkpoints):
            values, clusters = probe(rng, 0.0)
            series.append(resampler.mean(values, clusters))
        test = bootstrap.trend(steps, np.stack(series, axis=1), ">", CONFIDENCE, seed=i)
        supported += verdict(test) == "supported"
    assert supported / n <= ALPHA + 2 * mc_error(ALPHA, n), supported / n
