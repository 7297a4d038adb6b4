"""What every `hypo` command shares: the consoles, the user-error types, reading a spec.

`hypodsl.cli` (the commands) and `hypodsl.cli_run` (`hypo run`) both import this module and
never each other in the other direction, so the CLI's imports form no cycle.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from hypodsl.compiler import compile_spec
from hypodsl.errors import HypError, UserError, format_error
from hypodsl.parser import parse
from hypodsl.plan import Plan
from hypodsl.sources import read_spec_text
from hypodsl.system_paths import is_system_path

# Markup and emoji codes are off: names, titles and paths are printed as written (with emoji
# codes on, `spec.hyp:100:1` printed as `spec.hyp💯1`). A message that styles its own words
# builds a rich Text.
console = Console(highlight=False, markup=False, emoji=False)
# soft_wrap: never wrap a file:line:col line
err_console = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


class UsageError(UserError):
    """Bad arguments or inputs outside a spec (a missing run directory, say)."""


def read_spec(spec_path: Path) -> str:
    """A spec's text (hypodsl.sources' rules); bytes that are not UTF-8 are a SpecError."""
    try:
        return read_spec_text(spec_path)
    except OSError as e:
        raise UsageError(f"{spec_path}: {e.strerror or e}") from None
    except HypError as e:
        raise SpecError(format_error(e)) from None


def expand_specs(names: list[str]) -> list[Path]:
    """Spec files as given; a directory stands for every `.hyp` file under it, sorted. Every
    command that takes specs (`run`, `check`, `fmt`) expands them here."""
    out: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found = sorted(path.rglob("*.hyp"))
            if not found:
                raise UsageError(f"{path}: no .hyp files in this directory")
            out += found
        else:
            out.append(path)
    return out


def load_plan(spec_path: Path, signature: dict | None) -> Plan:
    text = read_spec(spec_path)
    sources = {str(spec_path): text}
    try:
        return compile_spec(parse(text, str(spec_path)), text, signature, sources=sources)
    except HypError as e:
        raise SpecError(format_error(e, sources)) from None


class SpecError(Exception):
    """A spec that does not compile; its message is the formatted `file:line:col` report."""


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high], else a usage error (exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"`{text}` is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    return parse


def ensure_writable_dir(path: Path, flag: str) -> None:
    """Create `path` if needed and prove a file can be written there, before any work."""
    _refuse_system_path(path, flag)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".hypo-write-check.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot write there ({e.strerror or e})") from None


def check_output_file(path: Path, flag: str) -> None:
    """`path` may receive a file: not a directory or a device (a rename onto /dev/null, run as
    root, would replace the device), in a folder that can be created and written."""
    _refuse_system_path(path, flag)
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a directory; name a file, e.g. {path / 'out.json'}")
    if os.path.lexists(path) and not path.is_file():
        raise UsageError(f"{flag} {path}: exists and is not a regular file; name a new file")
    ensure_writable_dir(path.parent, flag)


def _refuse_system_path(path: Path, flag: str) -> None:
    if is_system_path(path):
        raise UsageError(f"{flag} {path}: lies under /dev, /proc or /sys; name an ordinary place")
