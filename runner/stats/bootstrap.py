"""Seeded cluster bootstrap over a probe's sequences, and the tests verdicts are decided on.

Reads in one sequence share a context, so they are not independent draws: the bootstrap
resamples whole sequences (clusters) with replacement. A `Resampler` fixes the draws of one
probe once (row b counts how often each sequence was drawn in resample b), so every quantity
measured on that probe, at every checkpoint, is resampled with the same draws: comparisons
between them are paired, and window means, trends and births are bootstrapped jointly.

A statistic is carried as a vector `v` of length 1 + n_resamples: v[0] is the estimate on the
probe as drawn, v[1:] its bootstrap replicates. Expressions over quantities are evaluated
elementwise on these vectors (plug-in), so `|a - b|`, ratios and `share` get intervals too.

Each test gives a p-value for the predicted direction and one for the contrary direction:

- comparisons and window means: a Wald test on the bootstrap standard error (scaled by
  √(G/(G−1)) for G sequences, referred to Student's t with G − 1 degrees of freedom), reported
  two-sided (p = 2 P(T ≥ z), so p ≤ α exactly when that interval excludes 0 on that side);
- equivalence (`|x| < c`): two one-sided tests, p = max of the two (each at α: the 1 − 2α interval
  lies within ±c);
- trend: a permutation test of Spearman's rank correlation between step and the difference;
- birth order: the bootstrap share of resamples on the wrong side (+1 smoothed), doubled.

Percentile intervals are reported; a verdict needs both its interval and its (corrected) p-value.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

N_RESAMPLES = 2000
N_PERMUTATIONS = 9999  # random permutations for a trend over more than EXACT_PERMUTATIONS points
EXACT_PERMUTATIONS = 7  # up to 7 checkpoints every ordering is enumerated (5040)


# Fewer sequences than this and a verdict is not given (Unsupported, with the reason). Measured
# on the calibration's simulated probes (tests/unit/test_calibration.py, 1,000 probes each), a
# 95% percentile interval covered the truth 48% of the time with 2 sequences, 76% with 3, 85%
# with 5, 89% with 8 and 92% with 15.
MIN_SEQUENCES = 8


class Resampler:
    """The bootstrap draws of one probe: `weights[b, s]` = times sequence s is in resample b."""

    def __init__(self, n_clusters: int, seed: int | list[int], n_resamples: int = N_RESAMPLES):
        if n_clusters < 1:
            raise ValueError("a probe needs at least one sequence")
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, n_clusters, size=(n_resamples, n_clusters))
        flat = draws + n_clusters * np.arange(n_resamples)[:, None]
        counts = np.bincount(flat.ravel(), minlength=n_resamples * n_clusters)
        # Row 0 is the probe as drawn (every sequence once): v[0] is the plain estimate.
        self.weights = np.vstack(
            [np.ones((1, n_clusters)), counts.reshape(n_resamples, n_clusters).astype(np.float64)]
        )
        self.n_clusters = n_clusters

    @property
    def n_resamples(self) -> int:
        return self.weights.shape[0] - 1

    def mean(self, values: np.ndarray, clusters: np.ndarray, keep: np.ndarray | None = None):
        """[1 + n_resamples] mean of per-read `values` over the reads in each resample."""
        if keep is None:
            keep = np.ones(len(values), dtype=bool)
        sums = np.bincount(clusters[keep], weights=values[keep], minlength=self.n_clusters)
        counts = np.bincount(clusters[keep], minlength=self.n_clusters).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (self.weights @ sums) / (self.weights @ counts)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def percentile_interval(v: np.ndarray, confidence: float) -> Interval:
    """The percentile interval of the replicates v[1:] (NaN replicates are left out)."""
    tail = (1 - confidence) / 2
    boot = v[1:][np.isfinite(v[1:])]
    if len(boot) == 0:
        return Interval(math.nan, math.nan)
    low, high = np.quantile(boot, [tail, 1 - tail])
    return Interval(float(low), float(high))


def order_interval(v: np.ndarray, confidence: float) -> Interval:
    """Percentile interval without interpolation: for discrete statistics (births) and ±inf."""
    tail = (1 - confidence) / 2
    boot = np.sort(v[1:][~np.isnan(v[1:])])
    if len(boot) == 0:
        return Interval(math.nan, math.nan)
    lo = boot[max(0, math.ceil(tail * len(boot)) - 1)]
    hi = boot[min(len(boot) - 1, math.ceil((1 - tail) * len(boot)) - 1)]
    return Interval(float(lo), float(hi))


def standard_error(v: np.ndarray) -> float:
    boot = v[1:][np.isfinite(v[1:])]
    return float(np.std(boot, ddof=1)) if len(boot) > 1 else math.nan


@dataclass(frozen=True)
class Test:
    """A test of one prediction, before the study's multiplicity correction.

    `supported_by_interval` / `contrary_by_interval`: the interval lies wholly on the predicted
    (contrary) side; `p_value` / `p_contrary`: p-values for the predicted (contrary) direction.
    """

    name: str  # comparison, equivalence, all, mean, trend, birth order
    statistic: str  # what `estimate` and `interval` are of, for reasons
    estimate: float
    interval: Interval
    bound: str  # the side the prediction needs, as text: "> 0", "within ±0.02", ...
    supported_by_interval: bool
    contrary_by_interval: bool
    p_value: float
    p_contrary: float
    effect_size: float | None = None
    described: str | None = None  # replaces "STATISTIC is X [lo, hi]" in reasons, when set


def small_sample_se(v: np.ndarray, n_clusters: int) -> float:
    """The bootstrap SE scaled by √(G/(G−1)): the bootstrap variance of a mean of G clusters
    is (G−1)/G of the unbiased one."""
    se = standard_error(v)
    return se * math.sqrt(n_clusters / (n_clusters - 1)) if n_clusters > 1 else se


def _one_sided(z: float, n_clusters: int) -> float:
    """P(T ≥ z) for Student's t with G − 1 degrees of freedom (normal when G is large)."""
    return float(sps.t.sf(z, df=max(1, n_clusters - 1)))


