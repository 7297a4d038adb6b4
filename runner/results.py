"""Result models: what a run of a study produces, JSON-serialisable and deterministic.

No wall-clock times or absolute paths go in here, so the same spec, checkpoints and seed give
byte-identical results JSON.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Verdict = Literal["supported", "negative", "unsupported"]


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Interval(Frozen):
    low: float
    high: float


class PredictionResult(Frozen):
    text: str
    line: int
    step: int | None  # the resolved checkpoint step
    probe: str
    verdict: Verdict
    reason: str
    estimate: float | None = None  # the left side's mean over reads
    interval: Interval | None = None  # its interval
    threshold: float | None = None  # the right side's mean (a constant, or a measured quantity)
    difference: float | None = None  # left - right
    difference_interval: Interval | None = None
    n: int = 0  # reads
    n_sequences: int = 0


class ClaimResult(Frozen):
    name: str
    statement: str
    line: int
    verdict: Verdict
    reason: str
    expect: Verdict | None = None
    pending: bool = False  # stated but not yet testable: a next test, never run
    predictions: tuple[PredictionResult, ...]

    @property
    def meets_expectation(self) -> bool | None:
        if self.expect is None or self.pending:
            return None
        return self.expect == self.verdict


class Provenance(Frozen):
    spec: str
    plan_hash: str
    run: str
    data_hash: str
    checkpoints: dict[int, str]  # step -> SHA-256 of its weights
    seed: int
    n_resamples: int
    hypodsl_version: str
    torch_version: str


class StudyResult(Frozen):
    study: str
    confidence: float
    claims: tuple[ClaimResult, ...]
    provenance: Provenance

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(("supported", "negative", "unsupported", "next test"), 0)
        for claim in self.claims:
            out["next test" if claim.pending else claim.verdict] += 1
        return out
