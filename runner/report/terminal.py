"""Rich renderables of results (pure functions, printed only by the CLI) and progress: bars on
a terminal, plain lines in a log.

Everything here fits an 80-column terminal: long cells fold instead of widening the table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from rich.console import Console, Group, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from hypodsl.escape import for_terminal
from runner.report.gate import Check
from runner.report.ledger import fmt
from runner.stats.results import ClaimResult, PredictionResult, SeriesPoint, StudyResult

STYLE = {"supported": "green", "negative": "red", "unsupported": "yellow", "next test": "blue"}
MAX_SERIES_ROWS = 8
MAX_NAME_WIDTH = 28


def verdict_text(claim: ClaimResult) -> Text:
    if claim.pending:
        return Text("Next test", style=STYLE["next test"])
    text = Text(claim.verdict.capitalize(), style=STYLE[claim.verdict])
    if claim.status == "current best hypothesis":
        text.append(" · best hypothesis")
    if claim.status == "not evaluable":
        text.append(" · not evaluable")
    if claim.expect is not None and claim.expect != claim.verdict:
        text.append(f" (expected {claim.expect})")
    return text


def num(x: float) -> str:
    """Three significant digits: the terminal is narrower than the ledger."""
    return fmt(x, ".3g")


def estimate_text(pred: PredictionResult) -> str:
    if pred.estimate is None:
        return "—"
    if pred.interval is None:
        return num(pred.estimate)
    return f"{num(pred.estimate)} [{num(pred.interval.low)}, {num(pred.interval.high)}]"


def summary_table(result: StudyResult, seconds: dict[str, float] | None = None) -> Table:
    """Claim, verdict, estimate [interval] and threshold of its first prediction, and the
    claim's wall time (its judging plus its share of the measuring) when `seconds` has it."""
    table = Table(title=Text(for_terminal(result.study)), title_justify="left")
    # Names stay whole up to MAX_NAME_WIDTH: a reader greps for them; other cells fold.
    longest = max((len(claim.name) for claim in result.claims), default=5)
    table.add_column("claim", no_wrap=longest <= MAX_NAME_WIDTH, overflow="fold")
    table.add_column("verdict", overflow="fold")
    table.add_column("estimate [interval]", overflow="fold")
    table.add_column("threshold", justify="right", overflow="fold")
    if seconds is not None:
        table.add_column("time", justify="right", no_wrap=True)
    for claim in result.claims:
        row: list[RenderableType] = [Text(for_terminal(claim.name)), verdict_text(claim)]
        if claim.pending:
            row += ["—", "—"]
        elif not claim.predictions:
            row += [f"{len(claim.runs)} runs", "—"]
        else:
            first = claim.predictions[0]
            threshold = "—" if first.threshold is None else num(first.threshold)
            row += [estimate_text(first), threshold]
        if seconds is not None:
            row.append("—" if claim.pending else f"{seconds.get(claim.name, 0.0):.1f} s")
        table.add_row(*row)
    counts = result.counts()
    table.caption = "  ".join(f"{v.capitalize()}: {n}" for v, n in counts.items())
    return table


def claim_source(spec_text: str, line: int) -> str:
    """The claim's lines in the spec: from its `claim` line to the brace that closes it."""
    lines = spec_text.splitlines()[line - 1 :]
    depth, out = 0, []
    for text in lines:
        out.append(text)
        depth += text.count("{") - text.count("}")
        if depth <= 0 and (out[0].rstrip().endswith("pending") or "{" in "".join(out)):
            break
    return "\n".join(out)


def claim_details(claim: ClaimResult, spec_text: str | None = None) -> RenderableType:
    """`-v`: the claim as written (highlighted), each prediction's series and reason."""
    from hypodsl.highlight import HypLexer

    name = for_terminal(claim.name)
    parts: list[RenderableType] = [Text.assemble((name, "bold"), "  ", verdict_text(claim))]
    if spec_text is not None:
        source = claim_source(spec_text, claim.line)
        parts.append(
            Syntax(source, HypLexer(), theme="ansi_dark", background_color="default",
                   line_numbers=True, start_line=claim.line, word_wrap=True)
        )  # fmt: skip
    else:
        parts.append(Text(for_terminal(claim.statement)))
    for run in claim.runs:
        reason = for_terminal(run.reason)
        parts.append(Text(f"run {for_terminal(run.run)}: {run.verdict.capitalize()} — {reason}"))
    for pred in claim.predictions:
        parts.append(Text(f"line {pred.line}: {for_terminal(pred.text)}", style="bold"))
        if pred.series:
            parts.append(series_table(pred.series))
        parts.append(Text(f"{pred.verdict.capitalize()}: {for_terminal(pred.reason)}"))
    parts.append(Text(f"claim: {for_terminal(claim.reason)}", style="dim"))
    return Group(*parts, Text(""))


