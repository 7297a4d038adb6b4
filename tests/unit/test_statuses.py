"""The draft's five statuses: verdicts, except that exploratory findings stay hypotheses until
replicated; `prior` statuses are checked and set beside the new ones in the ledger."""

from __future__ import annotations

import pytest

from hypodsl.compiler import compile_spec
from hypodsl.errors import HypError, flatten
from hypodsl.parser import parse
from runner.report.ledger import render_markdown
from runner.stats.results import ClaimResult, RunVerdict

HEAD = 'study "s"\nprobe iid = split test_iid n 8\n'
BODY = " {\n  at final on iid: accuracy > 0\n}\n"


def claim(verdict: str, **extra) -> ClaimResult:
    return ClaimResult(name="c", statement="s", line=1, verdict=verdict, reason="r",
                       predictions=(), **extra)  # fmt: skip


@pytest.mark.parametrize(
    "verdict, extra, status",
    [
        ("supported", {}, "supported"),
        ("supported", {"exploratory": True}, "current best hypothesis"),
        ("negative", {"exploratory": True}, "negative result"),
        ("unsupported", {"exploratory": True}, "unsupported"),
        ("unsupported", {"pending": True}, "next test"),
    ],
)
def test_a_status_is_the_verdict_but_for_exploratory_findings(verdict, extra, status):
    assert claim(verdict, **extra).status == status


def test_an_exploratory_claim_supported_on_two_seeds_is_supported():
    runs = tuple(RunVerdict(run=f"seed-{i}", verdict="supported", reason="", predictions=())
                 for i in range(2))  # fmt: skip
    assert claim("supported", exploratory=True, runs=runs[:1]).status == "current best hypothesis"
    assert claim("supported", exploratory=True, runs=runs).status == "supported"


def test_the_status_survives_a_json_round_trip_and_cannot_be_forged():
    c = claim("supported", exploratory=True)
    forged = c.model_dump() | {"status": "supported"}
    assert ClaimResult.model_validate_json(c.model_dump_json()).status == c.status
    assert ClaimResult.model_validate(forged).status == "current best hypothesis"


def test_prior_statuses_are_checked_and_options_are_given_once():
    text = HEAD + 'claim c "x" exploratory prior "current  Best hypothesis"' + BODY
    plan = compile_spec(parse(text), text)
    assert plan.claims[0].prior == "current best hypothesis" and plan.claims[0].exploratory
    for bad, message in (
        ('prior "Probably"', '`prior` takes one of "Supported"'),
        ("exploratory exploratory", "says `exploratory` twice"),
    ):
        text = HEAD + f'claim c "x" {bad}' + BODY
        with pytest.raises(HypError) as info:
            compile_spec(parse(text, "s.hyp"), text)
        assert any(message in e.message for e in flatten(info.value)), bad


def test_the_ledger_sets_prior_statuses_beside_the_new_ones():
    from runner.report.diff import load_results
    from tests.unit.test_report_writes import DEMO

    full = load_results(DEMO)
    first, second = full.claims[:2]
    marked = (
        ClaimResult.model_validate(first.model_dump() | {"prior": first.status}),
        ClaimResult.model_validate(
            second.model_dump() | {"prior": "next test", "exploratory": True}
        ),
    )
    md = render_markdown(full.model_copy(update={"claims": marked}))
    assert "## Beside the earlier statuses" in md
    assert "1 of 2 claims have the status they had before (`prior`)." in md
    assert f"| [{first.name}](#{first.name}) | " in md and "| Next test | " in md
    assert "| **no** |" in md and "| yes |" in md
    assert "Beside the earlier" not in render_markdown(full)
