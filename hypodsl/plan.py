"""The compiled analysis plan: pydantic models, frozen, JSON-serialisable, with a content hash.

A `Plan` is what the runner evaluates; nothing downstream of the compiler looks at spec text.
Tagged unions (`kind`) name each variant, so a plan round-trips through JSON losslessly.
Names are resolved here: a quantity's path argument holds the path's nodes (a circuit, the
nodes of each of its paths), so the runner never looks declarations up.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Verdict = Literal["supported", "negative", "unsupported"]
# The research draft's five statuses, which the ledger speaks (docs/language.md#statuses).
STATUSES = ("supported", "current best hypothesis", "negative result", "unsupported", "next test")
Comparator = Literal["<", "<=", ">", ">="]


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceRef(Frozen):
    uri: str
    line: int
    column: int


# --- components and paths ------------------------------------------------------------------


class EmbedNode(Frozen):
    kind: Literal["embed"] = "embed"


class PosNode(Frozen):
    kind: Literal["pos"] = "pos"


class UnembedNode(Frozen):
    kind: Literal["unembed"] = "unembed"


class HeadNode(Frozen):
    kind: Literal["head"] = "head"
    layer: int
    head: int


class HeadInputNode(Frozen):
    kind: Literal["head_input"] = "head_input"
    layer: int
    head: int
    input: Literal["q", "k", "v"]


class HeadQKNode(Frozen):
    kind: Literal["head_qk"] = "head_qk"
    layer: int
    head: int
    from_role: str
    to_role: str


class MlpNode(Frozen):
    kind: Literal["mlp"] = "mlp"
    layer: int


class NeuronsNode(Frozen):
    kind: Literal["neurons"] = "neurons"
    layer: int
    indices: tuple[int, ...]


class FeatureNode(Frozen):
    """Features of a basis (`l2.f27`, `l2[27, 54]`, or a family, named by `label`)."""

    kind: Literal["features"] = "features"
    basis: str
    ids: tuple[int, ...]
    label: str | None = None  # the family's name


class ErrorNode(Frozen):
    """A basis's error term `l2.error`: the site's activation minus its decoded features."""

    kind: Literal["sae_error"] = "sae_error"
    basis: str


class SelectionNode(Frozen):
    """A `select` declaration, resolved by the engine to the neurons, features or head it
    chose."""

    kind: Literal["selection"] = "selection"
    name: str


PathNode = Annotated[
    EmbedNode
    | PosNode
    | UnembedNode
    | HeadNode
    | HeadInputNode
    | HeadQKNode
    | MlpNode
    | NeuronsNode
    | FeatureNode
    | ErrorNode
    | SelectionNode,
    Field(discriminator="kind"),
]


class PathPlan(Frozen):
    name: str | None = None  # None for a path written inline
    nodes: tuple[PathNode, ...]


# --- interventions and quantities ----------------------------------------------------------


class StepRef(Frozen):
    kind: Literal["number", "final", "first"]
    number: int | None = None

    def label(self) -> str:
        return str(self.number) if self.kind == "number" else self.kind


class Ablation(Frozen):
    kind: Literal["ablate"] = "ablate"
    target: PathNode
    method: Literal["zero", "mean", "resample"]


class Patch(Frozen):
    """Replace the target's activation with its value from another checkpoint or probe."""

    kind: Literal["patch"] = "patch"
    target: PathNode
    from_step: StepRef | None = None
    from_probe: str | None = None


Intervention = Annotated[Ablation | Patch, Field(discriminator="kind")]


class QuantityExpr(Frozen):
    """A measured quantity (see QUANTITIES) with its resolved arguments."""

    kind: Literal["quantity"] = "quantity"
    name: str
    component: PathNode | None = None  # the head of attention / qk_gap / ov_copy
    paths: tuple[PathPlan, ...] = ()  # a path, or every path of a circuit
    roles: dict[str, str] = Field(default_factory=dict)  # from / to / contrast
    group: str | None = None  # gram(by=...)
    probe: str | None = None  # `on PROBE` written on the quantity itself
    interventions: tuple[Intervention, ...] = ()
    features: PathNode | None = None  # activation / active: a FeatureNode or SelectionNode
    target: QuantityExpr | None = None  # alignment(activation(F)): the differentiated score
    scope: PathNode | None = None  # update_alignment(..., scope=L0.mlp): the parameters used


def quantity_key(q: QuantityExpr) -> str:
    """A quantity's identity on a probe: two equal expressions are measured once. `on PROBE`
    is left out: the probe is the other half of every slot, so `accuracy on heldout` and
    `accuracy` measured on heldout are one measurement."""
    return q.model_dump_json(exclude={"probe"})


class NumberExpr(Frozen):
    kind: Literal["number"] = "number"
    value: float


class SumExpr(Frozen):
    """Terms joined left to right by `ops` (ops[i] joins terms[i] and terms[i + 1]); flat, so
    a long sum nests nowhere."""

    kind: Literal["sum"] = "sum"
    terms: tuple[Expr, ...]
    ops: tuple[Literal["+", "-"], ...]


class BinaryExpr(Frozen):
    kind: Literal["binary"] = "binary"
    op: Literal["*", "/"]
    left: Expr
    right: Expr


class UnaryExpr(Frozen):
    kind: Literal["unary"] = "unary"
    op: Literal["neg", "abs"]
    operand: Expr


