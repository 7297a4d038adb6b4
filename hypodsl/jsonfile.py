"""Reading the JSON files a run directory holds: one-line errors that name the file, never a
traceback.

Every JSON file the project reads from a run directory or a command-line argument goes through
`read_json`: it must be a regular file (a FIFO would block, a link to /dev/zero would never end),
of bounded size, UTF-8, and valid JSON; a file with the wrong shape is reported by the field
that is wrong (`signature.json: field model.n_layers: ...`). `load_signature` also checks that
a signature holds what `hypo check` reads.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hypodsl.errors import UserError
from hypodsl.system_paths import is_system_path

MAX_JSON_BYTES = 64 * 1024 * 1024


class JsonFileError(UserError):
    """A JSON file that cannot be used; the message names the file and says why."""


def read_json(path: Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise JsonFileError(f"{path}: no such file") from None
    except OSError as e:
        raise JsonFileError(f"{path}: unreadable ({e.strerror})") from None
    if not stat.S_ISREG(info.st_mode) or is_system_path(path):
        raise JsonFileError(f"{path}: not a regular file")
    if info.st_size > max_bytes:
        raise JsonFileError(f"{path}: larger than {max_bytes >> 20} MB")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise JsonFileError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise JsonFileError(f"{path}: unreadable ({e.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise JsonFileError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    except RecursionError:
        raise JsonFileError(f"{path}: JSON nested too deeply") from None


def validated(path: Path, model: type[BaseModel], data: Any) -> Any:
    """`data` checked against `model`; the first wrong field is named in the error."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise JsonFileError(f"{path}: {first_wrong_field(e, '(the whole file)')}") from None


def first_wrong_field(error: ValidationError, whole: str) -> str:
    """The first error as "field `a.b`: message" (`whole` names a top-level one)."""
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or whole
    return f"field `{where}`: {first['msg']}"


class _SignatureModel(BaseModel):
    model_config = ConfigDict(extra="allow")

    n_layers: int = Field(ge=1, le=10_000)
    n_heads: int = Field(ge=1, le=10_000)
    d_ff: int = Field(ge=1, le=10**9)


class Signature(BaseModel):
    """What a spec may name in a run (the fields `hypo check` reads; others are kept)."""

    model_config = ConfigDict(extra="allow")

    model: _SignatureModel
    roles: list[str]
    splits: dict[str, int]
    checkpoints: list[int] = Field(min_length=1)


def load_signature(path: Path) -> dict[str, Any]:
    """The signature file at `path` (a run's signature.json), checked."""
    data = read_json(path)
    validated(path, Signature, data)
    return dict(data)
