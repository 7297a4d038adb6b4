"""`hypo explore`: quantities across every checkpoint of a run, on a discovery probe
(runner.report.explore draws and tabulates them).

The discovery companion to claims: before writing a threshold or choosing a window, look at
the quantity's trajectory. Each quantity is written as in a spec (`accuracy`,
`attention(L0.H3, from=answer, to=match_value)`, `contribution(L1.mlp -> unembed)`) and measured
by the engine as the left side of an `over ... (all)` prediction on a probe of the split named
(by default `val_iid`, a discovery split: claims are then tested on another), so the values,
their cluster-bootstrap intervals and the cache are those a study would use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hypodsl.compiler import compile_spec
from hypodsl.errors import HypError
from hypodsl.parser import parse
from runner.engine.study import run_study
from runner.model.rundir import read_signature
from runner.stats.results import Trajectory

SPEC_NAME = "explore.hyp"
HEADER_LINES = 4  # the study, probe and window lines before the first quantity's claim


class ExploreError(ValueError):
    """A quantity that does not compile against the run; the message names it."""


@dataclass(frozen=True)
class Explored:
    trajectory: Trajectory  # the quantity as written, one point per checkpoint measured
    reason: str  # why no checkpoint could be measured ("" when some were)


def exploration_spec(quantities: Sequence[str], split: str, n: int, seed: int) -> str:
    """One claim per quantity, each reading it at every checkpoint."""
    lines = [
        'study "explore"',
        f"probe discovery = split {split} n {n} seed {seed}",
        "window every_step = 0 ..",
        "",
    ]
    for i, quantity in enumerate(quantities):
        lines.append(
            f'claim q{i} "{i}" {{ over every_step (all) on discovery: {quantity} > -1e30 }}'
        )
    return "\n".join(lines) + "\n"


def explore(
    run_dir: Path,
    quantities: Sequence[str],
    split: str = "val_iid",
    n: int = 256,
    seed: int = 0,
    **options: object,
) -> list[Explored]:
    """Each quantity's estimate and interval at every checkpoint of the run."""
    for i, quantity in enumerate(quantities):
        if "\n" in quantity or "{" in quantity or "}" in quantity:
            raise ExploreError(f"quantity {i + 1} `{quantity}`: one expression, as in a spec")
    text = exploration_spec(quantities, split, n, seed)
    try:
        plan = compile_spec(parse(text, SPEC_NAME), text, read_signature(run_dir))
    except HypError as e:
        raise ExploreError(_named(str(e), quantities)) from None
    result = run_study(plan, [run_dir], **options)  # type: ignore[arg-type]
    explored = []
    for quantity, claim in zip(quantities, result.claims, strict=True):
        prediction = claim.predictions[0]
        unread = "" if prediction.series else prediction.reason
        explored.append(Explored(Trajectory(label=quantity, points=prediction.series), unread))
    return explored


def _named(message: str, quantities: Sequence[str]) -> str:
    """A compiler message about the generated spec, said of the argument it concerns."""
    first = message.splitlines()[0]
    where, _, said = first.partition(": ")
    parts = where.split(":")
    if len(parts) < 2 or parts[0] != SPEC_NAME or not parts[1].isdigit():
        return first
    line = int(parts[1])
    if line == 2:  # the probe's line
        return f"--split / --n: {said}"
    index = line - HEADER_LINES - 1
    if 0 <= index < len(quantities):
        return f"quantity {index + 1} `{quantities[index]}`: {said}"
    return said
