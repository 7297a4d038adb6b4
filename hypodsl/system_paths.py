"""Where the operating system keeps what is not a user's file: /dev, /proc and /sys.

A path that resolves below them is never read or written as a user's file: a FIFO blocks a read
forever, /dev/zero never ends, and files under /proc or /sys pose as regular files.
"""

from __future__ import annotations

import os
from pathlib import Path

SYSTEM_ROOTS = ("/dev/", "/proc/", "/sys/")


def is_system_path(path: Path | str) -> bool:
    """Whether `path`, its links resolved, is /dev, /proc or /sys or lies below one of them."""
    return (os.path.realpath(path) + "/").startswith(SYSTEM_ROOTS)
