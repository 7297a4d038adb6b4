"""The syntax tree of a `.hyp` file: frozen dataclasses, each with its source position.

Positions do not take part in equality, so two trees are equal when they say the same thing
wherever it was written (this is what `parse(fmt(s)) == parse(s)` checks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hypodsl.errors import SourcePosition
from hypodsl.plan import Verdict

Comparator = Literal["<", "<=", ">", ">="]


@dataclass(frozen=True)
class Node:
    pos: SourcePosition = field(compare=False, repr=False)


@dataclass(frozen=True)
class Name(Node):
    """An identifier at a place in the source: a declaration's name or a reference to one."""

    text: str


# --- path nodes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Embed(Node):
    pass


@dataclass(frozen=True)
class Pos(Node):
    pass


@dataclass(frozen=True)
class Unembed(Node):
    pass


@dataclass(frozen=True)
class Head(Node):
    layer: int
    head: int


@dataclass(frozen=True)
class HeadInput(Node):
    """A head as a receiver through its query, key or value input: `L1.H2.k`."""

    layer: int
    head: int
    input: Literal["q", "k", "v"]


@dataclass(frozen=True)
class HeadQK(Node):
    """A head keeping only its attention from one role to another: `L1.H2[answer <- match_value]`.

    Written with a QK restriction in brackets.
    """

    layer: int
    head: int
    from_role: Name
    to_role: Name


@dataclass(frozen=True)
class Mlp(Node):
    layer: int


@dataclass(frozen=True)
class Neurons(Node):
    layer: int
    indices: tuple[int, ...]


@dataclass(frozen=True)
class Feature(Node):
    """One feature of a basis, `l2.f27`, or the basis's error term, `l2.error` (index None)."""

    basis: Name
    index: int | None


@dataclass(frozen=True)
class FeatureSet(Node):
    """Several features of a basis: `l2[27, 54]`."""

    basis: Name
    indices: tuple[int, ...]


# A bare name in a path or argument (a family, a selection, a role, a probe, a method):
# the compiler decides what it refers to.
PathNode = (
    Embed | Pos | Unembed | Head | HeadInput | HeadQK | Mlp | Neurons | Feature | FeatureSet | Name
)


@dataclass(frozen=True)
class PathExpr(Node):
    nodes: tuple[PathNode, ...]


# --- expressions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Number(Node):
    value: float


@dataclass(frozen=True)
class StepValue(Node):
    """`final` or `first` used as an argument value (`patch(L1.H2, from=final)`)."""

    kind: Literal["final", "first"]


@dataclass(frozen=True)
class Call(Node):
    """`accuracy` (bare, args None) or `attention(L1.H2, from=answer, to=match_value)`."""

    name: Name
    args: tuple[Arg, ...] | None


@dataclass(frozen=True)
class Arg(Node):
    keyword: Name | None
    value: PathExpr | PathNode | Number | StepValue | Call


@dataclass(frozen=True)
class Term(Node):
    """A measured quantity, optionally on another probe and under interventions."""

    call: Call
    probe: Name | None
    interventions: tuple[Call, ...]


@dataclass(frozen=True)
class Sum(Node):
    """`a + b - c`: two or more terms joined left to right by `ops` (ops[i] joins terms[i] and
    terms[i + 1]). Flat, so a sum of any length nests nowhere."""

    terms: tuple[Expr, ...]
    ops: tuple[Literal["+", "-"], ...]


@dataclass(frozen=True)
class BinOp(Node):
    op: Literal["*", "/"]
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Neg(Node):
    operand: Expr


@dataclass(frozen=True)
class Abs(Node):
    operand: Expr


Expr = Number | Term | Sum | BinOp | Neg | Abs


@dataclass(frozen=True)
class Comparison(Node):
    left: Expr
    op: Comparator
    right: Expr


@dataclass(frozen=True)
class Birth(Node):
    """`birth(COND)` or `birth(COND, sustained)`: the first checkpoint from which COND holds and
    keeps holding; `birth(COND, first)`: the first checkpoint at which it holds."""

    condition: Comparison
    rule: Literal["sustained", "first"] = "sustained"


# --- windows and claims --------------------------------------------------------------------


@dataclass(frozen=True)
class WindowRange(Node):
    """`a .. b`, `a ..` or `.. b` (a missing end is open)."""

    start: int | None
    end: int | None


@dataclass(frozen=True)
class WindowBirth(Node):
    """`.. before birth(COND)` or `after birth(COND) ..`."""

    relation: Literal["before", "after"]
    birth: Birth


