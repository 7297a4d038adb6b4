"""A reduced copy of a study: the same spec, its training steps divided by a factor and its
probes capped, to run in CI against a small run trained on the divided schedule.

The reference run checkpoints every 50 steps to 2,000 and every 250 after, to step 14,000;
divided by 50 that is every step to 40 and every 5 after, to 280: a run of the reference
architecture (narrower) trained 280 steps on that schedule has a checkpoint at every step a
reduced spec names. Verdicts on it mean nothing; what the test shows is that every claim of the
real study plans, measures, judges and reports (or is pending with its reason).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypodsl import syntax as s
from hypodsl.formatter import fmt
from hypodsl.parser import parse

FACTOR = 50


def _step(n: int | None, factor: int) -> int | None:
    if n is None:
        return None
    if n % factor:
        raise ValueError(f"step {n} is not a multiple of {factor}")
    return n // factor


def _is_step_source(node: Any) -> bool:
    """`from=1750` in a patch."""
    return (
        isinstance(node, s.Arg)
        and node.keyword is not None
        and node.keyword.text == "from"
        and isinstance(node.value, s.Number)
    )


def _reduce(node: Any, factor: int, max_n: int) -> Any:
    if isinstance(node, tuple):
        return tuple(_reduce(x, factor, max_n) for x in node)
    if not dataclasses.is_dataclass(node) or isinstance(node, type):
        return node
    changes: dict[str, Any] = {}
    if isinstance(node, s.Step) and node.kind == "number":
        changes["number"] = _step(node.number, factor)
    elif isinstance(node, s.WindowRange):
        changes = {"start": _step(node.start, factor), "end": _step(node.end, factor)}
    elif isinstance(node, s.ProbeDecl):
        changes["n"] = min(node.n, max_n)
    elif _is_step_source(node):
        value = dataclasses.replace(node.value, value=float(_step(int(node.value.value), factor)))
        return dataclasses.replace(node, value=value)
    for field in dataclasses.fields(node):
        if field.name in changes or field.name == "pos":
            continue
        value = getattr(node, field.name)
        reduced = _reduce(value, factor, max_n)
        if reduced is not value:
            changes[field.name] = reduced
    return dataclasses.replace(node, **changes) if changes else node


def reduce_spec(text: str, factor: int = FACTOR, max_n: int = 48) -> str:
    """The spec with every step divided by `factor` and every probe capped at `max_n`."""
    spec = parse(text, "reduced.hyp")
    return fmt(_reduce(spec, factor, max_n))
