"""One PNG per claim for the ledger: each prediction's quantity across the training checkpoints.

A panel per prediction draws its left side with the bootstrap interval as a band, the right
side (a dashed line: the threshold, or the measured quantity it is compared with), the window
the test covers shaded (an `at` checkpoint marked), and births as vertical lines with their
intervals. A seed-matrix claim overlays its runs. Drawn with matplotlib's object API on the Agg
canvas (no pyplot, no global backend), and saved without a timestamp: the same result gives
the same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from runner.stats.results import (
    BirthEstimate,
    ClaimResult,
    PredictionResult,
    SeriesPoint,
    Trajectory,
)

VERDICT_COLOUR = {"supported": "#1a7f37", "negative": "#cf222e", "unsupported": "#9a6700"}
LINE_COLOURS = ("#0969da", "#8250df", "#bf3989", "#1b7c83", "#953800", "#57606a")
PANEL_HEIGHT = 2.8
WIDTH = 7.5
DPI = 100


def claim_figure(claim: ClaimResult) -> bytes | None:
    """The claim's figure as PNG bytes; None when there is nothing to draw (a pending claim,
    or no prediction with a measured value)."""
    panels = _panels(claim)
    if not panels:
        return None
    fig = Figure(figsize=(WIDTH, 0.5 + PANEL_HEIGHT * len(panels)), dpi=DPI)
    fig.suptitle(
        f"{claim.name}: {claim.verdict.capitalize()}",
        color=VERDICT_COLOUR[claim.verdict],
        fontsize=11,
        fontweight="bold",
    )
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, runs in zip(axes, panels, strict=True):
        _draw_panel(ax, runs)
    axes[-1].set_xlabel("training step")
    fig.tight_layout()
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer, metadata={"Software": None})
    return buffer.getvalue()


def _panels(claim: ClaimResult) -> list[list[tuple[str, PredictionResult]]]:
    """Per prediction, the (run label, prediction) pairs drawn on its panel."""
    if claim.pending:
        return []
    if claim.runs:
        n = min(len(r.predictions) for r in claim.runs)
        panels = [[(r.run, r.predictions[i]) for r in claim.runs] for i in range(n)]
    else:
        panels = [[("", pred)] for pred in claim.predictions]
    return [runs for runs in panels if any(_trajectories(pred) for _, pred in runs)]


def _trajectories(pred: PredictionResult) -> tuple[Trajectory, ...]:
    """What to draw: the trajectories when the run measured them, else the tested series."""
    drawn = tuple(t for t in pred.trajectories if _points(t.points))
    if drawn:
        return drawn
    if _points(pred.series):
        return (Trajectory(label=pred.text, points=pred.series),)
    return ()


def _points(points: Sequence[SeriesPoint]) -> list[SeriesPoint]:
    return [pt for pt in points if pt.estimate is not None]


def _draw_panel(ax: Axes, runs: list[tuple[str, PredictionResult]]) -> None:
    pred = runs[0][1]
    ax.set_title(_shorten(pred.text, 90), fontsize=9, loc="left")
    colour_index = 0
    for run, run_pred in runs:
        for trajectory in _trajectories(run_pred):
            colour = LINE_COLOURS[colour_index % len(LINE_COLOURS)]
            colour_index += 1
            label = run or (trajectory.label if len(run_pred.trajectories) > 1 else "")
            several = len(run_pred.trajectories) > 1
            _draw_trajectory(ax, trajectory, colour, label, own_threshold=several)
            if len(run_pred.trajectories) > 1:  # a birth order: each birth in its line's colour
                for birth in run_pred.births:
                    if birth.condition == trajectory.label:
                        _draw_birth(ax, birth, colour)
        if len(run_pred.trajectories) <= 1:
            for birth in run_pred.births:
                _draw_birth(ax, birth, "#6e7781")
    _mark_tested_steps(ax, pred, VERDICT_COLOUR[pred.verdict])
    ax.grid(True, alpha=0.3)
    ax.tick_params(labelsize=8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best", framealpha=0.8)


def _draw_trajectory(
    ax: Axes, trajectory: Trajectory, colour: str, label: str, own_threshold: bool
) -> None:
    """The line and its band; the right side dashed (in the line's colour when the panel has
    several lines with thresholds of their own)."""
    points = _points(trajectory.points)
    steps = [pt.step for pt in points]
    values = [pt.estimate for pt in points if pt.estimate is not None]
    ax.plot(
        steps, values, color=colour, marker="o", markersize=2.5, linewidth=1.3, label=label or None
    )
    banded = [pt for pt in points if pt.interval is not None]
    if banded:
        ax.fill_between(
            [pt.step for pt in banded],
            [pt.interval.low for pt in banded if pt.interval],
            [pt.interval.high for pt in banded if pt.interval],
            color=colour,
            alpha=0.18,
            linewidth=0,
        )
    rights = [(pt.step, pt.threshold) for pt in points if pt.threshold is not None]
    if not rights:
        return
    levels = {round(r, 12) for _, r in rights}
    if len(levels) == 1:
        level = rights[0][1]
        ax.axhline(
            level,
            color=colour if own_threshold else "#57606a",
            linestyle="--",
            linewidth=1,
            label=f"threshold {level:g}",
        )
    else:
        ax.plot(
            [s for s, _ in rights],
            [r for _, r in rights],
            color=colour,
            linestyle="--",
            linewidth=1,
            label="right side",
        )


def _draw_birth(ax: Axes, birth: BirthEstimate, colour: str) -> None:
    if birth.step is None:
        return
    ax.axvline(birth.step, color=colour, linestyle="-.", linewidth=1.2, label=f"birth {birth.step}")
    low = birth.interval_low
    high = birth.interval_high
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        ax.axvspan(low, high, color=colour, alpha=0.08, linewidth=0)


def _mark_tested_steps(ax: Axes, pred: PredictionResult, colour: str) -> None:
    """Shade the window a test covers; ring the checkpoint of an `at` prediction."""
    if pred.test == "birth order" or not pred.steps:
        return
    if len(pred.steps) > 1:
        ax.axvspan(
            pred.steps[0],
            pred.steps[-1],
            color=colour,
            alpha=0.1,
            linewidth=0,
            label=f"window {pred.steps[0]}–{pred.steps[-1]}",
        )
        return
    point = next((pt for pt in pred.series if pt.step == pred.steps[0]), None)
    if point is None or point.estimate is None:
        return
    err = None
    if point.interval is not None:
        err = [[point.estimate - point.interval.low], [point.interval.high - point.estimate]]
    ax.errorbar(
        [point.step],
        [point.estimate],
        yerr=err,
        fmt="o",
        markersize=7,
        markerfacecolor="none",
        markeredgecolor=colour,
        ecolor=colour,
        capsize=3,
        label=f"tested at step {point.step}",
    )


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
