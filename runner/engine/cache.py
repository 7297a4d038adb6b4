"""On-disk cache of per-read measurements, keyed by content hashes, verified on every read.

An entry is one quantity's per-read values (float64) or the reason it could not be measured, at
one checkpoint on one probe. Its key hashes everything the values depend on: the checkpoint
file's SHA-256 (and those of any other checkpoint the quantity reads), the probe's tokens, the
quantity, the seed, the device, the thread count (float32 sums can differ in their last bits
with it) and the package version. Nothing else is stored: activations never leave memory.

One entry is one file, `v2/KE/KEY.entry`: a JSON header line (`key`, `kind`, `n` values,
`sha256` of the payload) and the payload (little-endian float64 values, or the error's UTF-8
text). `get` returns an entry only when its header names its own key, its payload has the
length and checksum the header states and, for values, it holds one value per read of the
probe; anything else (a changed byte, a truncated file, a forged entry, a header nested too
deep to parse, a directory in its place) is a miss, counted in `rejected`, and the value is
measured again. No more of a file is read than its header promises. Writes are atomic (a
temporary file renamed into place), so a run killed mid-way, or two runs sharing the directory,
leave only complete entries. Entries of earlier formats (`v1/`) are never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from hypodsl import __version__
from runner.atomic import atomic_write_bytes

FORMAT = 2  # bump when a stored value's meaning or the file layout changes
ENV_VAR = "HYPODSL_CACHE"
DEFAULT_DIR = ".hypo-cache"


def default_dir() -> Path:
    """$HYPODSL_CACHE, else `.hypo-cache` in the working directory."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR)


def entry_key(**parts: object) -> str:
    """SHA-256 of the parts (JSON, sorted keys), with the format and package version."""
    blob = json.dumps({"format": FORMAT, "version": __version__, **parts}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


MAX_HEADER = 64 * 1024  # bytes of a header line; longer is not an entry of ours


class MeasurementCache:
    """Values or errors by key under `root`; with root None nothing is read or written."""

    def __init__(self, root: Path | None):
        self.root = root
        self.rejected = 0  # entries found but not trusted (and so recomputed)
        self.unwritten = 0  # entries that could not be stored

    def _path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / f"v{FORMAT}" / key[:2] / f"{key}.entry"

    def get(self, key: str, n_values: int | None = None) -> np.ndarray | str | None:
        """The stored values (1-D float64 array) or error (str), or None when absent or not
        trustworthy. With `n_values`, values of another length are not trusted either."""
        if self.root is None:
            return None
        path = self._path(key)
        if not os.path.lexists(path):
            return None
        entry = _read_entry(path, key)
        if entry is None or (
            isinstance(entry, np.ndarray) and n_values is not None and len(entry) != n_values
        ):
            self.rejected += 1
            return None
        return entry

    def put(self, key: str, value: np.ndarray | str) -> None:
        """Store an entry; a cache that cannot be written (a directory in the way, a full disk)
        leaves the result as it is and the value unstored."""
        if self.root is None:
            return
        if isinstance(value, str):
            kind, payload, n = "error", value.encode("utf-8"), len(value)
        else:
            array = np.ascontiguousarray(value, dtype="<f8").reshape(-1)
            kind, payload, n = "values", array.tobytes(), int(array.size)
        header = {"key": key, "kind": kind, "n": n, "sha256": hashlib.sha256(payload).hexdigest()}
        try:
            atomic_write_bytes(self._path(key), json.dumps(header).encode() + b"\n" + payload)
        except OSError:
            self.unwritten += 1

    def entries(self) -> list[Path]:
        if self.root is None or not (self.root / f"v{FORMAT}").is_dir():
            return []
        return sorted(p for p in (self.root / f"v{FORMAT}").rglob("*.entry"))

    def clear(self) -> int:
        """Remove every entry (of every format); return how many of the current format."""
        n = len(self.entries())
        if self.root is not None:
            for folder in self.root.glob("v[0-9]*"):
                if folder.is_dir() and not folder.is_symlink():
                    shutil.rmtree(folder)
        return n


def _read_entry(path: Path, key: str) -> np.ndarray | str | None:
    """The entry at `path` if it is a complete, unaltered entry for `key`, else None."""
    try:
        if not path.is_file() or path.is_symlink():
            return None
        with open(path, "rb") as f:
            header = json.loads(f.readline(MAX_HEADER))
            if not isinstance(header, dict) or header.get("key") != key:
                return None
            n, kind = header.get("n"), header.get("kind")
            if not isinstance(n, int) or n < 0 or kind not in ("error", "values"):
                return None
            most = 8 * n if kind == "values" else 4 * n  # bytes: n float64s, n UTF-8 characters
            # read(k) reserves k bytes first: never more than the header promises or the file has
            left = os.fstat(f.fileno()).st_size - f.tell()
            payload = f.read(min(most, left) + 1)
        if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
            return None
        if kind == "error":
            text = payload.decode("utf-8")
            return text if len(text) == n else None
        if len(payload) == 8 * n:
            return np.frombuffer(payload, dtype="<f8").astype(np.float64)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):  # deep JSON: RecursionError
        pass
    return None
