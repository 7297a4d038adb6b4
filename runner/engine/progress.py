"""Progress reporting for long work: the engine names each phase and advances through it.

The engine only calls `phase` and `advance`; the CLI draws them as Rich progress bars, tests
and libraries pass nothing and get `Silent`.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def phase(self, name: str, total: int) -> None: ...

    def advance(self) -> None: ...


class Silent:
    def phase(self, name: str, total: int) -> None:
        pass

    def advance(self) -> None:
        pass