def _wald(estimate: float, se: float, zero_counts: bool, n_clusters: int) -> float:
    """p-value (two-sided-equivalent: 2 P(T ≥ z)) against a true value ≤ 0 (< 0 if zero_counts).

    With no spread (se 0) the estimate decides outright.
    """
    if not math.isfinite(se) or se == 0:
        return 0.0 if estimate > 0 or (zero_counts and estimate == 0) else 1.0
    return min(1.0, 2 * _one_sided(estimate / se, n_clusters))


def compare(diff: np.ndarray, op: str, confidence: float, n_clusters: int) -> Test:
    """Test `left op right` from the plug-in vector of left − right."""
    d = float(diff[0])
    ci = percentile_interval(diff, confidence)
    se = small_sample_se(diff, n_clusters)
    sign = 1.0 if op in (">", ">=") else -1.0
    strict = op in (">", "<")
    # For a strict prediction, an interval touching 0 counts against it (and for it when
    # contrary): a difference exactly 0 everywhere contradicts `x > y`.
    lo, hi = (ci.low, ci.high) if sign > 0 else (-ci.high, -ci.low)
    supported = lo > 0 if strict else lo >= 0
    contrary = hi <= 0 if strict else hi < 0
    p = _wald(sign * d, se, not strict, n_clusters)
    p_contrary = _wald(-sign * d, se, strict, n_clusters)
    effect = d / (se * math.sqrt(n_clusters)) if se and math.isfinite(se) else None
    return Test(
        name="comparison",
        statistic="the difference",
        estimate=d,
        interval=ci,
        bound=f"{op} 0",
        supported_by_interval=bool(supported),
        contrary_by_interval=bool(contrary),
        p_value=p,
        p_contrary=p_contrary,
        effect_size=effect,
    )


