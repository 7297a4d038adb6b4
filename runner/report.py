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
    "| Supported | every prediction's interval lies wholly on the predicted side "
    "and its adjusted p-value is at most α |\n"
    "| Negative | a prediction's interval lies wholly on the other side (adjusted p ≤ α): "
    "the data contradict the claim |\n"
    "| Unsupported | inconclusive (an interval straddles the threshold, or p > α after "
    "correction) or not evaluable (the reason says why) |\n"
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
        + f". Intervals: {result.confidence:.0%} cluster bootstrap over probe sequences; "
        + f"p-values adjusted across the study ({result.correction}).",
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
            lines.append(f"| {link} | {_verdict(claim)} | — | — | — | {len(claim.runs) or '—'} |")
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
    if claim.runs:
        lines += ["| run | verdict | reason |", "|---|---|---|"]
        lines += [f"| {r.run} | {VERDICT_LABEL[r.verdict]} | {r.reason} |" for r in claim.runs]
        lines.append("")
        return lines
    if not claim.predictions:
        return lines
    lines += [
        "| prediction | steps | probe | estimate | interval | threshold | tested | p (adjusted) "
        "| n (sequences) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for pred in claim.predictions:
        lines.append(
            f"| `{pred.text}` | {_steps(pred)} | {pred.probe} | {fmt(pred.estimate)} "
            f"| {interval(pred)} | {fmt(pred.threshold)} | {_tested(pred)} | {_p(pred)} "
            f"| {pred.n} ({pred.n_sequences}) | {VERDICT_LABEL[pred.verdict]} |"
        )
    lines += ["", *(f"- line {p.line}: {p.reason}" for p in claim.predictions), ""]
    return lines


def _steps(pred: PredictionResult) -> str:
    if not pred.steps:
        return "—"
    if len(pred.steps) == 1:
        return str(pred.steps[0])
    return f"{pred.steps[0]}–{pred.steps[-1]} ({len(pred.steps)})"


def _tested(pred: PredictionResult) -> str:
    if pred.statistic_value is None or pred.test is None:
        return "—"
    ci = pred.statistic_interval
    span = "" if ci is None else f" [{ci.low:.3f}, {ci.high:.3f}]"
    return f"{pred.test}: {pred.statistic_value:.3f}{span}"


def _p(pred: PredictionResult) -> str:
    if pred.p_value is None:
        return "—"
    adjusted = "" if pred.p_adjusted is None else f" ({pred.p_adjusted:.2g})"
    return f"{pred.p_value:.2g}{adjusted}"


def _provenance(result: StudyResult) -> list[str]:
    pv = result.provenance
    lines = ["## Provenance", "", f"- spec: `{pv.spec}` (plan `{pv.plan_hash[:16]}`)"]
    for run in pv.runs:
        steps = ", ".join(f"{s}: `{h[:12]}`" for s, h in sorted(run.checkpoints.items()))
        lines += [
            f"- run: `{run.run}`, data `{run.data_hash[:16]}`",
            f"  - checkpoints (SHA-256): {steps or 'none loaded'}",
        ]
    return [
        *lines,
        f"- bootstrap: seed {pv.seed}, {pv.n_resamples} resamples; correction: {pv.correction}",
        f"- hypodsl {pv.hypodsl_version}, torch {pv.torch_version}, device {pv.device}",
    ]
