"""Clean activations of other checkpoints, kept from one checkpoint's measurement to the next.

`patch(X, from=STEP)` reads STEP's clean activation at X on the probe wherever it is measured:
at every checkpoint of a window, and at every checkpoint a figure draws. The engine measures one
checkpoint per task, so without this store each of those tasks would run STEP's forward pass
again. A kept activation is keyed by everything that decides its bits (the checkpoint's and
the probe's SHA-256, the activation's name, the device and the thread count), so it is the one a
fresh pass would give. The store is bounded in bytes and emptied when a study's measuring ends.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch

MAX_BYTES = 256 * 2**20


@dataclass(frozen=True)
class SourceKey:
    checkpoint: str  # SHA-256 of the checkpoint's weights
    probe: str  # SHA-256 of the probe's content (engine.study.probe_hash)
    name: str  # the activation
    device: str
    threads: int | None


class SourceStore:
    """At most `max_bytes` of activations, the least recently used dropped first."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._kept: OrderedDict[SourceKey, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self.computed = 0  # activations computed (not found kept): for tests

    def get(self, key: SourceKey, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The kept activation, or `compute()`'s, kept if it fits. Callers must not modify it."""
        if key in self._kept:
            self._kept.move_to_end(key)
            return self._kept[key]
        value = compute()
        self.computed += 1
        size = value.numel() * value.element_size()
        if size <= self.max_bytes:
            self._kept[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, dropped = self._kept.popitem(last=False)
                self._bytes -= dropped.numel() * dropped.element_size()
        return value

    def clear(self) -> None:
        self._kept.clear()
        self._bytes = 0


STORE = SourceStore()  # one per process: the engine's, or a worker's
