"""`hypo explore`'s outputs: a sparkline per quantity, a CSV table and a figure of the
trajectories `runner.engine.explore` measured."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from runner.atomic import atomic_write_bytes
from runner.stats.results import Trajectory

SPARKS = "▁▂▃▄▅▆▇█"


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


def table_csv(explored: Sequence[Trajectory]) -> str:
    """step, then each quantity's estimate and interval, one row per checkpoint."""
    steps = sorted({pt.step for e in explored for pt in e.points})
    by_step = [{pt.step: pt for pt in e.points} for e in explored]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["step"]
    for e in explored:
        header += [e.label, f"{e.label} low", f"{e.label} high"]
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


def write_figure(explored: Sequence[Trajectory], path: Path, run_name: str) -> None:
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
        ax.set_title(e.label, fontsize=9)
        ax.set_xlabel("step")
    fig.suptitle(f"{run_name}: explored on the discovery probe", fontsize=10)
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, image.getvalue())
