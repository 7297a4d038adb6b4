"""The run directories a spec's `runs NAME = "GLOB"` matches, found by a bounded walk.

The pattern is expanded one path component at a time, as `glob` does (`*`, `?` and `[...]`
within a component; names starting with `.` only for a component that starts with `.`), but
the walk never enters /dev, /proc or /sys, skips a directory it may not read, and stops with
an error after MAX_SCANNED directory entries or MAX_RUNS runs: `"/*/*/*"` is refused in a
moment instead of ending in a traceback or walking the whole disk.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path

from hypodsl.plan import Plan
from hypodsl.system_paths import is_system_path
from runner.model.rundir import RunError

MAX_SCANNED = 100_000
MAX_RUNS = 1000


def matching_runs(plan: Plan, base: Path) -> list[Path]:
    """The run directories (holding config.json) the plan's `runs` glob matches, relative to
    `base` unless absolute, sorted; an error when none does."""
    found = runs_under(plan, base)
    if not found:
        assert plan.runs is not None
        raise RunError(f"`runs {plan.runs.name}`: no run directory matches {plan.runs.pattern!r}")
    return found


def runs_under(plan: Plan, base: Path) -> list[Path]:
    """As `matching_runs`, but no match is an empty list (a bad or hostile pattern is still an
    error), so a caller can try another base."""
    assert plan.runs is not None
    where = f"`runs {plan.runs.name}`"
    pattern = plan.runs.pattern
    if not pattern or "\x00" in pattern:
        raise RunError(f"{where}: {pattern!r} is not a path pattern")
    full = Path(pattern) if Path(pattern).is_absolute() else base / pattern
    found = sorted(p for p in _expand(full, where) if _is_run(p))
    if len(found) > MAX_RUNS:
        raise RunError(f"{where}: {pattern!r} matches {len(found)} runs; at most {MAX_RUNS}")
    return found


def _expand(full: Path, where: str) -> list[Path]:
    paths = [Path(full.anchor or ".")]
    scanned = 0
    for part in full.parts[1:] if full.anchor else full.parts:
        if not glob.has_magic(part):
            paths = [p / part for p in paths if not is_system_path(p / part)]
            continue
        matched = []
        for parent in paths:
            for name in _names(parent):
                scanned += 1
                if scanned > MAX_SCANNED:
                    raise RunError(
                        f"{where}: the pattern reaches more than {MAX_SCANNED} paths; "
                        'name the runs\' folder more precisely (e.g. "runs/seed-*")'
                    )
                visible = part.startswith(".") or not name.startswith(".")
                if visible and fnmatchcase(name, part) and not is_system_path(parent / name):
                    matched.append(parent / name)
        paths = matched
    return paths


def _names(directory: Path) -> Iterator[str]:
    try:
        with os.scandir(directory) as entries:
            yield from (e.name for e in entries)
    except OSError:  # not a directory, or one we may not read: nothing matches under it
        return


def _is_run(path: Path) -> bool:
    try:
        return (path / "config.json").is_file() and not is_system_path(path)
    except OSError:
        return False
