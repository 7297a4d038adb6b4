"""Opening files that a user, or a file a user wrote, names: regular files only, sizes bounded
before a byte is read, and a safetensors header checked before any tensor is.

A FIFO would block a read forever, a link to /dev/zero would never end, and files under /proc
or /sys pose as regular files. A safetensors file starts with the length of its JSON header (a
little-endian u64) and the header gives every tensor's dtype, shape and byte range: reading the
header alone tells what loading the file would allocate, so a hostile file is refused unloaded.
Nothing here unpickles.
"""

from __future__ import annotations

import json
import math
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypodsl.errors import UserError
from hypodsl.system_paths import is_system_path

MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_DIMS = 8
FLOAT_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
OTHER_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "I32": 4, "U32": 4, "I64": 8,
                "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}  # fmt: skip


class FileRefused(UserError):
    """A path that is not a file of the kind and size expected; the message names it."""


def regular_file_size(path: Path, what: str = "file", error: type[UserError] = FileRefused) -> int:
    """The size of `path` if it is a regular file (a link is followed only to one); else
    `error` (a caller's own type, where its callers catch that type)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise error(f"{path}: {what} missing") from None
    except OSError as e:
        raise error(f"{path}: {what} unreadable ({e.strerror or e})") from None
    if not stat.S_ISREG(info.st_mode) or is_system_path(path):
        raise error(f"{path}: {what} is not a regular file")
    return info.st_size


def read_bounded(
    path: Path, max_bytes: int, what: str = "file", error: type[UserError] = FileRefused
) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (checked before reading, and again
    while reading, in case it grew)."""
    size = regular_file_size(path, what, error)
    if size > max_bytes:
        raise error(f"{path}: {what} larger than {_in_units(max_bytes)}")
    try:
        with path.open("rb") as f:
            # read(n) reserves n bytes before reading: ask for what the file holds, then for
            # what a file that grew since may add, never for the whole bound at once
            data = f.read(size + 1)
            if len(data) > size:
                data += f.read(max_bytes + 1 - len(data))
    except OSError as e:
        raise error(f"{path}: {what} unreadable ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise error(f"{path}: {what} larger than {_in_units(max_bytes)}")
    return data


def _in_units(n: int) -> str:
    return f"{n >> 30} GiB" if n >= 1 << 30 else f"{n >> 20} MiB" if n >= 1 << 20 else f"{n} bytes"


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as a safetensors header describes it."""

    dtype: str
    shape: tuple[int, ...]


def safetensors_header(path: Path) -> dict[str, TensorEntry]:
    """The tensors a safetensors file holds (name -> dtype, shape), read from its header only;
    every byte range is checked to lie in the file and to fit its dtype and shape."""
    size = regular_file_size(path, "safetensors file")
    if size < 8:
        raise FileRefused(f"{path}: not a safetensors file ({size} bytes, no header)")
    try:
        with path.open("rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if length > MAX_HEADER_BYTES or 8 + length > size:
                raise FileRefused(
                    f"{path}: not a safetensors file (a header of {length} bytes in a file of "
                    f"{size}; at most {_in_units(MAX_HEADER_BYTES)})"
                )
            raw = f.read(length)
    except OSError as e:
        raise FileRefused(f"{path}: safetensors file unreadable ({e.strerror or e})") from None
    header = _parse_header(path, raw)
    data_bytes = size - 8 - length
    return {
        name: _entry(path, name, value, data_bytes)
        for name, value in header.items()
        if name != "__metadata__"
    }


def _parse_header(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise FileRefused(f"{path}: safetensors header is not JSON ({e})") from None
    except RecursionError:
        raise FileRefused(f"{path}: safetensors header nested too deeply") from None
    if not isinstance(header, dict):
        raise FileRefused(f"{path}: safetensors header is not a JSON object")
    return header


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when a key appears twice (json.loads would keep the last)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key!r} appears twice")
        result[key] = value
    return result


def _entry(path: Path, name: str, value: Any, data_bytes: int) -> TensorEntry:
    where = f"{path}: tensor `{name}`"
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data_offsets"}:
        raise FileRefused(f"{where}: needs exactly dtype, shape and data_offsets")
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    itemsize = FLOAT_DTYPES.get(dtype) or OTHER_DTYPES.get(dtype)
    if itemsize is None:
        raise FileRefused(f"{where}: unknown dtype {dtype!r}")
    if not (isinstance(shape, list) and len(shape) <= MAX_DIMS and all(map(_count, shape))):
        raise FileRefused(f"{where}: shape {shape!r} is not a list of sizes >= 0")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_count, offsets))):
        raise FileRefused(f"{where}: data_offsets {offsets!r} is not [begin, end]")
    begin, end = offsets
    if not begin <= end <= data_bytes or end - begin != math.prod(shape) * itemsize:
        raise FileRefused(
            f"{where}: bytes {begin}..{end} do not hold a {dtype} tensor of shape {shape} "
            f"inside the file's {data_bytes} data bytes"
        )
    return TensorEntry(dtype, tuple(shape))


def _count(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0
