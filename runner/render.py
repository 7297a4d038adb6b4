"""Rich renderables of results (pure functions, printed only by the CLI) and progress bars."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from runner.results import StudyResult

STYLE = {"supported": "green", "negative": "red", "unsupported": "yellow"}


def summary_table(result: StudyResult) -> Table:
    table = Table(title=result.study, title_justify="left")
    table.add_column("claim", overflow="fold")
    table.add_column("verdict")
    table.add_column("estimate [interval]", overflow="fold")
    table.add_column("threshold", justify="right")
    table.add_column("n", justify="right")
    for claim in result.claims:
        if claim.pending:
            table.add_row(claim.name, "[blue]Next test[/]", "—", "—", "—")
            continue
        if not claim.predictions:
            verdict = f"[{STYLE[claim.verdict]}]{claim.verdict.capitalize()}[/]"
            table.add_row(claim.name, verdict, f"{len(claim.runs)} runs", "—", "—")
            continue
        first = claim.predictions[0]
        estimate = "—" if first.estimate is None else f"{first.estimate:.3f}"
        if first.estimate is not None and first.interval is not None:
            estimate += f" [{first.interval.low:.3f}, {first.interval.high:.3f}]"
        threshold = "—" if first.threshold is None else f"{first.threshold:.3f}"
        verdict = f"[{STYLE[claim.verdict]}]{claim.verdict.capitalize()}[/]"
        if claim.expect is not None and claim.expect != claim.verdict:
            verdict += f" (expected {claim.expect})"
        table.add_row(claim.name, verdict, estimate, threshold, str(first.n))
    counts = result.counts()
    table.caption = "  ".join(f"{v.capitalize()}: {n}" for v, n in counts.items())
    return table


def reasons_table(result: StudyResult) -> Table:
    table = Table(show_header=True, title="Reasons", title_justify="left")
    table.add_column("claim")
    table.add_column("reason", overflow="fold")
    for claim in result.claims:
        table.add_row(claim.name, claim.reason)
    return table


class RichProgress:
    """One progress bar per engine phase (runner.progress.Progress), drawn while it runs."""

    def __init__(self, console: Console):
        self.bars = Progress(
            TextColumn("{task.description:<20}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def phase(self, name: str, total: int) -> None:
        self.task = self.bars.add_task(name, total=total)

    def advance(self) -> None:
        if self.task is not None:
            self.bars.advance(self.task)
