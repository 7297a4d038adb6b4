"""Atomic writes leave whole files with a normal file's permissions."""

from __future__ import annotations

import os
from pathlib import Path

from runner.atomic import atomic_write_text


def test_an_atomic_write_has_the_mode_of_an_ordinary_write(tmp_path: Path):
    (tmp_path / "plain.txt").write_text("x")
    atomic_write_text(tmp_path / "atomic.txt", "x")
    plain = (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert (tmp_path / "atomic.txt").stat().st_mode & 0o777 == plain
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
