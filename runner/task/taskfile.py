"""Reading and checking a task file, and writing it as a run's split files.

A task directory holds:

```
TASK/task.json      name, vocab_size, pad, role names, splits (the `TaskSpec` model)
TASK/SPLIT.jsonl    one JSON object per line: a sequence and the examples scored in it
```

A line is `{"tokens": [...], "examples": [{"position": P, "target": T, "roles": {...}}]}`: the
model's logits at position P are scored against target token T (P + 1 need not exist), and each
role names a position (a single role) or a list of positions (a set role) in that sequence.
`answer` is the scored position itself and may not be declared. The JSON Schema of both files
is `docs/task.schema.json` (`task_schema()`; a test keeps the committed copy current).

Every error names the file and, for a split file, the line: a role outside the sequence, an
undeclared role, a token outside the vocabulary, a sequence longer than the model's context.
"""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hypodsl.errors import UserError
from hypodsl.jsonfile import first_wrong_field, read_json, validated
from hypodsl.parser import reserved_words
from runner.atomic import atomic_write_bytes, atomic_write_text
from runner.kv.dataset import read_table_arrays
from runner.kv.roles import ReadTable

NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_SEQUENCES = 1_000_000


class TaskError(UserError):
    """A task file that is missing, malformed or inconsistent."""


class TaskSpec(BaseModel):
    """task.json: what a task's sequences are and which positions a spec may name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME, description="the task's name")
    vocab_size: int = Field(ge=2, le=10_000_000, description="tokens are 0 .. vocab_size - 1")
    pad: int = Field(0, ge=0, description="the token that pads shorter sequences")
    token_names: list[str] | None = Field(None, description="a name per token (default: ids)")
    roles: list[str] = Field(
        default_factory=list, description="roles that name one position in every example"
    )
    set_roles: list[str] = Field(
        default_factory=list, description="roles that name a set of positions (maybe empty)"
    )
    answer_tokens: tuple[int, int] | None = Field(
        None, description="(first token, count) an answer can be (default: the whole vocabulary)"
    )
    splits: list[str] = Field(min_length=1, description="split names; SPLIT.jsonl holds each")


class Example(BaseModel):
    """One scored position of a sequence."""

    model_config = ConfigDict(extra="forbid")

    position: int = Field(ge=0, description="the position whose next-token logits are scored")
    target: int = Field(ge=0, description="the token the model should predict there")
    roles: dict[str, int | list[int]] = Field(
        default_factory=dict, description="role name -> position (single) or positions (set)"
    )


class SequenceLine(BaseModel):
    """One line of SPLIT.jsonl: a sequence and its examples."""

    model_config = ConfigDict(extra="forbid")

    tokens: list[int] = Field(min_length=1)
    examples: list[Example] = Field(default_factory=list)


def task_schema() -> dict[str, Any]:
    """The JSON Schema of task.json and of one line of a split file."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "hypodsl task files",
        "description": (
            "TASK/task.json follows `task.json`; every line of TASK/SPLIT.jsonl follows `line`."
        ),
        "task.json": TaskSpec.model_json_schema(),
        "line": SequenceLine.model_json_schema(),
    }


def read_spec(task_dir: Path) -> TaskSpec:
    path = task_dir / "task.json"
    if not path.is_file():
        raise TaskError(f"{task_dir}: not a task directory (no task.json)")
    spec: TaskSpec = validated(path, TaskSpec, read_json(path))
    names = ["answer", *spec.roles, *spec.set_roles]
    for role in names[1:]:
        if not _is_name(role):
            raise TaskError(f"{path}: role `{role}` is not a name (letters, digits, _)")
        if role in reserved_words():
            raise TaskError(f"{path}: role `{role}` is a word of the spec language; rename it")
    duplicate = next((r for r in names if names.count(r) > 1), None)
    if duplicate is not None:
        why = "is the scored position" if duplicate == "answer" else "is declared twice"
        raise TaskError(f"{path}: role `{duplicate}` {why}")
    for split in spec.splits:
        if not _is_name(split) or split in reserved_words():
            raise TaskError(f"{path}: split `{split}` is not a name a spec can use")
    if spec.pad >= spec.vocab_size:
        raise TaskError(f"{path}: pad {spec.pad} is outside the vocabulary ({spec.vocab_size})")
    if spec.token_names is not None and len(spec.token_names) != spec.vocab_size:
        raise TaskError(f"{path}: {len(spec.token_names)} token_names for {spec.vocab_size} tokens")
    if spec.answer_tokens is not None:
        first, count = spec.answer_tokens
        if first < 0 or count < 1 or first + count > spec.vocab_size:
            raise TaskError(
                f"{path}: answer_tokens {list(spec.answer_tokens)} leave the vocabulary"
            )
    return spec


def _is_name(text: str) -> bool:
    return bool(text) and (text[0].isalpha() or text[0] == "_") and text.replace("_", "a").isalnum()