Window = WindowRange | WindowBirth


@dataclass(frozen=True)
class Step(Node):
    kind: Literal["number", "final", "first"]
    number: int | None = None


@dataclass(frozen=True)
class At(Node):
    step: Step


@dataclass(frozen=True)
class Over(Node):
    window: Name
    aggregate: Literal["all", "mean", "trend"]


@dataclass(frozen=True)
class TimedPrediction(Node):
    when: At | Over
    probe: Name | None
    comparison: Comparison


@dataclass(frozen=True)
class BirthOrder(Node):
    left: Birth
    relation: Literal["before", "after"]
    right: Birth
    probe: Name | None


Prediction = TimedPrediction | BirthOrder


# --- statements ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Study(Node):
    title: str


@dataclass(frozen=True)
class RunDecl(Node):
    name: Name
    path: str


@dataclass(frozen=True)
class RunsDecl(Node):
    """A seed matrix: every run directory matching a glob."""

    name: Name
    pattern: str


@dataclass(frozen=True)
class ImportDecl(Node):
    path: str


@dataclass(frozen=True)
class ProbeDecl(Node):
    name: Name
    split: Name
    n: int
    seed: int | None


@dataclass(frozen=True)
class ConfidenceDecl(Node):
    level: float


@dataclass(frozen=True)
class CorrectionDecl(Node):
    method: Literal["holm", "bh", "none"]


@dataclass(frozen=True)
class MarkDecl(Node):
    """`mark slow, nightly`: pytest marks on every claim of the spec."""

    names: tuple[Name, ...]


@dataclass(frozen=True)
class WindowDecl(Node):
    name: Name
    window: Window


@dataclass(frozen=True)
class PathDecl(Node):
    name: Name
    path: PathExpr


@dataclass(frozen=True)
class CircuitDecl(Node):
    name: Name
    paths: tuple[Name, ...]


@dataclass(frozen=True)
class BasisDecl(Node):
    """`basis l2 = "features/l2" at "blocks.1.hook_resid_post" sha256 "109f8fbab27c"` (the
    site and the pin, a prefix of the basis weights' SHA-256, are optional)."""

    name: Name
    path: str
    site: str | None
    sha256: str | None = None


@dataclass(frozen=True)
class FamilyDecl(Node):
    """`family f7 = l2[27, 54]`: a named set of features of one basis."""

    name: Name
    features: PathNode


@dataclass(frozen=True)
class Criterion(Node):
    """`drive(f7) > 0`: a per-unit quantity compared with a number, in a `select`."""

    call: Call
    op: Comparator
    value: float


@dataclass(frozen=True)
class HeadUnits(Node):
    """`L1 heads` (`layer` names the layer as written) or `heads` (every layer: None)."""

    layer: Name | None


@dataclass(frozen=True)
class SelectDecl(Node):
    """`select sp = L0.mlp neurons where drive(f7) > 0 over 1750 .. 2500 on pick` or
    `select top2 = f7 features top 2 by contribution over early on pick`."""

    name: Name
    # an MLP's neurons, the features of a basis or family, or heads: of a layer (`L1 heads`:
    # the layer's name) or of every layer (`heads`: None)
    units: Mlp | Name | HeadUnits
    criteria: tuple[Criterion, ...]
    top: int | None
    by: Call | None
    window: WindowRange | Name
    probe: Name


@dataclass(frozen=True)
class Claim(Node):
    name: Name
    text: str
    expect: Verdict | None
    pending: bool
    predictions: tuple[Prediction, ...]
    exploratory: bool = False  # found by exploring this run; not yet replicated
    prior: str | None = None  # the status it had before this study (a draft's, say)
    options: tuple[str, ...] = field(default=(), compare=False)  # as written, for checks
    pending_reason: str | None = None  # `pending "why"`: why it cannot be tested yet


Statement = (
    Study
    | RunDecl
    | RunsDecl
    | ImportDecl
    | ProbeDecl
    | ConfidenceDecl
    | CorrectionDecl
    | MarkDecl
    | WindowDecl
    | PathDecl
    | CircuitDecl
    | BasisDecl
    | FamilyDecl
    | SelectDecl
    | Claim
)


@dataclass(frozen=True)
class Comment(Node):
    """A `#` comment; kept beside the tree so `hypo fmt` can put it back."""

    text: str
    own_line: bool  # nothing but whitespace before it on its line


@dataclass(frozen=True)
class Spec(Node):
    statements: tuple[Statement, ...]
    comments: tuple[Comment, ...] = field(default=(), compare=False)
