"""`hypo features fit` and `hypo features explore`: progress bars and the tables they print."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from hypodsl.escape import for_terminal
from runner.features.basis import Basis, BasisInfo
from runner.features.explore import explore
from runner.features.explore_report import family_line, write_report
from runner.features.fit import FitSettings, fit_basis


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=console,
    )  # fmt: skip


def fit_with_progress(
    run_dir: Path, out_dir: Path, settings: FitSettings, console: Console
) -> BasisInfo:
    with _progress(console) as progress:
        tasks: dict[str, object] = {}

        def on_progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(phase, total=total)
            progress.update(tasks[phase], completed=done)  # type: ignore[arg-type]

        info = fit_basis(run_dir, out_dir, settings, on_progress)
    console.print(metrics_table(info))
    console.print(
        f"basis: {for_terminal(out_dir)} ({info.d_sae} features at {for_terminal(info.site)}); "
        "in a spec of this run:",
        soft_wrap=True,
    )
    try:
        rel = out_dir.resolve().relative_to(run_dir.resolve()).as_posix()
        console.print(f'  basis NAME = "{for_terminal(rel)}"', soft_wrap=True, markup=False)
    except ValueError:
        console.print("  (stored outside the run: a spec cannot name it)")
    return info


def metrics_table(info: BasisInfo, rows: int = 12) -> Table:
    table = Table(
        title=Text(f"fit per checkpoint ({for_terminal(info.site)}, {info.d_sae} features)")
    )
    for column in ("step", "explained var.", "active frac.", "dead", "recon. loss"):
        table.add_column(column, justify="right")
    steps = sorted(info.metrics)
    if len(steps) > rows:  # the ends and an even spread
        picks = sorted({steps[round(i * (len(steps) - 1) / (rows - 1))] for i in range(rows)})
    else:
        picks = steps
    for step in picks:
        m = info.metrics[step]
        table.add_row(
            str(step), f"{m.explained_variance:.3f}", f"{m.active_fraction:.3f}",
            str(m.dead_features), f"{m.reconstruction_loss:.3f}",
        )  # fmt: skip
    if len(picks) < len(steps):
        table.caption = f"{len(picks)} of {len(steps)} checkpoints shown"
    return table


def explore_with_progress(
    basis: Basis,
    run_dir: Path,
    out_dir: Path,
    name: str,
    split: str,
    sequences: int,
    threshold: float,
    console: Console,
) -> Path:
    with _progress(console) as progress:
        task = progress.add_task("checkpoints", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        ex = explore(basis, run_dir, split, sequences, threshold, on_progress)
    path = write_report(ex, basis, name, out_dir, name)
    console.print(
        f"{len(ex.families)} suggested families; report: {for_terminal(path)}", soft_wrap=True
    )
    for fam in ex.families[:10]:
        console.print("  " + family_line(name, fam.name, fam.features), markup=False)
    return path
