"""Verdict rules (DESIGN.md, Verdicts), applied to a test after the study's correction.

- Supported: the interval lies wholly on the predicted side, and the p-value for the predicted
  direction, adjusted across the study (Holm by default), is at most α = 1 − confidence;
- Negative: the same on the contrary side (for strict `>`/`<`, touching 0 counts as the contrary
  side: a difference that is exactly 0 everywhere contradicts `x > y`);
- Unsupported: anything else, with the reason: inconclusive, or not evaluable.

A claim with several predictions is Supported when all are, Negative when any is, and
Unsupported otherwise. On a seed matrix each run gets its own verdict; the aggregate is
Supported (Negative) when so many runs are that chance would give as many with probability at
most α (a binomial test, each run reaching a verdict by chance with probability α).
"""

from __future__ import annotations

from runner.stats import bootstrap
from runner.stats.results import PredictionResult, RunVerdict, Verdict

CORRECTION_NAME = {"holm": "Holm", "bh": "Benjamini–Hochberg", "none": "no"}


def decide(
    test: bootstrap.Test,
    p_adjusted: float,
    p_contrary_adjusted: float,
    confidence: float,
    correction: str,
) -> tuple[Verdict, str]:
    alpha = 1 - confidence
    ci = test.interval
    measured = test.described or (
        f"{test.statistic} is {test.estimate:.4g} [{ci.low:.4g}, {ci.high:.4g}], "
        f"needed {test.bound}"
    )

    def p_text(label: str, raw: float, adjusted: float) -> str:
        if correction == "none":
            return f"{label} = {raw:.3g}"
        return f"{label} = {raw:.3g} ({CORRECTION_NAME[correction]}-adjusted {adjusted:.3g})"

    support = f"{measured}; {p_text('p', test.p_value, p_adjusted)}"
    contrary = f"{measured}; {p_text('contrary p', test.p_contrary, p_contrary_adjusted)}"
    after = "" if correction == "none" else " after correction"
    if test.supported_by_interval and p_adjusted <= alpha:
        return "supported", f"{support}: wholly on the predicted side"
    if test.contrary_by_interval and p_contrary_adjusted <= alpha:
        return "negative", f"{contrary}: wholly on the other side"
    if test.supported_by_interval or (test.name == "trend" and p_adjusted > alpha):
        return "unsupported", f"inconclusive: {support}, above α = {alpha:.3g}{after}"
    if test.contrary_by_interval:
        return "unsupported", f"inconclusive: {contrary}, above α = {alpha:.3g}{after}"
    if test.name == "trend":
        return "unsupported", f"inconclusive: {support}; the interval of rho straddles 0"
    return "unsupported", f"inconclusive: {support}; the interval straddles the bound"


def combine(predictions: tuple[PredictionResult, ...]) -> tuple[Verdict, str]:
    verdicts = [p.verdict for p in predictions]
    if all(v == "supported" for v in verdicts):
        return "supported", "every prediction holds"
    failing = [p for p in predictions if p.verdict != "supported"]
    if any(v == "negative" for v in verdicts):
        failing = [p for p in predictions if p.verdict == "negative"]
        return "negative", "; ".join(f"`{p.text}`: {p.reason}" for p in failing)
    return "unsupported", "; ".join(f"`{p.text}`: {p.reason}" for p in failing)


def aggregate_runs(runs: tuple[RunVerdict, ...], confidence: float) -> tuple[Verdict, str]:
    """The verdict of a seed matrix from its runs' verdicts (k of n, binomial)."""
    alpha = 1 - confidence
    n = len(runs)
    supported = sum(r.verdict == "supported" for r in runs)
    negative = sum(r.verdict == "negative" for r in runs)
    p_sup = bootstrap.seed_matrix_p(supported, n, alpha) if supported else 1.0
    p_neg = bootstrap.seed_matrix_p(negative, n, alpha) if negative else 1.0
    tally = (
        f"{supported} of {n} runs Supported (binomial p = {p_sup:.3g}), "
        f"{negative} Negative (p = {p_neg:.3g})"
    )
    if p_sup <= alpha and p_neg > alpha:
        return "supported", tally
    if p_neg <= alpha and p_sup > alpha:
        return "negative", tally
    if p_sup <= alpha:
        return "unsupported", f"the runs disagree: {tally}"
    return "unsupported", f"inconclusive: {tally}"
