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
undeclared role, a token outside the vocabulary or a target outside the answer tokens, a
sequence longer than the model's context, `true` where a token or position belongs (JSON's
booleans are not numbers here). Sizes are bounded before anything is allocated: a split file's
bytes and lines, its sequences and examples, and the arrays they make; and the whole task is
read and checked before a byte is written.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from hypodsl.errors import UserError
from hypodsl.jsonfile import first_wrong_field, read_json, validated
from hypodsl.parser import reserved_words
from runner.atomic import atomic_write_bytes, atomic_write_text
from runner.kv.dataset import read_table_arrays
from runner.kv.roles import ReadTable
from runner.safe_files import regular_file_size

NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_SEQUENCES = 1_000_000
MAX_EXAMPLES = 2_000_000
MAX_SPLIT_BYTES = 512 * 1024 * 1024
MAX_LINE_BYTES = 16 * 1024 * 1024
MAX_CELLS = 1 << 28  # of the token array (int64, 2 GiB) and of each set role's (bool)


class TaskError(UserError):
    """A task file that is missing, malformed or inconsistent."""


class TaskSpec(BaseModel):
    """task.json: what a task's sequences are and which positions a spec may name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME, description="the task's name")
    vocab_size: StrictInt = Field(ge=2, le=10_000_000, description="tokens are 0 .. vocab_size - 1")
    pad: StrictInt = Field(0, ge=0, description="the token that pads shorter sequences")
    token_names: list[str] | None = Field(None, description="a name per token (default: ids)")
    roles: list[str] = Field(
        default_factory=list, description="roles that name one position in every example"
    )
    set_roles: list[str] = Field(
        default_factory=list, description="roles that name a set of positions (maybe empty)"
    )
    answer_tokens: tuple[StrictInt, StrictInt] | None = Field(
        None, description="(first token, count) an answer can be (default: the whole vocabulary)"
    )
    splits: list[str] = Field(min_length=1, description="split names; SPLIT.jsonl holds each")


class Example(BaseModel):
    """One scored position of a sequence."""

    model_config = ConfigDict(extra="forbid")

    position: StrictInt = Field(ge=0, description="the position whose next-token logits are scored")
    target: StrictInt = Field(ge=0, description="the token the model should predict there")
    roles: dict[str, StrictInt | list[StrictInt]] = Field(
        default_factory=dict, description="role name -> position (single) or positions (set)"
    )


class SequenceLine(BaseModel):
    """One line of SPLIT.jsonl: a sequence and its examples."""

    model_config = ConfigDict(extra="forbid")

    tokens: list[StrictInt] = Field(min_length=1)
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
    if not os.path.lexists(path):
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
        if spec.splits.count(split) > 1:
            raise TaskError(f"{path}: split `{split}` is listed twice")
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
    if not os.path.lexists(path):
        raise TaskError(f"{path}: missing (task.json lists split `{split}`)")
    if regular_file_size(path, "split file") > MAX_SPLIT_BYTES:
        raise TaskError(f"{path}: larger than {MAX_SPLIT_BYTES >> 20} MiB")
    sequences: list[list[int]] = []
    rows: list[tuple[int, Example]] = []
    with path.open("rb") as f:
        for number, raw in enumerate(iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""), 1):
            if len(raw) > MAX_LINE_BYTES:
                raise TaskError(f"{path}:{number}: a line longer than {MAX_LINE_BYTES >> 20} MiB")
            if not raw.strip():
                continue
            line = _parse_line(path, number, raw)
            _check_line(path, number, line, spec, n_ctx)
            rows += [(len(sequences), ex) for ex in line.examples]
            sequences.append(line.tokens)
            if len(sequences) > MAX_SEQUENCES or len(rows) > MAX_EXAMPLES:
                raise TaskError(
                    f"{path}:{number}: more than {MAX_SEQUENCES:,} sequences or "
                    f"{MAX_EXAMPLES:,} examples"
                )
    if not rows:
        raise TaskError(f"{path}: no examples")
    max_len = max(len(s) for s in sequences)
    _check_array_sizes(path, len(sequences), len(rows), max_len, spec)
    tokens = np.full((len(sequences), max_len), spec.pad, dtype=np.int64)
    for i, seq in enumerate(sequences):
        tokens[i, : len(seq)] = seq
    table = _read_table(rows, spec, max_len)
    return {
        "tokens": tokens,
        "lengths": np.array([len(s) for s in sequences], dtype=np.int64),
        **read_table_arrays(table),
    }


def _check_array_sizes(path: Path, sequences: int, rows: int, max_len: int, spec: TaskSpec) -> None:
    """Refuse a split whose arrays (sequences x longest, examples x longest per set role)
    would be too large to hold, before they are allocated."""
    for what, count in (("sequences", sequences), ("examples", rows if spec.set_roles else 0)):
        if count * max_len > MAX_CELLS:
            raise TaskError(
                f"{path}: {count:,} {what} padded to {max_len} positions is more than "
                f"{MAX_CELLS:,} cells; split the file or shorten its longest sequence"
            )


def _parse_line(path: Path, number: int, raw: bytes) -> SequenceLine:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TaskError(f"{path}:{number}: not a JSON object ({e})") from None
    except RecursionError:
        raise TaskError(
            f"{path}:{number}: JSON nested too deeply (a line is one flat object)"
        ) from None
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
        if spec.answer_tokens is not None:
            first, count = spec.answer_tokens
            if not first <= ex.target < first + count:
                raise TaskError(
                    f"{at}: target {ex.target} is not an answer token (task.json's "
                    f"answer_tokens: {first} .. {first + count - 1})"
                )
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


@dataclass(frozen=True)
class LoadedTask:
    """A task directory read and checked: its spec and every split's arrays."""

    spec: TaskSpec
    arrays: dict[str, dict[str, np.ndarray]]


