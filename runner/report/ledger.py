"""The Markdown claim ledger: a pure function of a `StudyResult` (and where its figures are).

The verdict legend, a summary table, then per claim: its statement, its predictions as written
in the spec, an evidence table, its figure, and the provenance of what it read; the study's
provenance at the end. Plain GitHub Markdown: pipe tables, relative image links, no HTML.
"""

from __future__ import annotations

from urllib.parse import quote

from hypodsl.escape import for_markdown, markdown_code
from runner.stats.results import ClaimResult, PredictionResult, StudyResult

VERDICT_LABEL = {
    "supported": "Supported",
    "negative": "Negative",
    "unsupported": "Unsupported",
    "next test": "Next test",
    "not evaluable": "Not evaluable",
}
LEGEND = (
    "| verdict | meaning |\n|---|---|\n"
    "| Supported | every prediction's interval lies wholly on the predicted side "
    "and its adjusted p-value is at most α |\n"
    "| Negative | a prediction's interval lies wholly on the other side (adjusted p ≤ α): "
    "the data contradict the claim |\n"
    "| Unsupported | inconclusive (an interval straddles the threshold, or p > α after "
    "correction), or, with the status *Not evaluable*, not judged at all (the reason says "
    "why: a missing checkpoint, a non-finite value) |\n"
    "| Next test | a `pending` claim: stated, not yet testable, not run |\n"
)
STATUS_LABEL = {
    "supported": "Supported",
    "current best hypothesis": "Current best hypothesis",
    "negative result": "Negative result",
    "unsupported": "Unsupported",
    "next test": "Next test",
    "not evaluable": "Not evaluable",
}
STATUS_LEGEND = (
    "Each claim's status, in the research draft's five: a verdict, except that a Supported "
    "claim the spec marks `exploratory` (found by looking at this run, not yet replicated on "
    "another seed or an untouched probe) is a **Current best hypothesis**, and a Negative "
    "verdict is a **Negative result**.\n"
)


def fmt(x: float | None, style: str = ".3f") -> str:
    """A number in `style`; whole numbers (steps, counts, constants) as they are; None as —."""
    if x is None:
        return "—"
    return str(int(x)) if x.is_integer() and abs(x) < 1e7 else format(x, style)


def interval(pred: PredictionResult) -> str:
    return (
        "—" if pred.interval is None else f"[{fmt(pred.interval.low)}, {fmt(pred.interval.high)}]"
    )


def render_markdown(
    result: StudyResult,
    figures: dict[str, str] | None = None,
    spec_link: str | None = None,
    results_file: tuple[str, str] | None = None,
) -> str:
    """`figures` maps claim names to their image paths relative to the report; `spec_link`
    is the spec's path relative to the report, for links to each claim's line; `results_file`
    is the (name, SHA-256) of the results JSON written beside the ledger."""
    figures = figures or {}
    counts = result.counts()
    lines = [
        f"# {for_markdown(result.study)}",
        "",
        f"Claims: {len(result.claims)} — "
        + ", ".join(f"{VERDICT_LABEL[v]} {n}" for v, n in counts.items())
        + f". Intervals: {result.confidence:.0%} cluster bootstrap over probe sequences; "
        + f"p-values adjusted across the study ({result.correction}).",
        "",
        "## Verdicts",
        "",
        LEGEND,
        STATUS_LEGEND,
        *_beside_prior(result),
        "## Summary",
        "",
        "| claim | status | verdict | estimate | interval | threshold | n |",
        "|---|---|---|---|---|---|---|",
    ]
    for claim in result.claims:
        link = f"[{for_markdown(claim.name)}](#{anchor(claim.name)})"
        status = STATUS_LABEL[claim.status]
        if not claim.predictions:
            lines.append(
                f"| {link} | {status} | {_verdict(claim)} | — | — | — | {len(claim.runs) or '—'} |"
            )
            continue
        first = claim.predictions[0]
        lines.append(
            f"| {link} | {status} | {_verdict(claim)} | {fmt(first.estimate)} "
            f"| {interval(first)} | {fmt(first.threshold)} | {first.n} |"
        )
    lines.append("")
    lines += _selections(result)
    for claim in result.claims:
        lines += _claim_section(result, claim, figures.get(claim.name), spec_link)
    lines += _provenance(result, results_file)
    return "\n".join(lines) + "\n"


MAX_MEMBERS_SHOWN = 12


