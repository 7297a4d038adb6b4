"""Progress in a log (stdout not a terminal): plain lines, each phase's start and end, and
between them at most one line per interval, read off the clock it is given."""

from __future__ import annotations

import io

from rich.console import Console

from runner.report.terminal import PlainProgress, RichProgress, progress_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def log() -> Console:
    return Console(file=io.StringIO(), width=40, color_system=None)


def test_lines_at_most_once_per_interval_and_at_each_end():
    out, clock = log(), Clock()
    with PlainProgress(out, interval=5.0, clock=clock) as progress:
        progress.phase("hash checkpoints", 2)  # its first 5 s a run prints nothing
        progress.advance()
        progress.advance()
        clock.now += 1.0
        progress.phase("measure checkpoints", 10)
        for _ in range(9):
            clock.now += 2.0  # 2 s a checkpoint: a line at 6 s, 12 s and 18 s, none between
            progress.advance()
        clock.now += 0.5
        progress.advance()
        progress.phase("judge claims", 3)
        progress.advance()
    assert out.file.getvalue().splitlines() == [
        "measure checkpoints: 3/10, 6 s",
        "measure checkpoints: 6/10, 12 s",
        "measure checkpoints: 9/10, 18 s",
        "measure checkpoints: 10/10 done in 18.5 s",
        "judge claims: 0/3",
        "judge claims: 1/3 done in 0.0 s",  # ended by the context, where it stopped
    ]


def test_a_quick_run_prints_nothing_and_an_interrupted_one_no_end_line():
    out, clock = log(), Clock()
    with PlainProgress(out, interval=5.0, clock=clock) as progress:
        progress.phase("hash checkpoints", 4)
        clock.now += 4.9
        progress.advance()
    assert out.file.getvalue() == ""
    try:
        with PlainProgress(out, interval=5.0, clock=clock) as progress:
            clock.now += 5.0
            progress.phase("hash checkpoints", 4)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert out.file.getvalue() == "hash checkpoints: 0/4\n"


def test_bars_on_a_terminal_lines_elsewhere():
    terminal = Console(file=io.StringIO(), force_terminal=True)
    assert isinstance(progress_for(terminal, log()), RichProgress)
    assert isinstance(progress_for(log(), log()), PlainProgress)
