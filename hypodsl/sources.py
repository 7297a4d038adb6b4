"""Reading spec files: regular files of bounded size, decoded as UTF-8, errors with a position.

Every `.hyp` text the language reads (a file named on the command line, or one it imports) goes
through `read_spec_text`. The rules, documented in docs/language.md (Imports):

- a spec is a regular file of at most MAX_SPEC_BYTES; a directory, FIFO, socket or device is
  refused before it is opened (a FIFO would block forever), and so is anything under /proc,
  /sys or /dev (files there pose as regular files);
- an imported file must also resolve to a name ending in `.hyp`, so a failing import can never
  show a line of some other file (`import "/proc/self/environ"` is refused unread);
- the text is UTF-8, with or without a byte-order mark; a byte that is not UTF-8 is an error at
  its line and column.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hypodsl.errors import HypSyntaxError, SourcePosition
from hypodsl.system_paths import is_system_path

MAX_SPEC_BYTES = 4 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"


class SpecFileRefused(OSError):
    """A path that is not a readable spec file; `strerror` says why in words."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.strerror = why


def read_spec_text(path: Path, imported: bool = False) -> str:
    """The text of the spec at `path`; raises SpecFileRefused, OSError or HypSyntaxError."""
    resolved = path.resolve()
    if is_system_path(resolved):
        raise SpecFileRefused(f"{resolved.parent} holds system files, not specs")
    if imported and resolved.suffix != ".hyp":
        raise SpecFileRefused("an imported file must be a `.hyp` spec")
    mode = os.stat(resolved).st_mode
    if not stat.S_ISREG(mode):
        raise SpecFileRefused(f"not a regular file (a {_kind(mode)})")
    with open(resolved, "rb") as f:
        data = f.read(MAX_SPEC_BYTES + 1)
    if len(data) > MAX_SPEC_BYTES:
        raise SpecFileRefused(
            f"larger than {MAX_SPEC_BYTES // (1024 * 1024)} MB, too large for a spec"
        )
    return decode_spec(data, str(path))


def decode_spec(data: bytes, uri: str) -> str:
    """UTF-8 text (a leading byte-order mark dropped); a bad byte is an error at its position."""
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line_start = data.rfind(b"\n", 0, e.start) + 1
        line = data.count(b"\n", 0, e.start) + 1
        column = len(data[line_start : e.start].decode("utf-8", errors="replace")) + 1
        pos = SourcePosition(uri, line, column, line, column + 1)
        byte = data[e.start]
        raise HypSyntaxError(f"byte 0x{byte:02x} is not UTF-8 text: a spec is UTF-8", pos) from None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file"
