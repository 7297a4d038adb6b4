"""The compiled analysis plan: pydantic models, frozen, JSON-serialisable, with a content hash.

A `Plan` is what the runner evaluates; nothing downstream of the compiler looks at spec text.
Tagged unions (`kind`) name each variant, so a plan round-trips through JSON losslessly.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# The quantities a claim can measure, per read at its answer position (runner/behaviour.py).
QUANTITIES = ("accuracy", "loss", "margin")
Quantity = Literal["accuracy", "loss", "margin"]
Verdict = Literal["supported", "negative", "unsupported"]
Comparator = Literal["<", "<=", ">", ">="]


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceRef(Frozen):
    uri: str
    line: int
    column: int


class RunRef(Frozen):
    name: str
    path: str


class Probe(Frozen):
    """`n` sequences of `split`: the first n, or a random n drawn with `seed`."""

    name: str
    split: str
    n: int
    seed: int | None = None


class StepRef(Frozen):
    kind: Literal["number", "final", "first"]
    number: int | None = None

    def label(self) -> str:
        return str(self.number) if self.kind == "number" else self.kind


class QuantityExpr(Frozen):
    kind: Literal["quantity"] = "quantity"
    name: Quantity


class NumberExpr(Frozen):
    kind: Literal["number"] = "number"
    value: float


class BinaryExpr(Frozen):
    kind: Literal["binary"] = "binary"
    op: Literal["+", "-"]
    left: Expr
    right: Expr


Expr = Annotated[QuantityExpr | NumberExpr | BinaryExpr, Field(discriminator="kind")]


class PredictionPlan(Frozen):
    step: StepRef
    probe: str
    left: Expr
    op: Comparator
    right: Expr
    text: str  # the prediction as written, for reports
    source: SourceRef


class ClaimPlan(Frozen):
    name: str
    statement: str
    expect: Verdict | None = None
    predictions: tuple[PredictionPlan, ...]
    source: SourceRef


class Plan(Frozen):
    study: str
    source: str  # the spec file
    run: RunRef | None
    probes: tuple[Probe, ...]
    confidence: float = 0.95
    claims: tuple[ClaimPlan, ...]

    def probe(self, name: str) -> Probe:
        return next(p for p in self.probes if p.name == name)

    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON: equal plans, equal hashes."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


BinaryExpr.model_rebuild()