def equivalence(x: np.ndarray, bound: float, confidence: float, n_clusters: int) -> Test:
    """Two one-sided tests of |x| < bound: each at α = 1 − confidence, on the 1 − 2α interval."""
    alpha = 1 - confidence
    est = float(x[0])
    ci = percentile_interval(x, 1 - 2 * alpha)
    wide = percentile_interval(x, confidence)
    se = small_sample_se(x, n_clusters)
    if math.isfinite(se) and se > 0:
        p_low = _one_sided((est + bound) / se, n_clusters)  # H0: x ≤ −bound
        p_high = _one_sided((bound - est) / se, n_clusters)  # H0: x ≥ bound
        p_above = _one_sided((est - bound) / se, n_clusters)  # H0: x ≤ bound
        p_below = _one_sided((-bound - est) / se, n_clusters)  # H0: x ≥ −bound
        p_outside = 2 * min(p_above, p_below)
    else:
        inside = -bound < est < bound
        p_low = p_high = 0.0 if inside else 1.0
        p_outside = 1.0 if inside else 0.0
    effect = est / (se * math.sqrt(n_clusters)) if se and math.isfinite(se) else None
    return Test(
        name="equivalence",
        statistic=f"the {1 - 2 * alpha:.0%} interval",
        estimate=est,
        interval=ci,
        bound=f"within ±{bound:.4g}",
        supported_by_interval=bool(-bound < ci.low and ci.high < bound),
        contrary_by_interval=bool(wide.low >= bound or wide.high <= -bound),
        p_value=max(p_low, p_high),
        p_contrary=float(min(1.0, p_outside)),
        effect_size=effect,
    )


def every(tests: list[Test], worst: Callable[[Test], float]) -> Test:
    """`over W (all)`: an intersection-union test, Supported only when every checkpoint is.

    Its p-value is the largest per-checkpoint p-value; the contrary p-value is Bonferroni over
    the window (any one checkpoint contradicting the claim makes it Negative). The estimate is
    the checkpoint where `worst` is smallest.
    """
    k = len(tests)
    w = min(tests, key=worst)
    return Test(
        name="all",
        statistic=f"{w.statistic} at the window's worst checkpoint",
        estimate=w.estimate,
        interval=w.interval,
        bound=f"{w.bound} at all {k} checkpoints",
        supported_by_interval=all(t.supported_by_interval for t in tests),
        contrary_by_interval=any(t.contrary_by_interval for t in tests),
        p_value=max(t.p_value for t in tests),
        p_contrary=min(1.0, k * min(t.p_contrary for t in tests)),
        effect_size=w.effect_size,
    )


