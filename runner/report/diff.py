"""What changed between two result sets (`hypo diff OLD.json NEW.json`).

Claims are matched by name. A change is a claim added or removed, a verdict that moved, or an
estimate that moved by more than the rounding the reports print (1e-3, relative to its size).
What was measured is compared first (`provenance_changes`): the plan's hash (the spec changed),
each run's data and checkpoint hashes (the model changed), and the settings results depend on,
so a reader can tell a spec edit from a model change.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from hypodsl.errors import UserError
from runner.stats.results import ClaimResult, Provenance, RunProvenance, StudyResult


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


# The settings results are a function of, besides the plan and the runs (docs/reproducibility.md)
SETTINGS = ("seed", "n_resamples", "correction", "hypodsl_version", "torch_version", "device",
            "jobs", "threads")  # fmt: skip
SHORT = 12  # hex digits of a hash shown


@dataclass(frozen=True)
class ProvenanceChange:
    subject: str  # "plan", "run NAME" or a setting's name
    old: str
    new: str
    note: str  # what the change means, in words


def provenance_changes(old: Provenance, new: Provenance) -> list[ProvenanceChange]:
    """The plan hash, each run's data and checkpoint hashes, and the settings that differ."""
    changes = []
    if old.plan_hash != new.plan_hash:
        changes.append(
            ProvenanceChange(
                "plan",
                old.plan_hash[:SHORT],
                new.plan_hash[:SHORT],
                "the spec or its imports changed",
            )
        )
    changes += _run_changes(old.runs, new.runs)
    for key in SETTINGS:
        a, b = getattr(old, key), getattr(new, key)
        if a != b:
            changes.append(ProvenanceChange(key, str(a), str(b), "a setting changed"))
    return changes


def _run_changes(
    old: tuple[RunProvenance, ...], new: tuple[RunProvenance, ...]
) -> list[ProvenanceChange]:
    """Runs matched by name: added, removed, or read other data or checkpoints."""
    changes = []
    before = {r.run: r for r in old}
    after = {r.run: r for r in new}
    for name in [r.run for r in old if r.run not in after]:
        changes.append(ProvenanceChange(f"run {name}", _checkpoints(before[name]), "—", "removed"))
    for run in new:
        was = before.get(run.run)
        if was is None:
            changes.append(ProvenanceChange(f"run {run.run}", "—", _checkpoints(run), "added"))
            continue
        if was.data_hash != run.data_hash:
            changes.append(
                ProvenanceChange(
                    f"run {run.run} data", was.data_hash[:SHORT], run.data_hash[:SHORT],
                    "the probes' data changed",
                )
            )  # fmt: skip
        if was.checkpoints != run.checkpoints:
            changes.append(
                ProvenanceChange(
                    f"run {run.run} checkpoints", _checkpoints(was), _checkpoints(run),
                    _checkpoint_note(was.checkpoints, run.checkpoints),
                )
            )  # fmt: skip
    return changes


def _checkpoints(run: RunProvenance) -> str:
    """One hash for a run's checkpoints read: SHA-256 over their (step, SHA-256) pairs."""
    text = "\n".join(f"{step} {sha}" for step, sha in sorted(run.checkpoints.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:SHORT]


def _checkpoint_note(old: dict[int, str], new: dict[int, str]) -> str:
    changed = sorted(s for s in old.keys() & new.keys() if old[s] != new[s])
    parts = []
    if changed:
        parts.append(
            f"{len(changed)} of {len(new)} differ (steps {_steps(changed)}): the model changed"
        )
    added, removed = sorted(new.keys() - old.keys()), sorted(old.keys() - new.keys())
    if added:
        parts.append(f"steps {_steps(added)} read only now")
    if removed:
        parts.append(f"steps {_steps(removed)} read only before")
    return "; ".join(parts)


def _steps(steps: list[int]) -> str:
    return ", ".join(map(str, steps)) if len(steps) <= 4 else f"{steps[0]} .. {steps[-1]}"
