"""The cluster bootstrap, the tests and the verdict rules, against known truth."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as sps

from runner.stats import bootstrap
from runner.stats.births import birth
from runner.stats.results import RunVerdict
from runner.stats.rules import aggregate_runs, decide


def clustered(rng: np.random.Generator, n_seq: int, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Bernoulli reads whose success rate varies by sequence around p (correlated reads)."""
    per_seq = np.clip(rng.normal(p, 0.15, n_seq), 0, 1)
    reads = rng.integers(5, 9, n_seq)
    clusters = np.repeat(np.arange(n_seq), reads)
    values = (rng.random(len(clusters)) < per_seq[clusters]).astype(float)
    return values, clusters


def test_same_seed_same_draws_and_row_zero_is_the_plain_mean():
    rng = np.random.default_rng(0)
    values, clusters = clustered(rng, 100, 0.7)
    a = bootstrap.Resampler(100, seed=5).mean(values, clusters)
    b = bootstrap.Resampler(100, seed=5).mean(values, clusters)
    assert np.array_equal(a, b) and len(a) == bootstrap.N_RESAMPLES + 1
    assert a[0] == pytest.approx(values.mean(), abs=1e-15)
    # a resample's mean is the mean over the reads of the sequences drawn, with repeats
    r = bootstrap.Resampler(100, seed=5)
    counts = r.weights[7]
    weights = counts[clusters]
    assert a[7] == pytest.approx((weights * values).sum() / weights.sum(), rel=1e-12)


def test_reads_left_out_do_not_count():
    values = np.array([1.0, np.nan, 3.0, 5.0])
    clusters = np.array([0, 0, 1, 1])
    v = bootstrap.Resampler(2, seed=0).mean(values, clusters, np.isfinite(values))
    assert v[0] == pytest.approx(3.0)


def test_an_independent_bootstrap_would_be_too_narrow_for_clustered_reads():
    rng = np.random.default_rng(2)
    values, clusters = clustered(rng, 80, 0.6)
    by_cluster = bootstrap.Resampler(80, 0).mean(values, clusters)
    by_read = bootstrap.Resampler(len(values), 0).mean(values, np.arange(len(values)))

    def width(v: np.ndarray) -> float:
        ci = bootstrap.percentile_interval(v, 0.95)
        return ci.high - ci.low

    assert width(by_cluster) > 1.2 * width(by_read)


def vector(point: float, spread: float, n: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([[point], point + spread * rng.standard_normal(n)])


@pytest.mark.parametrize(
    ("op", "point", "verdict"),
    [
        (">", 1.0, "supported"),
        (">", -1.0, "negative"),
        (">", 0.05, "unsupported"),
        ("<", -1.0, "supported"),
        ("<", 1.0, "negative"),
        (">=", 1.0, "supported"),
    ],
)
def test_comparison_verdicts(op: str, point: float, verdict: str):
    test = bootstrap.compare(vector(point, 0.1), op, 0.95, n_clusters=100)
    assert decide(test, test.p_value, test.p_contrary, 0.95, "none")[0] == verdict


def test_an_exact_tie_contradicts_a_strict_prediction_and_supports_a_weak_one():
    tie = np.zeros(bootstrap.N_RESAMPLES + 1)
    strict = bootstrap.compare(tie, ">", 0.95, 10)
    weak = bootstrap.compare(tie, ">=", 0.95, 10)
    assert decide(strict, strict.p_value, strict.p_contrary, 0.95, "none")[0] == "negative"
    assert decide(weak, weak.p_value, weak.p_contrary, 0.95, "none")[0] == "supported"


def test_the_wald_p_value_is_students_t_on_the_scaled_bootstrap_se():
    v = vector(0.2, 0.1, n=20000)
    test = bootstrap.compare(v, ">", 0.95, 100)
    se = np.std(v[1:], ddof=1) * np.sqrt(100 / 99)
    assert test.p_value == pytest.approx(2 * sps.t.sf(0.2 / se, df=99), rel=1e-9)
    assert test.p_value == pytest.approx(0.0482, abs=0.003)  # z ≈ 2, t with 99 df
    many = bootstrap.compare(v, ">", 0.95, 100000)  # many sequences: the normal tail
    assert many.p_value == pytest.approx(2 * sps.norm.sf(0.2 / np.std(v[1:], ddof=1)), rel=1e-3)


def test_a_correction_can_turn_supported_into_inconclusive():
    test = bootstrap.compare(vector(0.25, 0.1, n=20000), ">", 0.95, 100)  # p ≈ 0.012
    assert decide(test, test.p_value, test.p_contrary, 0.95, "none")[0] == "supported"
    verdict, reason = decide(test, 20 * test.p_value, 1.0, 0.95, "holm")
    assert verdict == "unsupported" and "after correction" in reason


def test_equivalence_is_two_one_sided_tests():
    inside = bootstrap.equivalence(vector(0.0, 0.005), bound=0.02, confidence=0.95, n_clusters=100)
    assert inside.supported_by_interval and inside.p_value < 1e-3
    edge = bootstrap.equivalence(vector(0.015, 0.005), bound=0.02, confidence=0.95, n_clusters=100)
    assert not edge.supported_by_interval  # the 90% interval reaches 0.0232
    se = np.std(vector(0.015, 0.005)[1:], ddof=1) * np.sqrt(100 / 99)
    assert edge.p_value == pytest.approx(sps.t.sf(0.005 / se, df=99), rel=1e-6)
    outside = bootstrap.equivalence(vector(0.1, 0.005), bound=0.02, confidence=0.95, n_clusters=100)
    assert outside.contrary_by_interval and outside.p_contrary < 1e-3


def test_holm_and_bh_match_independent_computations():
    p = [0.01, 0.04, 0.03, 0.005, 0.2]
    # Holm by hand: sorted 0.005, 0.01, 0.03, 0.04, 0.2 times 5, 4, 3, 2, 1, running max.
    assert bootstrap.adjust(p, "holm") == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.2])
    assert bootstrap.adjust(p, "bh") == pytest.approx(list(sps.false_discovery_control(p)))
    assert bootstrap.adjust(p, "none") == p


