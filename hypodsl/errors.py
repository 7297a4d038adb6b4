"""Source positions and the project's error types, printed as `file:line:col: message`.

Modelled on miniwdl: every syntax-tree node and every error carries a `SourcePosition`; errors
form a small taxonomy (syntax, validation); a check gathers all the validation errors of a file
into one `MultipleErrors`; `format_error` is the one place that renders them, with the source
line and carets under the span.
"""

from __future__ import annotations

from dataclasses import dataclass


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


def flatten(error: HypError) -> list[HypError]:
    return error.errors if isinstance(error, MultipleErrors) else [error]


def format_error(error: HypError, sources: dict[str, str] | None = None) -> str:
    """`file:line:col: message`, then the source line and carets under the span."""
    lines = []
    for err in flatten(error):
        lines.append(str(err))
        text = (sources or {}).get(err.pos.uri) if err.pos else None
        if err.pos and text is not None:
            source_lines = text.splitlines()
            if 0 < err.pos.line <= len(source_lines):
                src = source_lines[err.pos.line - 1]
                end = err.pos.end_column if err.pos.end_line == err.pos.line else len(src) + 1
                width = max(1, end - err.pos.column)
                lines.append(f"  {src}")
                lines.append("  " + " " * (err.pos.column - 1) + "^" * width)
    return "\n".join(lines)
