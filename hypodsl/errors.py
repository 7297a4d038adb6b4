"""Source positions and the project's error types, printed as `file:line:col: message`.

Modelled on miniwdl: every syntax-tree node and every error carries a `SourcePosition`; errors
form a small taxonomy (syntax, validation); a check gathers all the validation errors of a file
into one `MultipleErrors`; `format_error` is the one place that renders them, with the source
line and carets under the span.
"""

from __future__ import annotations

import difflib
import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from hypodsl.escape import for_terminal


@dataclass(frozen=True, order=True)
class SourcePosition:
    uri: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.uri}:{self.line}:{self.column}"


class UserError(Exception):
    """Bad input outside a spec (a missing run, a corrupt checkpoint, a bad config): the CLI
    prints its message and exits 2, without a traceback."""


class HypError(Exception):
    """Base class of every error about a spec."""

    def __init__(self, message: str, pos: SourcePosition | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos

    def __str__(self) -> str:
        return f"{self.pos}: {self.message}" if self.pos else self.message


class HypSyntaxError(HypError):
    """The text does not follow the grammar."""


class HypValidationError(HypError):
    """The text parses but says something impossible: an unknown name, a layer out of range."""


class MultipleErrors(HypError):
    """Several errors found in one pass over a file, reported together."""

    def __init__(self, errors: list[HypError]) -> None:
        errors = sorted(errors, key=lambda e: (e.pos is None, e.pos))
        super().__init__(f"{len(errors)} errors", errors[0].pos if errors else None)
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a large syntax tree or plan is built.

    Building one allocates hundreds of thousands of objects and no cycles; each automatic
    collection rescans them all, which made parsing a 16,000-claim spec quadratic."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


SHOWN_COLUMNS = 100  # of a long source line, the part around the error


def _source_excerpt(src: str, column: int, end: int) -> list[str]:
    """The source line (a window of it when long) and carets under columns [column, end)."""
    start = 0 if len(src) <= SHOWN_COLUMNS else max(0, min(column - 21, len(src) - SHOWN_COLUMNS))
    shown = src[start : start + SHOWN_COLUMNS]
    lead = "…" if start > 0 else ""
    tail = "…" if start + SHOWN_COLUMNS < len(src) else ""
    width = max(1, min(end, start + SHOWN_COLUMNS + 1) - column)
    # one column per character, so the carets stay under the span
    text = lead + "".join(c if c.isprintable() else "?" for c in shown) + tail
    return ["  " + text, "  " + " " * (len(lead) + column - 1 - start) + "^" * width]


def flatten(error: HypError) -> list[HypError]:
    return error.errors if isinstance(error, MultipleErrors) else [error]


def format_error(error: HypError, sources: dict[str, str] | None = None) -> str:
    """`file:line:col: message`, then the source line and carets under the span."""
    lines = []
    split: dict[str, list[str]] = {}  # each file split once, however many errors it has
    for err in flatten(error):
        lines.append(for_terminal(str(err)))
        text = (sources or {}).get(err.pos.uri) if err.pos else None
        if err.pos and text is not None:
            if err.pos.uri not in split:
                split[err.pos.uri] = text.splitlines()
            source_lines = split[err.pos.uri]
            if 0 < err.pos.line <= len(source_lines):
                src = source_lines[err.pos.line - 1]
                end = err.pos.end_column if err.pos.end_line == err.pos.line else len(src) + 1
                lines.extend(_source_excerpt(src, err.pos.column, end))
    return "\n".join(lines)


def suggest(name: str, known: Iterable[str]) -> str:
    """ "; did you mean `x`?" for the known name closest to `name`, or ""."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""