Expr = Annotated[
    QuantityExpr | NumberExpr | SumExpr | BinaryExpr | UnaryExpr, Field(discriminator="kind")
]


class Condition(Frozen):
    """`left op right` evaluated per checkpoint, on `probe` unless a quantity names its own."""

    left: Expr
    op: Comparator
    right: Expr
    probe: str
    # its birth: the first checkpoint from which it holds at every later one (`sustained`), or
    # the first at which it holds (`first`)
    rule: Literal["sustained", "first"] = "sustained"


# --- windows, predictions, claims ----------------------------------------------------------


class RangeWindow(Frozen):
    kind: Literal["range"] = "range"
    name: str
    start: int | None  # None: from the first checkpoint
    end: int | None  # None: to the last checkpoint


class BirthWindow(Frozen):
    kind: Literal["birth"] = "birth"
    name: str
    relation: Literal["before", "after"]
    condition: Condition


Window = Annotated[RangeWindow | BirthWindow, Field(discriminator="kind")]


class At(Frozen):
    kind: Literal["at"] = "at"
    step: StepRef


class Over(Frozen):
    kind: Literal["over"] = "over"
    window: str
    aggregate: Literal["all", "mean", "trend"]


class TimedPrediction(Frozen):
    kind: Literal["timed"] = "timed"
    when: Annotated[At | Over, Field(discriminator="kind")]
    probe: str
    left: Expr
    op: Comparator
    right: Expr
    text: str  # the prediction as written, for reports
    source: SourceRef


class BirthOrder(Frozen):
    """`birth(A) before birth(B)`: A's birth checkpoint precedes B's."""

    kind: Literal["birth_order"] = "birth_order"
    left: Condition
    relation: Literal["before", "after"]
    right: Condition
    text: str
    source: SourceRef


Prediction = Annotated[TimedPrediction | BirthOrder, Field(discriminator="kind")]


class ClaimPlan(Frozen):
    name: str
    statement: str
    expect: Verdict | None = None
    pending: bool = False  # stated, not yet testable: reported as a next test, never run
    # why it is pending, as the spec says; left out of the plan's JSON (and hash) when absent
    pending_reason: str | None = Field(default=None, exclude_if=lambda reason: reason is None)
    exploratory: bool = False  # found by exploring this run: Current best hypothesis at best
    prior: str | None = None  # the status it had before this study (one of PRIOR_STATUSES)
    predictions: tuple[Prediction, ...]
    source: SourceRef


class RunRef(Frozen):
    name: str
    path: str


class RunsRef(Frozen):
    """A seed matrix: claims are judged per run, then aggregated."""

    name: str
    pattern: str


class BasisRef(Frozen):
    """`basis NAME = "PATH"`: a feature basis stored in the run directory at PATH."""

    name: str
    path: str
    site: str | None = None  # the hook the spec says it reads, checked against the basis
    # a prefix of the basis weights' SHA-256: feature ids mean the directions of that basis only
    sha256: str | None = None


class Criterion(Frozen):
    """One condition of a `select`: a per-unit quantity compared with a number."""

    quantity: str  # drive, activation, active or contribution; attention, qk_gap or ov_copy
    features: PathNode | None = None  # drive(F): the feature score whose drive is measured
    roles: dict[str, str] = Field(default_factory=dict)  # a head's from / to / contrast
    op: Comparator
    value: float


class Selection(Frozen):
    """Units (an MLP's neurons, features, or heads) chosen on a discovery probe over a window.
    A heads selection is a role: it binds one head per run (`top 1`), which then stands wherever
    a head does."""

    name: str
    unit: Literal["neurons", "features", "heads"]
    layer: int | None = None  # neurons of this layer's MLP; heads of this layer (None: all)
    basis: str | None = None  # features of this basis
    among: tuple[int, ...] | None = None  # only these features (a family's members)
    criteria: tuple[Criterion, ...] = ()  # all must hold
    top: int | None = None  # or: the `top` units ranked by `by`
    by: Criterion | None = None
    window: RangeWindow
    probe: str
    text: str
    source: SourceRef


class Probe(Frozen):
    """`n` sequences of `split`: the first n, or a random n drawn with `seed`."""

    name: str
    split: str
    n: int
    seed: int | None = None


class Plan(Frozen):
    study: str
    source: str  # the spec file
    imports: tuple[str, ...] = ()
    run: RunRef | None = None
    runs: RunsRef | None = None
    probes: tuple[Probe, ...] = ()
    confidence: float = 0.95
    correction: Literal["holm", "bh", "none"] = "holm"
    marks: tuple[str, ...] = ()  # pytest marks for every claim (`mark NAME, ...`)
    windows: tuple[Window, ...] = ()
    paths: tuple[PathPlan, ...] = ()
    circuits: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    bases: tuple[BasisRef, ...] = ()
    families: dict[str, FeatureNode] = Field(default_factory=dict)
    selections: tuple[Selection, ...] = ()
    claims: tuple[ClaimPlan, ...] = ()

    def probe(self, name: str) -> Probe:
        return next(p for p in self.probes if p.name == name)

    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON: equal plans, equal hashes."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


QuantityExpr.model_rebuild()
SumExpr.model_rebuild()
BinaryExpr.model_rebuild()
UnaryExpr.model_rebuild()
Condition.model_rebuild()
