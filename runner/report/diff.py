"""What changed between two result sets (`hypo diff OLD.json NEW.json`).

Claims are matched by name. A change is a claim added or removed, a verdict that moved, or an
estimate that moved by more than the rounding the reports print (1e-3, relative to its size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from hypodsl.errors import UserError
from runner.stats.results import ClaimResult, StudyResult


class ResultsError(UserError):
    """A results file that is missing or does not match the results schema."""


@dataclass(frozen=True)
class Change:
    claim: str
    kind: str  # added, removed, verdict, estimate
    old: str
    new: str


def load_results(path: Path) -> StudyResult:
    try:
        return StudyResult.model_validate_json(path.read_text())
    except OSError as e:
        raise ResultsError(f"{path}: {e.strerror}") from None
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "(top level)"
        raise ResultsError(
            f"{path}: not a hypodsl results file: {where}: {first['msg']} "
            f"({e.error_count()} problem(s); see `hypo schema`)"
        ) from None


def _estimate(claim: ClaimResult) -> float | None:
    return claim.predictions[0].estimate if claim.predictions else None


def _moved(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return (a is None) != (b is None)
    return not math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-3)


def diff(old: StudyResult, new: StudyResult) -> list[Change]:
    before = {c.name: c for c in old.claims}
    after = {c.name: c for c in new.claims}
    changes = []
    for name in [c.name for c in old.claims if c.name not in after]:
        changes.append(Change(name, "removed", before[name].verdict, "—"))
    for claim in new.claims:
        was = before.get(claim.name)
        if was is None:
            changes.append(Change(claim.name, "added", "—", claim.verdict))
        elif was.verdict != claim.verdict:
            changes.append(Change(claim.name, "verdict", was.verdict, claim.verdict))
        elif _moved(_estimate(was), _estimate(claim)):
            old_e, new_e = _estimate(was), _estimate(claim)
            changes.append(Change(claim.name, "estimate", _fmt(old_e), _fmt(new_e)))
    return changes


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.4g}"
