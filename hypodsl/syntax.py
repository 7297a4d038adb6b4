"""The syntax tree of a `.hyp` file: frozen dataclasses, each with its source position."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hypodsl.errors import SourcePosition

Verdict = Literal["supported", "negative", "unsupported"]
Comparator = Literal["<", "<=", ">", ">="]


@dataclass(frozen=True)
class Node:
    pos: SourcePosition


@dataclass(frozen=True)
class Name(Node):
    """An identifier at a place in the source: a declaration's name or a reference to one."""

    text: str


@dataclass(frozen=True)
class Study(Node):
    title: str


@dataclass(frozen=True)
class RunDecl(Node):
    name: Name
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
class Step(Node):
    kind: Literal["number", "final", "first"]
    number: int | None = None


@dataclass(frozen=True)
class Quantity(Node):
    name: Name


@dataclass(frozen=True)
class Number(Node):
    value: float


@dataclass(frozen=True)
class BinOp(Node):
    op: Literal["+", "-"]
    left: Expr
    right: Expr


Expr = Quantity | Number | BinOp


@dataclass(frozen=True)
class Comparison(Node):
    left: Expr
    op: Comparator
    right: Expr


@dataclass(frozen=True)
class Prediction(Node):
    step: Step
    probe: Name
    comparison: Comparison


@dataclass(frozen=True)
class Claim(Node):
    name: Name
    text: str
    expect: Verdict | None
    predictions: tuple[Prediction, ...]


Statement = Study | RunDecl | ProbeDecl | ConfidenceDecl | Claim


@dataclass(frozen=True)
class Spec(Node):
    statements: tuple[Statement, ...]