def _selections(result: StudyResult) -> list[str]:
    """What each `select` chose on each run: how many units, and which (the first few)."""
    rows = [(run.run, sel) for run in result.provenance.runs for sel in run.selections]
    if not rows:
        return []
    several = len(result.provenance.runs) > 1
    lines = [
        "## Selections",
        "",
        "Chosen on their discovery probes before any claim was measured (discovery, not test).",
        "",
        ("| run " if several else "") + "| selection | among | probe | steps | chose | members |",
        ("|---" if several else "") + "|---|---|---|---|---|---|",
    ]
    for run, sel in rows:
        names = sel.labels or tuple(str(m) for m in sel.members)
        shown = ", ".join(names[:MAX_MEMBERS_SHOWN])
        if len(names) > MAX_MEMBERS_SHOWN:
            shown += f", … ({len(names) - MAX_MEMBERS_SHOWN} more)"
        chose = str(len(sel.members)) if sel.reason is None else f"none: {sel.reason}"
        steps = f"{sel.steps[0]} .. {sel.steps[-1]}" if sel.steps else "—"
        lines.append(
            (f"| {for_markdown(run)} " if several else "")
            + f"| {for_markdown(sel.name)} | {for_markdown(sel.unit)} | {for_markdown(sel.probe)} "
            + f"| {steps} | {for_markdown(chose)} | {shown or '—'} |"
        )
    return [*lines, ""]


def _beside_prior(result: StudyResult) -> list[str]:
    """The claims' earlier statuses (`prior`) beside this study's, when the spec gives them."""
    with_prior = [c for c in result.claims if c.prior is not None]
    if not with_prior:
        return []
    agree = sum(c.prior == c.status for c in with_prior)
    lines = [
        "## Beside the earlier statuses",
        "",
        f"{agree} of {len(with_prior)} claims have the status they had before (`prior`).",
        "",
        "| claim | before | this study | same |",
        "|---|---|---|---|",
    ]
    for c in with_prior:
        assert c.prior is not None
        same = "yes" if c.prior == c.status else "**no**"
        lines.append(
            f"| [{for_markdown(c.name)}](#{anchor(c.name)}) | "
            f"{for_markdown(STATUS_LABEL.get(c.prior, c.prior))} | "
            f"{STATUS_LABEL[c.status]} | {same} |"
        )
    return [*lines, ""]


def anchor(name: str) -> str:
    """GitHub's heading anchor for a claim name (letters, digits, `_` and `-` kept)."""
    return "".join(c for c in name.lower() if c.isalnum() or c in "_-")


def _verdict(claim: ClaimResult) -> str:
    if claim.pending:
        return "**Next test**"
    label = f"**{VERDICT_LABEL[claim.verdict]}**"
    if claim.expect is not None and claim.expect != claim.verdict:
        label += f" (expected {VERDICT_LABEL[claim.expect]})"
    return label


def _line_ref(line: int, spec_link: str | None, spec: str) -> str:
    where = f"{for_markdown(spec)}:{line}"
    return f"[{where}]({quote(spec_link)}#L{line})" if spec_link else where


def _claim_section(
    result: StudyResult, claim: ClaimResult, figure: str | None, spec_link: str | None
) -> list[str]:
    spec = result.provenance.spec
    lines = [
        f"## {for_markdown(claim.name)}",
        "",
        f"> {for_markdown(claim.statement)}",
        "",
        f"Verdict: {_verdict(claim)} — {for_markdown(claim.reason)}",
        "",
    ]
    if claim.status != claim.verdict and not claim.pending:
        lines += [f"Status: **{STATUS_LABEL[claim.status]}**.", ""]
    if claim.pending:
        return [*lines, f"Stated at {_line_ref(claim.line, spec_link, spec)}; not run.", ""]
    if claim.runs:
        lines += ["| run | verdict | reason |", "|---|---|---|"]
        lines += [
            f"| {for_markdown(r.run)} | {VERDICT_LABEL[r.verdict]} | {for_markdown(r.reason)} |"
            for r in claim.runs
        ]
        lines.append("")
    else:
        lines += ["Predictions, as written in the spec:", ""]
        lines += [
            f"- {_line_ref(pred.line, spec_link, spec)} {markdown_code(pred.text)} — "
            f"**{VERDICT_LABEL[pred.verdict]}**: {for_markdown(pred.reason)}"
            for pred in claim.predictions
        ]
        lines += ["", *_evidence(claim.predictions)]
    if figure:
        alt = f"{for_markdown(claim.name)}: the quantity across checkpoints"
        lines += [f"![{alt}]({quote(figure)})", ""]
    lines += [f"Provenance: {_claim_provenance(result, claim, spec_link)}", ""]
    return lines


