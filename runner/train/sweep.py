"""`hypo sweep RUN`: a run's formation record from the metrics logged at every checkpoint.

For every split and metric of `metrics.jsonl` (answer accuracy, answer loss, answer margin,
token accuracy), the sweep finds:

- the **windows of largest gain**: over windows of `width` steps whose ends are checkpoints,
  gain = m(end) − m(start) (a fall, for a loss); the best non-overlapping windows with a gain of
  at least `min_gain`, best first (the research draft's birth-window analysis);
- the **trigger**: the step t with the largest gain over the `grid` steps before it (the series
  interpolated on a regular grid, so dense and sparse stretches of checkpoints compare fairly).

It prints a table, suggests `window` lines, and with `--report DIR` writes `DIR/NAME.md` with a
timeline figure. It suggests; specs decide: nothing here enters a verdict.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from runner.atomic import atomic_write_bytes, atomic_write_text
from runner.model.rundir import RunError, read_metrics

METRICS = ("answer_accuracy", "answer_loss", "answer_margin", "token_accuracy")
FALLING = {"answer_loss", "loss"}  # a gain is a fall
SPLIT_ORDER = ("train", "val_iid", "test_iid", "heldout", "structural_ood", "counterfactual")


@dataclass(frozen=True)
class Gain:
    split: str
    metric: str
    start: int
    end: int
    gain: float  # signed as a gain: positive is better


@dataclass(frozen=True)
class Trigger:
    split: str
    metric: str
    step: int
    gain: float


@dataclass(frozen=True)
class Sweep:
    run: str
    steps: tuple[int, ...]
    series: dict[tuple[str, str], np.ndarray]  # (split, metric) -> value per checkpoint
    windows: tuple[Gain, ...]
    triggers: tuple[Trigger, ...]
    width: int
    grid: int


def load_series(run_dir: Path) -> tuple[tuple[int, ...], dict[tuple[str, str], np.ndarray]]:
    rows = read_metrics(run_dir)
    if not rows:
        raise RunError(f"{run_dir}: no metrics.jsonl (train the run first)")
    try:
        rows = sorted(rows, key=lambda r: int(r["step"]))
        steps = tuple(int(r["step"]) for r in rows)
        splits = [s for s in SPLIT_ORDER if s in rows[0]["splits"]]
        series = {
            (split, metric): np.array([float(r["splits"][split][metric]) for r in rows])
            for split in splits
            for metric in METRICS
            if metric in rows[0]["splits"][split]
        }
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"{run_dir / 'metrics.jsonl'}: malformed line ({e})") from None
    return steps, series


def best_windows(
    steps: tuple[int, ...], values: np.ndarray, width: int, min_gain: float, keep: int, sign: float
) -> list[tuple[int, int, float]]:
    """Non-overlapping (start, end, gain) windows of `width` steps, the largest gains first."""
    index = {s: i for i, s in enumerate(steps)}
    found = [
        (s, s + width, sign * float(values[index[s + width]] - values[i]))
        for i, s in enumerate(steps)
        if s + width in index
    ]
    found.sort(key=lambda w: (-w[2], w[0]))
    chosen: list[tuple[int, int, float]] = []
    for start, end, gain in found:
        if gain < min_gain or len(chosen) == keep:
            break
        if all(end <= a or start >= b for a, b, _ in chosen):
            chosen.append((start, end, gain))
    return chosen


def trigger(
    steps: tuple[int, ...], values: np.ndarray, grid: int, sign: float
) -> tuple[int, float]:
    points = np.arange(steps[0], steps[-1] + 1, grid)
    if len(points) < 2:
        return steps[-1], 0.0
    on_grid = np.interp(points, steps, values)
    gains = sign * np.diff(on_grid)
    k = int(np.argmax(gains))
    return int(points[k + 1]), float(gains[k])


def sweep(
    run_dir: Path, width: int = 500, grid: int = 250, min_gain: float = 0.02, keep: int = 3
) -> Sweep:
    steps, series = load_series(run_dir)
    windows, triggers = [], []
    for (split, metric), values in series.items():
        sign = -1.0 if metric in FALLING else 1.0
        for start, end, gain in best_windows(steps, values, width, min_gain, keep, sign):
            windows.append(Gain(split, metric, start, end, gain))
        step, gain = trigger(steps, values, grid, sign)
        triggers.append(Trigger(split, metric, step, gain))
    return Sweep(run_dir.name, steps, series, tuple(windows), tuple(triggers), width, grid)


def window_name(g: Gain, rank: int) -> str:
    metric = {"answer_accuracy": "acc", "answer_loss": "loss", "answer_margin": "margin",
              "token_accuracy": "token"}.get(g.metric, g.metric)  # fmt: skip
    return re.sub(r"\W", "_", f"{g.split}_{metric}_{rank}")


def suggested_lines(result: Sweep, metric: str = "answer_accuracy") -> list[str]:
    lines: list[str] = []
    rank: dict[str, int] = {}
    for g in result.windows:
        if g.metric != metric:
            continue
        rank[g.split] = rank.get(g.split, 0) + 1
        lines.append(
            f"window {window_name(g, rank[g.split])} = {g.start} .. {g.end}"
            f"  # {g.metric.replace('_', ' ')} on {g.split} {g.gain:+.3f}"
        )
    return lines


def timeline_png(result: Sweep) -> bytes:
    fig = Figure(figsize=(8.0, 6.0), dpi=100)
    top, bottom = fig.subplots(2, 1, sharex=True)
    for (split, metric), values in result.series.items():
        if metric == "answer_accuracy":
            top.plot(result.steps, values, label=split, linewidth=1.3)
        elif metric == "answer_loss":
            bottom.plot(result.steps, values, label=split, linewidth=1.3)
    for split, colour in (("test_iid", "#0969da"), ("heldout", "#8250df")):
        best = [g for g in result.windows if (g.split, g.metric) == (split, "answer_accuracy")]
        if best:
            top.axvspan(best[0].start, best[0].end, color=colour, alpha=0.12)
    top.set_ylabel("answer accuracy")
    bottom.set_ylabel("answer loss")
    bottom.set_xlabel("training step")
    top.set_title(
        f"{result.run}: shaded, the best test_iid and heldout accuracy windows", fontsize=10
    )
    top.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer, metadata={"Software": None})
    return buffer.getvalue()


def render(result: Sweep, figure: str | None) -> str:
    lines = [
        f"# Sweep of `{result.run}`",
        "",
        f"{len(result.steps)} checkpoints, steps {result.steps[0]}–{result.steps[-1]}. Windows: "
        f"{result.width} steps between two checkpoints, non-overlapping, best first; triggers: "
        f"the largest gain over {result.grid} steps (interpolated). It suggests; specs decide.",
        "",
    ]
    if figure:
        lines += [f"![timeline]({figure})", ""]
    lines += ["## Windows of largest gain", "", "| split | metric | window | gain |",
              "|---|---|---|---:|"]  # fmt: skip
    lines += [
        f"| {g.split} | {g.metric} | {g.start}–{g.end} | {g.gain:+.3f} |" for g in result.windows
    ]
    lines += ["", "## Triggers", "", "| split | metric | step | gain |", "|---|---|---:|---:|"]
    lines += [
        f"| {t.split} | {t.metric} | {t.step} | {t.gain:+.3f} |"
        for t in result.triggers
        if t.metric in ("answer_accuracy", "answer_loss")
    ]
    lines += ["", "## Suggested windows", "", "```hyp", *suggested_lines(result), "```", ""]
    accuracy = [(k, v) for k, v in result.series.items() if k[1] == "answer_accuracy"]
    lines += ["## Answer accuracy at every checkpoint", ""]
    lines.append("| step | " + " | ".join(split for (split, _), _ in accuracy) + " |")
    lines.append("|---:|" + "---:|" * len(accuracy))
    for i, step in enumerate(result.steps):
        lines.append(f"| {step} | " + " | ".join(f"{v[i]:.3f}" for _, v in accuracy) + " |")
    return "\n".join(lines) + "\n"


def write_report(result: Sweep, out_dir: Path) -> Path:
    name = f"sweep_{re.sub(r'[^A-Za-z0-9_.-]', '_', result.run)}"
    figure = out_dir / "figures" / name / "timeline.png"
    atomic_write_bytes(figure, timeline_png(result))
    path = out_dir / f"{name}.md"
    atomic_write_text(path, render(result, figure.relative_to(out_dir).as_posix()))
    return path


def summary_rows(result: Sweep) -> list[dict[str, Any]]:
    """Per split: the best answer-accuracy window and the accuracy trigger, for the terminal."""
    rows = []
    for (split, metric), values in result.series.items():
        if metric != "answer_accuracy":
            continue
        best = next((g for g in result.windows if (g.split, g.metric) == (split, metric)), None)
        t = next(t for t in result.triggers if (t.split, t.metric) == (split, metric))
        rows.append({"split": split, "final": float(values[-1]), "window": best, "trigger": t})
    return rows
