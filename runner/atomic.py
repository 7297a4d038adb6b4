"""Atomic file writes: write to a temporary file in the same directory, then rename.

A reader (or a run killed half-way) sees either the old file or the new one, never a torn one.
A kill between the two steps leaves the temporary file, `.NAME.XXXXXXXX.tmp` beside NAME: a
later write of the same files removes it with `remove_stale_temporaries`.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

TEMPORARY = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")  # mkstemp's 8 random characters
# A temporary file lives milliseconds; one this old was left by a killed writer, not by a
# writer still at work in the same folder.
STALE_AFTER_S = 60.0


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it a normal file's mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(
    directory: Path, owns: Callable[[str], bool], older_than_s: float = STALE_AFTER_S
) -> list[Path]:
    """Remove the temporary files that writes into `directory` of files `owns(name)` accepts
    left behind, older than `older_than_s`; other files are never touched."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    now = time.time()
    for path in directory.iterdir():
        match = TEMPORARY.fullmatch(path.name)
        if not match or not owns(match["target"]) or path.is_symlink() or not path.is_file():
            continue
        try:
            if now - path.stat().st_mtime >= older_than_s:
                path.unlink()
                removed.append(path)
        except OSError:  # removed meanwhile by another run, or not ours to remove
            continue
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
