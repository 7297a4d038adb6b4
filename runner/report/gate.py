"""The CI gate: compare each claim's verdict with what it is expected to be.

A claim's expected verdict is its `expect`, else the one the baseline recorded for it, else
Supported (a claim asserts something; nothing recorded says otherwise). One move is allowed
without failing: Unsupported in the baseline, Supported now (a claim that became testable);
it is reported as a notice so the baseline can be updated. Every other difference is a
regression, Supported -> Unsupported included: a claim never loses support silently. A claim
that could not be evaluated (a missing checkpoint, a non-finite value) always fails the gate
and is never recorded: its Unsupported is no verdict about the claim.

The baseline is a JSON file, one entry per spec (by file stem, like the reports) mapping claim
names to verdicts. `hypo run --baseline` and `pytest specs/ --hypo-baseline` read it, and
`hypo run --update-baseline` writes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hypodsl.errors import UserError
from runner.atomic import atomic_write_text
from runner.stats.results import ClaimResult, StudyResult, Verdict

FORMAT = "hypodsl-baseline/1"
VERDICTS: tuple[Verdict, ...] = ("supported", "negative", "unsupported")
Status = Literal["ok", "improved", "regression", "not evaluable"]
FAILING: tuple[Status, ...] = ("regression", "not evaluable")
Source = Literal["expect", "baseline", "default"]


class BaselineError(UserError):
    """A baseline file that cannot be read; the message names the file and the field."""


@dataclass(frozen=True)
class Check:
    """One claim against its expectation."""

    spec: str
    claim: str
    line: int
    verdict: Verdict
    expected: Verdict
    source: Source  # where the expectation comes from
    status: Status
    reason: str  # the claim's own reason for its verdict

    @property
    def message(self) -> str:
        if self.status == "not evaluable":
            return (
                f"{self.claim}: not evaluable ({self.reason}); the gate neither passes nor "
                "records it"
            )
        if self.status == "improved":
            return (
                f"{self.claim}: Unsupported in the baseline, Supported now "
                "(record it with --update-baseline)"
            )
        where = {
            "expect": "its `expect`",
            "baseline": "the baseline",
            "default": "the default (no `expect`, not in the baseline)",
        }[self.source]
        return (
            f"{self.claim}: {self.verdict.capitalize()}, expected "
            f"{self.expected.capitalize()} by {where}"
        )


def expectation(claim: ClaimResult, recorded: dict[str, Verdict]) -> tuple[Verdict, Source]:
    if claim.expect is not None:
        return claim.expect, "expect"
    if claim.name in recorded:
        return recorded[claim.name], "baseline"
    return "supported", "default"


def check_claim(spec: str, claim: ClaimResult, recorded: dict[str, Verdict]) -> Check | None:
    """None for a `pending` claim: a next test is not run, so it cannot regress."""
    if claim.pending:
        return None
    expected, source = expectation(claim, recorded)
    if not claim.evaluable:
        status: Status = "not evaluable"
    elif claim.verdict == expected:
        status = "ok"
    elif source == "baseline" and (expected, claim.verdict) == ("unsupported", "supported"):
        status = "improved"
    else:
        status = "regression"
    return Check(
        spec, claim.name, claim.line, claim.verdict, expected, source, status, claim.reason
    )


def check_study(spec: str, result: StudyResult, baseline: Baseline) -> list[Check]:
    recorded = baseline.specs.get(spec, {})
    return [c for claim in result.claims if (c := check_claim(spec, claim, recorded))]


@dataclass
class Baseline:
    specs: dict[str, dict[str, Verdict]]  # spec stem -> claim -> verdict

    @classmethod
    def empty(cls) -> Baseline:
        return cls({})

    @classmethod
    def load(cls, path: Path) -> Baseline:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise BaselineError(
                f"{path}: no baseline (record one with `hypo run SPEC --baseline {path} "
                "--update-baseline`)"
            ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise BaselineError(f"{path}: cannot read it: {e}") from None
        except json.JSONDecodeError as e:
            raise BaselineError(f"{path}:{e.lineno}:{e.colno}: not JSON: {e.msg}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BaselineError(f"{path}: field `format` must be {FORMAT!r}")
        specs = data.get("specs")
        if not isinstance(specs, dict):
            raise BaselineError(f"{path}: field `specs` must map spec names to claims")
        for spec, claims in specs.items():
            if not isinstance(claims, dict):
                raise BaselineError(f"{path}: field `specs.{spec}` must map claims to verdicts")
            for claim, verdict in claims.items():
                if verdict not in VERDICTS:
                    raise BaselineError(
                        f"{path}: field `specs.{spec}.{claim}` is {verdict!r}; "
                        f"expected one of {', '.join(VERDICTS)}"
                    )
        return cls(specs)

    def record(self, spec: str, result: StudyResult) -> None:
        """Replace the spec's entry with the verdicts of `result`: pending claims left out, and
        a claim that could not be evaluated keeps what was recorded for it before, if anything."""
        before = self.specs.get(spec, {})
        recorded = {}
        for c in result.claims:
            if c.pending:
                continue
            if c.evaluable:
                recorded[c.name] = c.verdict
            elif c.name in before:
                recorded[c.name] = before[c.name]
        self.specs[spec] = recorded

    def removed(self, spec: str, result: StudyResult) -> list[str]:
        """Claims the baseline records that the spec no longer has."""
        names = {c.name for c in result.claims}
        return sorted(set(self.specs.get(spec, {})) - names)

    def save(self, path: Path) -> None:
        data = {"format": FORMAT, "specs": {k: dict(sorted(v.items())) for k, v in
                                            sorted(self.specs.items())}}  # fmt: skip
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")