def read_split(task_dir: Path, spec: TaskSpec, split: str, n_ctx: int) -> dict[str, np.ndarray]:
    """A split file as the arrays of a split file (tokens, lengths, read table)."""
    path = task_dir / f"{split}.jsonl"
    try:
        info = path.stat()
    except OSError:
        raise TaskError(f"{path}: missing (task.json lists split `{split}`)") from None
    if not stat.S_ISREG(info.st_mode):
        raise TaskError(f"{path}: not a regular file")
    sequences: list[list[int]] = []
    rows: list[tuple[int, Example]] = []
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            line = _parse_line(path, number, raw)
            _check_line(path, number, line, spec, n_ctx)
            rows += [(len(sequences), ex) for ex in line.examples]
            sequences.append(line.tokens)
            if len(sequences) > MAX_SEQUENCES:
                raise TaskError(f"{path}: more than {MAX_SEQUENCES:,} sequences")
    if not rows:
        raise TaskError(f"{path}: no examples")
    max_len = max(len(s) for s in sequences)
    tokens = np.full((len(sequences), max_len), spec.pad, dtype=np.int64)
    for i, seq in enumerate(sequences):
        tokens[i, : len(seq)] = seq
    table = _read_table(rows, spec, max_len)
    return {
        "tokens": tokens,
        "lengths": np.array([len(s) for s in sequences], dtype=np.int64),
        **read_table_arrays(table),
    }


def _parse_line(path: Path, number: int, raw: bytes) -> SequenceLine:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TaskError(f"{path}:{number}: not a JSON object ({e})") from None
    try:
        return SequenceLine.model_validate(data)
    except ValidationError as e:
        raise TaskError(f"{path}:{number}: {first_wrong_field(e, '(the whole line)')}") from None


def _check_line(path: Path, number: int, line: SequenceLine, spec: TaskSpec, n_ctx: int) -> None:
    where = f"{path}:{number}"
    length = len(line.tokens)
    if length > n_ctx:
        raise TaskError(f"{where}: {length} tokens, more than the model's context ({n_ctx})")
    bad = next((t for t in line.tokens if not 0 <= t < spec.vocab_size), None)
    if bad is not None:
        raise TaskError(f"{where}: token {bad} is outside the vocabulary ({spec.vocab_size})")
    for i, ex in enumerate(line.examples):
        at = f"{where}: example {i}"
        if ex.position >= length:
            raise TaskError(
                f"{at}: position {ex.position} is outside the sequence ({length} tokens)"
            )
        if ex.target >= spec.vocab_size:
            raise TaskError(f"{at}: target {ex.target} is outside the vocabulary")
        for role, value in ex.roles.items():
            if role not in spec.roles and role not in spec.set_roles:
                declared = ", ".join([*spec.roles, *spec.set_roles]) or "none"
                raise TaskError(f"{at}: role `{role}` is not declared in task.json ({declared})")
            if (role in spec.roles) != isinstance(value, int):
                kind = "one position" if role in spec.roles else "a list of positions"
                raise TaskError(f"{at}: role `{role}` must be {kind}")
            for pos in [value] if isinstance(value, int) else value:
                if not 0 <= pos < length:
                    raise TaskError(
                        f"{at}: role `{role}` at position {pos} is outside the sequence "
                        f"({length} tokens)"
                    )
        missing = [r for r in spec.roles if r not in ex.roles]
        if missing:
            raise TaskError(f"{at}: no position for role `{missing[0]}`")


def _read_table(rows: list[tuple[int, Example]], spec: TaskSpec, max_len: int) -> ReadTable:
    n = len(rows)
    sets = {role: np.zeros((n, max_len), dtype=bool) for role in spec.set_roles}
    for j, (_, ex) in enumerate(rows):
        for role in spec.set_roles:
            positions = ex.roles.get(role, [])
            assert isinstance(positions, list)
            sets[role][j, positions] = True
    single = {"answer": np.array([ex.position for _, ex in rows], dtype=np.int64)}
    single.update(
        {r: np.array([ex.roles[r] for _, ex in rows], dtype=np.int64) for r in spec.roles}
    )
    return ReadTable(
        sequence=np.array([i for i, _ in rows], dtype=np.int64),
        target=np.array([ex.target for _, ex in rows], dtype=np.int64),
        single=single,
        sets=sets,
    )


def write_task_data(task_dir: Path, out: Path, n_ctx: int) -> dict[str, Any]:
    """Check the task in `task_dir` and write it to `out` as split files + dataset.json
    (the layout `runner.kv.dataset.load_split` reads); returns the manifest."""
    from safetensors.numpy import save

    spec = read_spec(task_dir)
    arrays = {split: read_split(task_dir, spec, split, n_ctx) for split in spec.splits}
    out.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for split, tensors in arrays.items():
        blob = save({k: np.ascontiguousarray(v) for k, v in tensors.items()})
        atomic_write_bytes(out / f"{split}.safetensors", blob)
        hashes[split] = hashlib.sha256(blob).hexdigest()
    names = spec.token_names or [str(t) for t in range(spec.vocab_size)]
    manifest = {
        "benchmark": f"task:{spec.name}",
        "config": spec.model_dump(mode="json"),
        "splits": {s: len(arrays[s]["tokens"]) for s in spec.splits},
        "sha256": hashes,
        "data_hash": hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest(),
        "roles": ["answer", *spec.roles],
        "set_roles": list(spec.set_roles),
        "token_names": names,
        "answer_tokens": list(spec.answer_tokens or (0, spec.vocab_size)),
    }
    atomic_write_text(out / "dataset.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


if __name__ == "__main__":  # python -m runner.task.taskfile > docs/task.schema.json
    print(json.dumps(task_schema(), indent=2))