def load_task(task_dir: Path, n_ctx: int, vocab_size: int | None = None) -> LoadedTask:
    """Read and check the task in `task_dir` for a model of context `n_ctx` and (when given)
    vocabulary `vocab_size`; nothing is written."""
    spec = read_spec(task_dir)
    if vocab_size is not None and spec.vocab_size > vocab_size:
        raise TaskError(
            f"{task_dir / 'task.json'}: vocab_size {spec.vocab_size} is larger than the "
            f"model's ({vocab_size})"
        )
    arrays = {split: read_split(task_dir, spec, split, n_ctx) for split in spec.splits}
    return LoadedTask(spec, arrays)


def write_task(task: LoadedTask, out: Path) -> dict[str, Any]:
    """Write a loaded task to `out` as split files + dataset.json (the layout
    `runner.kv.dataset.load_split` reads); returns the manifest."""
    from safetensors.numpy import save

    spec = task.spec
    out.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for split, tensors in task.arrays.items():
        blob = save({k: np.ascontiguousarray(v) for k, v in tensors.items()})
        atomic_write_bytes(out / f"{split}.safetensors", blob)
        hashes[split] = hashlib.sha256(blob).hexdigest()
    names = spec.token_names or [str(t) for t in range(spec.vocab_size)]
    manifest = {
        "benchmark": f"task:{spec.name}",
        "config": spec.model_dump(mode="json"),
        "splits": {s: len(task.arrays[s]["tokens"]) for s in spec.splits},
        "sha256": hashes,
        "data_hash": hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest(),
        "roles": ["answer", *spec.roles],
        "set_roles": list(spec.set_roles),
        "token_names": names,
        "answer_tokens": list(spec.answer_tokens or (0, spec.vocab_size)),
    }
    atomic_write_text(out / "dataset.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def write_task_data(task_dir: Path, out: Path, n_ctx: int) -> dict[str, Any]:
    """Check the task in `task_dir` and write it to `out` (`load_task`, then `write_task`)."""
    return write_task(load_task(task_dir, n_ctx), out)


if __name__ == "__main__":  # python -m runner.task.taskfile > docs/task.schema.json
    print(json.dumps(task_schema(), indent=2))