def series_table(series: Sequence[SeriesPoint]) -> Table:
    """The checkpoints a prediction was tested at; long series keep their ends and an even
    spread between."""
    shown = list(_spread(len(series), MAX_SERIES_ROWS))
    table = Table(box=None, padding=(0, 1), show_edge=False)
    table.add_column("step", justify="right")
    table.add_column("left side [interval]")
    table.add_column("right side", justify="right")
    table.add_column("left - right [interval]")
    for i in shown:
        pt = series[i]
        table.add_row(
            str(pt.step),
            _value(pt.estimate, pt.interval),
            "—" if pt.threshold is None else num(pt.threshold),
            _value(pt.difference, pt.difference_interval),
        )
    if len(shown) < len(series):
        table.caption = f"{len(shown)} of {len(series)} checkpoints shown"
    return table


def _value(x: float | None, ci) -> str:
    if x is None:
        return "—"
    return num(x) if ci is None else f"{num(x)} [{num(ci.low)}, {num(ci.high)}]"


def _spread(n: int, k: int) -> Iterator[int]:
    if n <= k:
        yield from range(n)
        return
    seen: set[int] = set()
    for j in range(k):
        i = round(j * (n - 1) / (k - 1))
        if i not in seen:
            seen.add(i)
            yield i


def gate_table(checks: Sequence[Check]) -> Table:
    """The regressions of a CI gate: what each claim was expected to be, and what it is."""
    table = Table(title="Regressions", title_justify="left", title_style="bold red")
    table.add_column("claim", overflow="fold", ratio=3)
    table.add_column("expected (by)", overflow="fold", ratio=3)
    table.add_column("now", overflow="fold", ratio=2)
    table.add_column("reason", overflow="fold", ratio=5)
    for c in checks:
        table.add_row(
            Text(for_terminal(f"{c.spec}:{c.line} {c.claim}")),
            Text(for_terminal(f"{c.expected.capitalize()} ({c.source})")),
            Text("Not evaluable", style=STYLE["unsupported"])
            if c.status == "not evaluable"
            else Text(c.verdict.capitalize(), style=STYLE[c.verdict]),
            Text(for_terminal(c.reason)),
        )
    return table


class RichProgress:
    """One progress bar per engine phase (runner.engine.progress.Progress), drawn while it runs."""

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


LOG_INTERVAL_S = 5.0  # seconds between progress lines in a log, and of silence at first


class PlainProgress:
    """Progress as plain lines for a log (stdout not a terminal, as in CI), so a cold run of
    many minutes is never silent: each phase's name and counts when it starts, at most one line
    every `interval` seconds while it runs, and one when it ends. A run's first `interval`
    seconds print nothing, so a quick run (or one refused at once) adds no lines to its output."""

    def __init__(
        self, console: Console, interval: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ):  # fmt: skip
        self.console, self.interval, self.clock = console, interval, clock
        self.opened = clock()
        self.name, self.total, self.done = "", 0, 0
        self.started = self.shown = 0.0

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self._end()

    def phase(self, name: str, total: int) -> None:
        self._end()
        self.name, self.total, self.done = name, total, 0
        self.started = self.shown = self.clock()
        self._line(f"{self.name}: 0/{self.total}")

    def advance(self) -> None:
        if not self.name:
            return
        self.done += 1
        if self.done >= self.total:
            self._end()
        elif self.clock() - self.shown >= self.interval:
            self.shown = self.clock()
            self._line(f"{self.name}: {self.done}/{self.total}, {self.shown - self.started:.0f} s")

    def _end(self) -> None:
        if self.name:
            took = self.clock() - self.started
            self._line(f"{self.name}: {self.done}/{self.total} done in {took:.1f} s")
            self.name = ""

    def _line(self, text: str) -> None:
        if self.clock() - self.opened >= self.interval:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)


def progress_for(console: Console, log: Console) -> RichProgress | PlainProgress:
    """Bars when `console` is a terminal, else plain lines on `log` (stderr, beside the
    results on stdout)."""
    if console.is_terminal:
        return RichProgress(console)
    return PlainProgress(log, LOG_INTERVAL_S)
