"""Shared helpers for the measurement tests."""

from __future__ import annotations

import numpy as np

from runner.kv.dataset import Split
from runner.kv.roles import build_read_table
from runner.measure.probe import ProbeBatch


def split_of(arrays, name: str, n: int | None = None) -> Split:
    tokens = arrays[name]["tokens"].astype(np.int64)[:n]
    return Split(name, tokens, arrays[name]["lengths"][:n], build_read_table(tokens))


def probe_of(arrays, name: str, n: int | None = None) -> ProbeBatch:
    return ProbeBatch.from_split(split_of(arrays, name, n))
