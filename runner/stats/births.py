"""Births: the first checkpoint from which a condition holds and keeps holding.

Over a series of checkpoints s_1 < s_2 < ... < s_n with a condition's truth value at each,
birth = the smallest s_k such that the condition holds at s_k, s_{k+1}, ..., s_n. A condition
that holds at s_3, fails at s_4 and holds from s_5 on is born at s_5, not s_3; one that fails at
the last checkpoint has no birth (None).
"""

from __future__ import annotations

from collections.abc import Sequence


def birth(steps: Sequence[int], holds: Sequence[bool]) -> int | None:
    """The birth step of a condition observed at `steps` (any order), or None."""
    if len(steps) != len(holds):
        raise ValueError(f"{len(steps)} steps but {len(holds)} truth values")
    if len(set(steps)) != len(steps):
        raise ValueError("steps must be distinct")
    born: int | None = None
    for step, ok in sorted(zip(steps, holds, strict=True), reverse=True):
        if not ok:
            break
        born = step
    return born
