"""On-disk cache of per-read measurements, keyed by content hashes.

An entry is one quantity's per-read values (float64 .npy, never pickled) or the reason it could
not be measured (.json), at one checkpoint on one probe. Its key hashes everything the values
depend on: the checkpoint file's SHA-256 (and those of any other checkpoint the quantity reads),
the probe's tokens, the quantity, the seed, the device, the thread count (float32 sums can
differ in their last bits with it) and the package version. Nothing else is
stored: activations never leave memory.

Writes are atomic (a temporary file renamed into place), so a run killed mid-way, or two runs
sharing the directory, leave only complete entries; an entry that cannot be read is treated as
missing and recomputed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np

from hypodsl import __version__
from runner.atomic import atomic_write_bytes, atomic_write_text

FORMAT = 1  # bump when a stored value's meaning changes
ENV_VAR = "HYPODSL_CACHE"
DEFAULT_DIR = ".hypo-cache"


def default_dir() -> Path:
    """$HYPODSL_CACHE, else `.hypo-cache` in the working directory."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR)


def entry_key(**parts: object) -> str:
    """SHA-256 of the parts (JSON, sorted keys), with the format and package version."""
    blob = json.dumps({"format": FORMAT, "version": __version__, **parts}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class MeasurementCache:
    """Values or errors by key under `root`; with root None nothing is read or written."""

    def __init__(self, root: Path | None):
        self.root = root

    def _path(self, key: str, suffix: str) -> Path:
        assert self.root is not None
        return self.root / "v1" / key[:2] / f"{key}{suffix}"

    def get(self, key: str) -> np.ndarray | str | None:
        """The stored values (array) or error (str), or None when absent or unreadable."""
        if self.root is None:
            return None
        values, error = self._path(key, ".npy"), self._path(key, ".json")
        try:
            if values.exists():
                return np.load(values, allow_pickle=False)
            if error.exists():
                return str(json.loads(error.read_text())["error"])
        except (OSError, ValueError, KeyError, EOFError):
            return None  # torn by something other than us: recompute it
        return None

    def put(self, key: str, value: np.ndarray | str) -> None:
        if self.root is None:
            return
        if isinstance(value, str):
            atomic_write_text(self._path(key, ".json"), json.dumps({"error": value}) + "\n")
            return
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(value, dtype=np.float64), allow_pickle=False)
        atomic_write_bytes(self._path(key, ".npy"), buffer.getvalue())

    def entries(self) -> list[Path]:
        if self.root is None or not (self.root / "v1").is_dir():
            return []
        return sorted(p for p in (self.root / "v1").rglob("*") if p.suffix in (".npy", ".json"))

    def clear(self) -> int:
        """Remove every entry; return how many there were."""
        n = len(self.entries())
        if self.root is not None and (self.root / "v1").is_dir():
            shutil.rmtree(self.root / "v1")
        return n