def test_vectorised_births_match_the_definition():
    rng = np.random.default_rng(0)
    steps = np.array([0, 10, 20, 40, 80])
    holds = rng.random((500, 5)) < 0.7
    got = bootstrap.births(steps.astype(float), holds)
    for row, b in zip(holds, got, strict=True):
        expected = birth(list(steps), list(row))
        assert (expected is None and b == np.inf) or b == expected


def test_birth_order_on_clearly_separated_births():
    early = np.full(bootstrap.N_RESAMPLES + 1, 100.0)
    late = np.full(bootstrap.N_RESAMPLES + 1, 300.0)
    late[1::4] = 200.0
    before = bootstrap.birth_order(early, late, "before", 0.95)
    assert before.supported_by_interval and before.p_value == pytest.approx(2 / 2001)
    after = bootstrap.birth_order(early, late, "after", 0.95)
    assert after.contrary_by_interval and not after.supported_by_interval
    never = np.full(bootstrap.N_RESAMPLES + 1, np.inf)
    assert bootstrap.birth_order(early, never, "before", 0.95).supported_by_interval
    both_never = bootstrap.birth_order(never, never, "before", 0.95)
    assert not both_never.supported_by_interval and not both_never.contrary_by_interval


def test_trend_permutation_p_value_is_exact_for_few_checkpoints():
    steps = np.array([0.0, 10, 20, 30, 40])
    rising = np.tile([1.0, 2.0, 3.0, 4.0, 5.0], (bootstrap.N_RESAMPLES + 1, 1))
    test = bootstrap.trend(steps, rising, ">", 0.95, seed=0)
    assert test.estimate == pytest.approx(1.0)
    # only the identity ordering reaches rho = 1: p = 1/5!, doubled
    assert test.p_value == pytest.approx(2 / 120)
    assert bootstrap.trend(steps, rising, "<", 0.95, seed=0).p_contrary == pytest.approx(2 / 120)
    # the same by brute force over every ordering
    orders = itertools.permutations(range(5))
    rhos = [sps.spearmanr(steps, np.array(order)).statistic for order in orders]
    assert np.mean(np.array(rhos) >= 1 - 1e-12) == pytest.approx(1 / 120)


def test_seed_matrix_binomial_and_aggregate():
    # P(X >= 2) for X ~ Binomial(3, 0.05), by hand
    assert bootstrap.seed_matrix_p(2, 3, 0.05) == pytest.approx(3 * 0.05**2 * 0.95 + 0.05**3)
    run = lambda v: RunVerdict(run="r", verdict=v, reason="", predictions=())  # noqa: E731
    assert aggregate_runs((run("supported"),) * 2 + (run("unsupported"),), 0.95)[0] == "supported"
    one_of_three = aggregate_runs((run("supported"),) + (run("unsupported"),) * 2, 0.95)
    assert one_of_three[0] == "unsupported" and "1 of 3" in one_of_three[1]
    assert aggregate_runs((run("negative"),) * 3, 0.95)[0] == "negative"
