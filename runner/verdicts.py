"""Verdict rules (DESIGN.md, Verdicts): where the interval of left - right lies.

- Supported: the interval lies wholly on the predicted side of 0;
- Negative: it lies wholly on the other side (for strict `>`/`<`, touching 0 counts as the
  other side: a difference that is exactly 0 everywhere contradicts `x > y`);
- Unsupported: the interval straddles 0 (inconclusive), or the prediction could not be
  evaluated (its reason says why).

A claim with several predictions is Supported when all are, Negative when any is, and
Unsupported otherwise.
"""

from __future__ import annotations

from runner.results import PredictionResult, Verdict


def decide(op: str, low: float, high: float, confidence: float) -> tuple[Verdict, str]:
    interval = f"the {confidence:.0%} interval of the difference is [{low:.4g}, {high:.4g}]"
    if op in (">", ">="):
        supported = low > 0 if op == ">" else low >= 0
        negative = high <= 0 if op == ">" else high < 0
    else:
        supported = high < 0 if op == "<" else high <= 0
        negative = low >= 0 if op == "<" else low > 0
    if supported:
        return "supported", f"{interval}: wholly on the predicted side"
    if negative:
        return "negative", f"{interval}: wholly on the other side"
    return "unsupported", f"inconclusive: {interval}, which straddles 0"


def combine(predictions: tuple[PredictionResult, ...]) -> tuple[Verdict, str]:
    verdicts = [p.verdict for p in predictions]
    if all(v == "supported" for v in verdicts):
        return "supported", "every prediction holds"
    failing = [p for p in predictions if p.verdict != "supported"]
    if any(v == "negative" for v in verdicts):
        failing = [p for p in predictions if p.verdict == "negative"]
        return "negative", "; ".join(f"`{p.text}`: {p.reason}" for p in failing)
    return "unsupported", "; ".join(f"`{p.text}`: {p.reason}" for p in failing)
