"""`hypo explore`: quantities across every checkpoint of a run, on a discovery probe.

The discovery companion to claims: before writing a threshold or choosing a window, look at
the quantity's trajectory. Each quantity is written as in a spec (`accuracy`,
`attention(L0.H3, from=answer, to=match_value)`, `contribution(L1.mlp -> unembed)`) and measured
by the engine as the left side of an `over ... (all)` prediction on a probe of the split named
(by default `val_iid`, a discovery split: claims are then tested on another), so the values,
their cluster-bootstrap intervals and the cache are those a study would use.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hypodsl.compiler import compile_spec
from hypodsl.errors import HypError
from hypodsl.parser import parse
from runner.atomic import atomic_write_bytes
from runner.engine.study import run_study
from runner.model.rundir import read_signature
from runner.stats.results import SeriesPoint

SPEC_NAME = "explore.hyp"
HEADER_LINES = 4  # the study, probe and window lines before the first quantity's claim
SPARKS = "▁▂▃▄▅▆▇█"


class ExploreError(ValueError):
    """A quantity that does not compile against the run; the message names it."""


@dataclass(frozen=True)
class Explored:
    quantity: str
    points: tuple[SeriesPoint, ...]  # one per checkpoint that could be measured
    reason: str  # why some or all checkpoints could not be measured ("" when none failed)


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
        explored.append(Explored(quantity, prediction.series, unread))
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


def sparkline(values: Sequence[float | None]) -> str:
    """One character per value, from ▁ (the smallest) to █ (the largest); a gap for None."""
    known = [v for v in values if v is not None]
    if not known:
        return " " * len(values)
    low, high = min(known), max(known)
    span = high - low
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        else:
            level = 0 if span == 0 else round((v - low) / span * (len(SPARKS) - 1))
            out.append(SPARKS[level])
    return "".join(out)


def table_csv(explored: Sequence[Explored]) -> str:
    """step, then each quantity's estimate and interval, one row per checkpoint."""
    steps = sorted({pt.step for e in explored for pt in e.points})
    by_step = [{pt.step: pt for pt in e.points} for e in explored]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["step"]
    for e in explored:
        header += [e.quantity, f"{e.quantity} low", f"{e.quantity} high"]
    writer.writerow(header)
    for step in steps:
        row: list[object] = [step]
        for points in by_step:
            pt = points.get(step)
            ci = pt.interval if pt is not None else None
            row += [
                "" if pt is None or pt.estimate is None else repr(pt.estimate),
                "" if ci is None else repr(ci.low),
                "" if ci is None else repr(ci.high),
            ]
        writer.writerow(row)
    return out.getvalue()


def write_figure(explored: Sequence[Explored], path: Path, run_name: str) -> None:
    """Each quantity against the step, its interval as a band; one panel per quantity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(explored), 1, figsize=(7, 2.4 * len(explored)), squeeze=False)
    for ax, e in zip(axes[:, 0], explored, strict=True):
        points = [pt for pt in e.points if pt.estimate is not None]
        steps = [pt.step for pt in points]
        ax.plot(steps, [pt.estimate for pt in points], marker=".", lw=1)
        banded = [pt for pt in points if pt.interval is not None]
        ax.fill_between(
            [pt.step for pt in banded],
            [pt.interval.low for pt in banded],  # type: ignore[union-attr]
            [pt.interval.high for pt in banded],  # type: ignore[union-attr]
            alpha=0.25,
        )
        ax.set_title(e.quantity, fontsize=9)
        ax.set_xlabel("step")
    fig.suptitle(f"{run_name}: explored on the discovery probe", fontsize=10)
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, image.getvalue())