def _evidence(preds: tuple[PredictionResult, ...]) -> list[str]:
    """One column per prediction, one row per piece of evidence."""
    if not preds:
        return []
    rows = [
        ("checkpoints", [_steps(p) for p in preds]),
        ("probe (reads, sequences)", [f"{_probe(p)} ({p.n}, {p.n_sequences})" for p in preds]),
        ("left side", [f"{fmt(p.estimate)} {interval(p)}" for p in preds]),
        ("right side", [fmt(p.threshold) for p in preds]),
        ("ratio", [_ratio(p) for p in preds]),
        ("test", [_tested(p) for p in preds]),
        ("p (adjusted)", [_p(p) for p in preds]),
        ("effect size", [fmt(p.effect_size) for p in preds]),
        ("births", [_births(p) for p in preds]),
    ]
    rows = [(name, values) for name, values in rows if any(v != "—" for v in values)]
    head = ["evidence", *(f"line {p.line}" for p in preds)]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join([name, *values]) + " |" for name, values in rows]
    return [*out, ""]


def _probe(pred: PredictionResult) -> str:
    return for_markdown(pred.probe)


def _steps(pred: PredictionResult) -> str:
    if not pred.steps:
        return "—"
    if len(pred.steps) == 1:
        return str(pred.steps[0])
    return f"{pred.steps[0]}–{pred.steps[-1]} ({len(pred.steps)})"


def _ratio(pred: PredictionResult) -> str:
    if pred.ratio is None:
        return "—"
    ci = pred.ratio_interval
    return fmt(pred.ratio) + ("" if ci is None else f" [{fmt(ci.low)}, {fmt(ci.high)}]")


def _tested(pred: PredictionResult) -> str:
    if pred.statistic_value is None or pred.test is None:
        return "—"
    ci = pred.statistic_interval
    span = "" if ci is None else f" [{fmt(ci.low)}, {fmt(ci.high)}]"
    on = f" on {for_markdown(pred.statistic)}" if pred.statistic else ""
    return f"{for_markdown(pred.test)}{on}: {fmt(pred.statistic_value)}{span}"


def _p(pred: PredictionResult) -> str:
    if pred.p_value is None:
        return "—"
    adjusted = "" if pred.p_adjusted is None else f" ({pred.p_adjusted:.2g})"
    return f"{pred.p_value:.2g}{adjusted}"


def _births(pred: PredictionResult) -> str:
    if not pred.births:
        return "—"
    parts = []
    for b in pred.births:
        when = "not born" if b.step is None else f"step {b.step}"
        low = "—" if b.interval_low is None else f"{b.interval_low:g}"
        high = "never" if b.interval_high is None else f"{b.interval_high:g}"
        parts.append(f"{markdown_code(b.condition)}: {when} [{low}, {high}]")
    return "; ".join(parts)


def _claim_provenance(result: StudyResult, claim: ClaimResult, spec_link: str | None) -> str:
    spec = result.provenance.spec
    where = _line_ref(claim.line, spec_link, spec)
    steps = sorted({s for pred in claim.predictions for s in pred.steps})
    if claim.runs:
        return f"{where}; runs {for_markdown(', '.join(r.run for r in claim.runs))}"
    if not steps:
        return f"{where}; no checkpoint read"
    hashes = {s: h for run in result.provenance.runs for s, h in run.checkpoints.items()}
    shown = steps if len(steps) <= 3 else [steps[0], steps[-1]]
    ids = ", ".join(
        f"{s} {markdown_code(hashes[s][:12])}" if s in hashes else f"{s} (unreadable)"
        for s in shown
    )
    more = "" if len(steps) <= 3 else f" ({len(steps)} checkpoints; first and last shown)"
    return f"{where}; checkpoints {ids}{more}; bootstrap seed {result.provenance.seed}"


def _provenance(result: StudyResult, results_file: tuple[str, str] | None) -> list[str]:
    pv = result.provenance
    lines = [
        "## Provenance",
        "",
        f"- spec: {markdown_code(pv.spec)} (plan {markdown_code(pv.plan_hash[:16])})",
    ]
    if results_file is not None:
        name, sha = results_file
        lines.append(f"- results: {markdown_code(name)} (SHA-256 {markdown_code(sha)})")
    for run in pv.runs:
        steps = ", ".join(
            f"{s}: {markdown_code(h[:12])}" for s, h in sorted(run.checkpoints.items())
        )
        lines += [
            f"- run: {markdown_code(run.run)}, data {markdown_code(run.data_hash[:16])}",
            f"  - checkpoints (SHA-256): {steps or 'none loaded'}",
        ]
    return [
        *lines,
        f"- bootstrap: seed {pv.seed}, {pv.n_resamples} resamples; correction: {pv.correction}",
        f"- hypodsl {pv.hypodsl_version}, torch {pv.torch_version}, device {pv.device}, "
        f"{pv.jobs} measuring process(es) of {pv.threads} thread(s)",
    ]
