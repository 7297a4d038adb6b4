"""The Markdown claim ledger: a pure function of a `StudyResult`.

Legend, summary, one row per claim, then per claim its statement, predictions with their
evidence and reasons, and the provenance that reproduces the report. Plain GitHub Markdown.
"""

from __future__ import annotations

from runner.results import ClaimResult, PredictionResult, StudyResult

VERDICT_LABEL = {
    "supported": "Supported",
    "negative": "Negative",
    "unsupported": "Unsupported",
    "next test": "Next test",
}
LEGEND = (
    "| verdict | meaning |\n|---|---|\n"
    "| Supported | the interval of every prediction lies wholly on the predicted side |\n"
    "| Negative | the interval of a prediction lies wholly on the other side: "
    "the data contradict the claim |\n"
    "| Unsupported | inconclusive (an interval straddles the threshold) "
    "or not evaluable (the reason says why) |\n"
    "| Next test | a `pending` claim: stated, not yet testable, not run |\n"
)


def fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def interval(pred: PredictionResult) -> str:
    return "—" if pred.interval is None else f"[{pred.interval.low:.3f}, {pred.interval.high:.3f}]"


def render_markdown(result: StudyResult) -> str:
    counts = result.counts()
    lines = [
        f"# {result.study}",
        "",
        f"Claims: {len(result.claims)} — "
        + ", ".join(f"{VERDICT_LABEL[v]} {n}" for v, n in counts.items())
        + f". Intervals: {result.confidence:.0%} cluster bootstrap over probe sequences.",
        "",
        "## Verdicts",
        "",
        LEGEND,
        "## Summary",
        "",
        "| claim | verdict | estimate | interval | threshold | n |",
        "|---|---|---|---|---|---|",
    ]
    for claim in result.claims:
        link = f"[{claim.name}](#{claim.name.lower()})"
        if not claim.predictions:
            lines.append(f"| {link} | {_verdict(claim)} | — | — | — | — |")
            continue
        first = claim.predictions[0]
        lines.append(
            f"| {link} | {_verdict(claim)} | {fmt(first.estimate)} "
            f"| {interval(first)} | {fmt(first.threshold)} | {first.n} |"
        )
    lines.append("")
    for claim in result.claims:
        lines += _claim_section(claim)
    lines += _provenance(result)
    return "\n".join(lines) + "\n"


def _verdict(claim: ClaimResult) -> str:
    if claim.pending:
        return "**Next test**"
    label = f"**{VERDICT_LABEL[claim.verdict]}**"
    if claim.expect is not None and claim.expect != claim.verdict:
        label += f" (expected {VERDICT_LABEL[claim.expect]})"
    return label


def _claim_section(claim: ClaimResult) -> list[str]:
    lines = [
        f"## {claim.name}",
        "",
        f"> {claim.statement}",
        "",
        f"Verdict: {_verdict(claim)} — {claim.reason}",
        "",
    ]
    if not claim.predictions:
        return lines
    lines += [
        "| prediction | step | probe | estimate | interval | threshold | difference "
        "| n (sequences) | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for pred in claim.predictions:
        diff = "—"
        if pred.difference_interval is not None:
            di = pred.difference_interval
            diff = f"{fmt(pred.difference)} [{di.low:.3f}, {di.high:.3f}]"
        lines.append(
            f"| `{pred.text}` | {pred.step} | {pred.probe} | {fmt(pred.estimate)} "
            f"| {interval(pred)} "
            f"| {fmt(pred.threshold)} | {diff} | {pred.n} ({pred.n_sequences}) "
            f"| {VERDICT_LABEL[pred.verdict]} |"
        )
    lines += ["", *(f"- line {p.line}: {p.reason}" for p in claim.predictions), ""]
    return lines


def _provenance(result: StudyResult) -> list[str]:
    pv = result.provenance
    steps = ", ".join(f"{s}: `{h[:12]}`" for s, h in sorted(pv.checkpoints.items()))
    return [
        "## Provenance",
        "",
        f"- spec: `{pv.spec}` (plan `{pv.plan_hash[:16]}`)",
        f"- run: `{pv.run}`, data `{pv.data_hash[:16]}`",
        f"- checkpoints (SHA-256): {steps or 'none loaded'}",
        f"- bootstrap: seed {pv.seed}, {pv.n_resamples} resamples",
        f"- hypodsl {pv.hypodsl_version}, torch {pv.torch_version}",
    ]