def spearman_rows(steps: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Spearman's rho between `steps` and each row of `rows` (NaN for a constant row)."""
    ranks = sps.rankdata(rows, axis=1)
    x = sps.rankdata(steps)
    x = x - x.mean()
    centred = ranks - ranks.mean(axis=1, keepdims=True)
    norm = np.sqrt((centred**2).sum(axis=1) * (x**2).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        return (centred @ x) / norm


def trend(
    steps: np.ndarray, diffs: np.ndarray, op: str, confidence: float, seed: int | list[int]
) -> Test:
    """`over W (trend)`: does left − right rise (`>`) or fall (`<`) with the step?

    `diffs` is [1 + n_resamples, checkpoints]. The estimate is Spearman's rho of the series; its
    interval comes from the bootstrap over examples, its p-value from permuting the checkpoints'
    order (every ordering up to EXACT_PERMUTATIONS points, else N_PERMUTATIONS seeded ones).
    """
    k = len(steps)
    rho = spearman_rows(steps, diffs)
    observed = float(rho[0]) if math.isfinite(rho[0]) else 0.0
    series = diffs[0]
    if k <= EXACT_PERMUTATIONS:
        orders = np.array(list(itertools.permutations(range(k))))
    else:
        rng = np.random.default_rng(seed)
        shuffled = rng.permuted(np.tile(np.arange(k), (N_PERMUTATIONS, 1)), axis=1)
        orders = np.vstack([np.arange(k), shuffled])
    null = np.nan_to_num(spearman_rows(steps, series[orders]))
    tol = 1e-12
    p_up = float(np.mean(null >= observed - tol))
    p_down = float(np.mean(null <= observed + tol))
    sign = 1.0 if op in (">", ">=") else -1.0
    ci = percentile_interval(rho, confidence)
    lo, hi = (ci.low, ci.high) if sign > 0 else (-ci.high, -ci.low)
    return Test(
        name="trend",
        statistic="Spearman's rho of the difference against the step",
        estimate=observed,
        interval=ci,
        bound="rho > 0" if sign > 0 else "rho < 0",
        supported_by_interval=bool(lo > 0),
        contrary_by_interval=bool(hi < 0),
        p_value=min(1.0, 2 * (p_up if sign > 0 else p_down)),
        p_contrary=min(1.0, 2 * (p_down if sign > 0 else p_up)),
        effect_size=observed,
    )


def births(steps: np.ndarray, holds: np.ndarray) -> np.ndarray:
    """Birth step per row of holds [rows, checkpoints] (steps ascending); +inf: never born.

    The birth is the first checkpoint from which the condition holds at every later one
    (runner.stats.births.birth, vectorised).
    """
    trailing = np.cumprod(holds[:, ::-1], axis=1).sum(axis=1)
    out = np.full(len(holds), np.inf)
    born = trailing > 0
    out[born] = steps[len(steps) - trailing[born]]
    return out


def first_crossings(steps: np.ndarray, holds: np.ndarray) -> np.ndarray:
    """First checkpoint per row of holds [rows, checkpoints] (steps ascending) at which the
    condition holds, whatever follows; +inf: it never holds."""
    out = np.full(len(holds), np.inf)
    ever = holds.any(axis=1)
    out[ever] = steps[np.argmax(holds[ever], axis=1)]
    return out


def birth_order(left: np.ndarray, right: np.ndarray, relation: str, confidence: float) -> Test:
    """`birth(A) before birth(B)` (or after) from the plug-in vectors of the two births.

    A birth that never happens is +inf (later than any step); when neither happens in a
    resample, that resample counts against both the prediction and its contrary.
    """
    with np.errstate(invalid="ignore"):
        diff = left - right  # before: diff < 0
    sign = -1.0 if relation == "before" else 1.0
    boot = diff[1:]
    ci = order_interval(diff, confidence)
    n = len(boot)
    wrong = np.sum(~(sign * boot > 0))  # NaN compares False: counts as wrong
    contrary_wrong = np.sum(~(sign * boot <= 0))  # a tie is not "before": it counts as contrary
    lo, hi = (ci.low, ci.high) if sign > 0 else (-ci.high, -ci.low)
    return Test(
        name="birth order",
        statistic="birth(left) − birth(right) in steps",
        estimate=float(diff[0]),
        interval=ci,
        bound="< 0" if relation == "before" else "> 0",
        supported_by_interval=bool(lo > 0),
        contrary_by_interval=bool(hi <= 0),
        p_value=min(1.0, 2 * (wrong + 1) / (n + 1)),
        p_contrary=min(1.0, 2 * (contrary_wrong + 1) / (n + 1)),
    )


def adjust(p_values: list[float], method: str) -> list[float]:
    """Family-wise (Holm), false-discovery (Benjamini–Hochberg) or no adjustment."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0 or method == "none":
        return [float(x) for x in p]
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        adjusted = np.maximum.accumulate((m - np.arange(m)) * ranked)
    elif method == "bh":
        adjusted = np.minimum.accumulate(m / np.arange(m, 0, -1) * ranked[::-1])[::-1]
    else:
        raise ValueError(f"unknown correction {method!r}")
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return [float(x) for x in out]


def seed_matrix_p(k: int, n: int, alpha: float) -> float:
    """P(at least k of n runs reach a verdict by chance), each with probability α: binomial."""
    return float(sps.binom.sf(k - 1, n, alpha))
