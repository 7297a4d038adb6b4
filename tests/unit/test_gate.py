"""The CI gate's rules: which expectation applies, which moves pass, and the baseline file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.report.gate import FORMAT, Baseline, BaselineError, check_claim, check_study
from runner.stats.results import ClaimResult, Provenance, StudyResult


def claim(verdict: str, expect: str | None = None, pending: bool = False) -> ClaimResult:
    return ClaimResult(
        name="c", statement="s", line=3, verdict=verdict, reason="r", expect=expect,
        pending=pending, predictions=(),
    )  # fmt: skip


def status(verdict: str, recorded: str | None = None, expect: str | None = None) -> tuple:
    check = check_claim("spec", claim(verdict, expect), {"c": recorded} if recorded else {})
    assert check is not None
    return check.status, check.source, check.expected


@pytest.mark.parametrize(
    ("recorded", "now", "outcome"),
    [
        ("supported", "supported", "ok"),
        ("negative", "negative", "ok"),
        ("unsupported", "unsupported", "ok"),
        ("unsupported", "supported", "improved"),  # became testable: a notice
        ("supported", "unsupported", "regression"),  # never silently the other way
        ("supported", "negative", "regression"),
        ("negative", "supported", "regression"),
        ("negative", "unsupported", "regression"),
        ("unsupported", "negative", "regression"),
    ],
)
def test_baseline_moves(recorded: str, now: str, outcome: str):
    assert status(now, recorded) == (outcome, "baseline", recorded)


def test_expect_overrides_the_baseline_and_allows_no_improvement():
    assert status("negative", "supported", expect="negative") == ("ok", "expect", "negative")
    assert status("supported", "supported", expect="negative")[0] == "regression"
    # the Unsupported -> Supported allowance is the baseline's, not an `expect`'s
    assert status("supported", expect="unsupported") == ("regression", "expect", "unsupported")


def test_a_claim_nothing_records_is_expected_supported():
    assert status("supported") == ("ok", "default", "supported")
    assert status("unsupported") == ("regression", "default", "supported")


def test_pending_claims_are_not_checked():
    assert check_claim("spec", claim("unsupported", pending=True), {}) is None


def result_of(*claims: ClaimResult) -> StudyResult:
    provenance = Provenance(
        spec="spec.hyp", plan_hash="0" * 64, runs=(), seed=0, n_resamples=10,
        correction="holm", hypodsl_version="0", torch_version="0", device="cpu",
    )  # fmt: skip
    return StudyResult(
        study="s", confidence=0.95, correction="holm", claims=claims, provenance=provenance
    )


def test_record_save_load_round_trip(tmp_path: Path):
    a = claim("negative").model_copy(update={"name": "a"})
    b = claim("supported").model_copy(update={"name": "b"})
    later = claim("unsupported", pending=True).model_copy(update={"name": "later"})
    baseline = Baseline.empty()
    baseline.record("spec", result_of(a, b, later))
    path = tmp_path / "baseline.json"
    baseline.save(path)
    data = json.loads(path.read_text())
    assert data == {"format": FORMAT, "specs": {"spec": {"a": "negative", "b": "supported"}}}
    loaded = Baseline.load(path)
    assert [c.status for c in check_study("spec", result_of(a, b, later), loaded)] == ["ok", "ok"]
    assert loaded.removed("spec", result_of(a)) == ["b"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "baseline.json:1:2: not JSON"),
        ('{"format": "other"}', "field `format` must be 'hypodsl-baseline/1'"),
        (json.dumps({"format": FORMAT, "specs": []}), "field `specs` must map"),
        (json.dumps({"format": FORMAT, "specs": {"s": 1}}), "field `specs.s` must map"),
        (
            json.dumps({"format": FORMAT, "specs": {"s": {"c": "maybe"}}}),
            "field `specs.s.c` is 'maybe'; expected one of supported, negative, unsupported",
        ),
    ],
)
def test_a_bad_baseline_names_the_file_and_field(tmp_path: Path, content: str, message: str):
    path = tmp_path / "baseline.json"
    path.write_text(content)
    with pytest.raises(BaselineError, match=r"baseline\.json") as e:
        Baseline.load(path)
    assert message in str(e.value)


def test_a_missing_baseline_says_how_to_record_one(tmp_path: Path):
    with pytest.raises(BaselineError, match="--update-baseline"):
        Baseline.load(tmp_path / "nope.json")


def not_evaluable(name: str = "c") -> ClaimResult:
    return ClaimResult(
        name=name, statement="s", line=3, verdict="unsupported", reason="not evaluable: step 50",
        predictions=(), evaluable=False,
    )  # fmt: skip


@pytest.mark.parametrize("recorded", [None, "unsupported", "supported"])
@pytest.mark.parametrize("expect", [None, "unsupported"])
def test_a_claim_that_could_not_be_evaluated_always_fails(recorded, expect):
    c = not_evaluable().model_copy(update={"expect": expect})
    check = check_claim("spec", c, {"c": recorded} if recorded else {})
    assert check is not None and check.status == "not evaluable"
    assert "not evaluable" in check.message and "step 50" in check.message
    assert not_evaluable().status == "not evaluable"
    assert claim("unsupported").status == "unsupported"  # an inconclusive test


def test_a_claim_that_could_not_be_evaluated_is_never_recorded():
    baseline = Baseline({"spec": {"kept": "supported"}})
    result = StudyResult.model_construct(
        claims=(not_evaluable("kept"), not_evaluable("new"), claim("negative"))
    )
    baseline.record("spec", result)
    assert baseline.specs["spec"] == {"kept": "supported", "c": "negative"}
