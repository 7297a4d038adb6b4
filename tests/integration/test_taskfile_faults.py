"""Fault injection at task files (`hypo import --task`): every hostile task.json or split line is
a one-line error naming the file (and line), exit 2, before anything is written: JSON booleans
where numbers belong, targets outside the answer tokens, nesting that would exhaust the stack,
files that are not files, sizes that would exhaust memory. Then a seeded fuzz of both files."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest

from hypodsl.cli import main
from runner.task import taskfile
from tests.integration.fault_helpers import LINE, refused, write_series, write_task


def import_task(tmp_path: Path, capsys, task: Path, message: str) -> str:
    out = tmp_path / "out"
    args = ["import", str(tmp_path / "hf"), "--task", str(task), "--out", str(out)]
    return refused(capsys, args, tmp_path, out, message)


@pytest.fixture
def series(tmp_path: Path) -> Path:
    return write_series(tmp_path / "hf")


def example(**fields: object) -> dict:
    return {"tokens": [1, 2, 3, 4], "examples": [LINE["examples"][0] | fields]}


# Seeded fuzz cases: 1,500 in the suite, more with `make fuzz` (HYPO_FUZZ_CASES).
FUZZ_CASES = int(os.environ.get("HYPO_FUZZ_CASES", "1500"))

DEEP = '{"tokens": ' + "[" * 100_000 + "]" * 100_000 + "}"
LINE_CASES = {  # the second line of held.jsonl, and what its error says after `held.jsonl:2: `
    "nested 100,000 deep": (DEEP, "JSON nested too deeply"),
    "nested 500 deep": ('{"tokens": ' + "[" * 500 + "]" * 500 + "}", "field `tokens.0`"),
    "a token true": ({"tokens": [1, True, 3]}, "field `tokens.1`: Input should be a valid int"),
    "a token false": ({"tokens": [False]}, "field `tokens.0`"),
    "a token a string": ({"tokens": [1, "2"]}, "field `tokens.1`"),
    "a token a float": ({"tokens": [1, 2.0]}, "field `tokens.1`"),
    "a token NaN": ('{"tokens": [1, NaN]}', "field `tokens.1`"),
    "a token Infinity": ('{"tokens": [Infinity]}', "field `tokens.0`"),
    "a token 10^30": ({"tokens": [10**30]}, f"token {10**30} is outside the vocabulary (10)"),
    "a token negative": ({"tokens": [1, -1]}, "token -1 is outside the vocabulary"),
    "a position true": (example(position=True), "field `examples.0.position`"),
    "a target true": (example(target=True), "field `examples.0.target`"),
    "a role true": (example(roles={"prev": True}), "field `examples.0.roles.prev"),
    "a role a float": (example(roles={"prev": 1.0}), "field `examples.0.roles.prev"),
    "a role a list": (example(roles={"prev": [1]}), "example 0: role `prev` must be one position"),
    "a role negative": (
        example(roles={"prev": -1}),
        "example 0: role `prev` at position -1 is outside",
    ),
    "a position 10^30": (
        example(position=10**30),
        "example 0: position 10" + "0" * 29 + " is outside",
    ),
    "a target outside the vocabulary": (
        example(target=10),
        "example 0: target 10 is outside the vocab",
    ),
    "a role of another task": (
        example(roles={"prev": 1, "x": 0}),
        "example 0: role `x` is not declared",
    ),
    "an unknown field": ({"tokens": [1], "weight": 2}, "field `weight`: Extra inputs"),
    "null": ("null", "field `(the whole line)`"),
    "an array": ("[1, 2]", "field `(the whole line)`"),
    "a string": ('"tokens"', "field `(the whole line)`"),
    "not UTF-8": (b'{"tokens": [1]}\xff', "not a JSON object"),
    "two objects": ('{"tokens": [1]} {"tokens": [2]}', "not a JSON object (Extra data"),
    "an empty sequence": ({"tokens": []}, "field `tokens`: List should have at least 1"),
    "examples not a list": ({"tokens": [1], "examples": {}}, "field `examples`"),
}


@pytest.mark.parametrize("case", list(LINE_CASES), ids=list(LINE_CASES))
def test_a_hostile_line_is_refused_naming_file_and_line(tmp_path, capsys, series, case):
    line, message = LINE_CASES[case]
    task = write_task(tmp_path / "task")
    raw = line if isinstance(line, bytes) else (line if isinstance(line, str) else json.dumps(line))
    with (task / "held.jsonl").open("ab") as f:
        f.write(raw if isinstance(raw, bytes) else raw.encode())
    import_task(tmp_path, capsys, task, f"held.jsonl:2: {message}")


def answer_task(tmp_path: Path, target: int) -> Path:
    return write_task(tmp_path / "task", [example(target=target)], answer_tokens=[5, 3])


@pytest.mark.parametrize("target", [4, 8])
def test_a_target_outside_the_answer_tokens_is_refused(tmp_path, capsys, series, target):
    import_task(
        tmp_path,
        capsys,
        answer_task(tmp_path, target),
        f"held.jsonl:1: example 0: target {target} is not an answer token (task.json's "
        "answer_tokens: 5 .. 7)",
    )


def test_a_target_among_the_answer_tokens_imports(tmp_path, series):
    task = answer_task(tmp_path, 7)
    assert main(["import", str(series), "--task", str(task), "--out", str(tmp_path / "o")]) == 0


SPEC_CASES = {  # task.json fields, and what its error says after `task.json: `
    "vocab_size true": ({"vocab_size": True}, "field `vocab_size`"),
    "vocab_size a string": ({"vocab_size": "10"}, "field `vocab_size`"),
    "vocab_size a float": ({"vocab_size": 10.0}, "field `vocab_size`"),
    "pad true": ({"pad": True}, "field `pad`"),
    "answer_tokens of booleans": ({"answer_tokens": [True, 2]}, "field `answer_tokens.0`"),
    "answer_tokens empty range": ({"answer_tokens": [0, 0]}, "answer_tokens [0, 0] leave"),
    "answer_tokens negative": ({"answer_tokens": [-1, 3]}, "answer_tokens [-1, 3] leave"),
    "a split twice": ({"splits": ["held", "held"]}, "split `held` is listed twice"),
    "a split that is a path": ({"splits": ["../held"]}, "split `../held` is not a name"),
    "a role that is a path": ({"roles": ["../x"]}, "role `../x` is not a name"),
    "a role in both lists": ({"set_roles": ["prev"]}, "role `prev` is declared twice"),
    "token_names too few": ({"token_names": ["a"]}, "1 token_names for 10 tokens"),
    "no splits": ({"splits": []}, "field `splits`"),
    "an unknown field": ({"vocabulary": 10}, "field `vocabulary`: Extra inputs"),
}


@pytest.mark.parametrize("case", list(SPEC_CASES), ids=list(SPEC_CASES))
def test_a_hostile_task_json_is_refused(tmp_path, capsys, series, case):
    spec, message = SPEC_CASES[case]
    task = write_task(tmp_path / "task", **spec)
    import_task(tmp_path, capsys, task, f"task.json: {message}")


def replace_with(kind: str, path: Path) -> None:
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "proc":
        path.symlink_to("/proc/self/environ")
    elif kind == "directory":
        path.mkdir()


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "proc", "directory", "missing"])
@pytest.mark.parametrize("name", ["task.json", "held.jsonl"])
def test_a_task_file_that_is_not_a_file_is_refused(tmp_path, capsys, series, name, kind):
    task = write_task(tmp_path / "task")
    replace_with(kind, task / name)
    expected = {"missing": "task: not a task directory" if name == "task.json" else "missing"}
    import_task(tmp_path, capsys, task, expected.get(kind, f"{name}:"))


def test_a_nested_task_json_is_refused(tmp_path, capsys, series):
    task = write_task(tmp_path / "task")
    (task / "task.json").write_text("[" * 100_000)
    import_task(tmp_path, capsys, task, "task.json: JSON nested too deeply")


BOUNDS = {  # a bound lowered, the lines that exceed it, and the error
    "MAX_LINE_BYTES": (100, [LINE, {"tokens": [1] * 60}], "held.jsonl:2: a line longer than"),
    "MAX_SPLIT_BYTES": (100, [LINE, LINE, LINE], "held.jsonl: larger than"),
    "MAX_SEQUENCES": (2, [LINE, LINE, LINE], "held.jsonl:3: more than 2 sequences"),
    "MAX_EXAMPLES": (1, [LINE, LINE], "held.jsonl:2: more than"),
    "MAX_CELLS": (7, [LINE, LINE], "held.jsonl: 2 sequences padded to 4 positions"),
}


@pytest.mark.parametrize("bound", list(BOUNDS), ids=list(BOUNDS))
def test_a_task_too_large_to_hold_is_refused_before_allocating(
    tmp_path, capsys, series, monkeypatch, bound
):
    value, lines, message = BOUNDS[bound]
    monkeypatch.setattr(taskfile, bound, value)
    import_task(tmp_path, capsys, write_task(tmp_path / "task", lines), message)


def test_a_split_without_examples_is_refused(tmp_path, capsys, series):
    task = write_task(tmp_path / "task", [{"tokens": [1, 2]}])
    import_task(tmp_path, capsys, task, "held.jsonl: no examples")


# --- fuzz ---------------------------------------------------------------------------------------

VALUES = [0, 1, 3, 9, 10, -1, 10**30, True, None, "1", 1.5, [], [1], {}, {"prev": 1}, "prev"]


def mutate(rng: random.Random, value: object, depth: int = 0) -> object:
    """`value` with one part replaced by a value of another kind (or dropped)."""
    if isinstance(value, dict) and value and depth < 4:
        key = rng.choice(list(value))
        if rng.random() < 0.2:
            return {k: v for k, v in value.items() if k != key}
        return value | {key: mutate(rng, value[key], depth + 1)}
    if isinstance(value, list) and value and depth < 4:
        i = rng.randrange(len(value))
        return [*value[:i], mutate(rng, value[i], depth + 1), *value[i + 1 :]]
    return rng.choice(VALUES)


def fuzzed_task(rng: random.Random, root: Path) -> Path:
    spec = {"name": "t", "vocab_size": 10, "roles": ["prev"], "splits": ["held"]}
    lines: list[object] = [LINE, example(position=3, target=2, roles={"prev": 0})]
    if rng.random() < 0.3:
        spec = mutate(rng, spec)  # type: ignore[assignment]
    else:
        i = rng.randrange(len(lines))
        lines[i] = mutate(rng, lines[i])
    task = write_task(root, lines)
    (task / "task.json").write_text(json.dumps(spec))
    if rng.random() < 0.15:  # a byte-level fault on top
        path = task / rng.choice(["task.json", "held.jsonl"])
        data = path.read_bytes()
        i = rng.randrange(len(data))
        path.write_bytes(data[:i] + bytes([rng.randrange(256)]) + data[i + 1 :])
    return task


def test_fuzzed_task_files_end_in_success_or_one_line(tmp_path, capsys, series):
    rng = random.Random(7)
    outcomes = {0: 0, 2: 0}
    for case in range(FUZZ_CASES):
        task = fuzzed_task(rng, tmp_path / f"task{case}")
        out = tmp_path / f"out{case}"
        started = time.monotonic()
        code = main(["import", str(series), "--task", str(task), "--out", str(out)])
        err = capsys.readouterr().err
        files = {p.name: p.read_bytes() for p in task.iterdir()}
        assert time.monotonic() - started < 10, files
        assert code in (0, 2) and "Traceback" not in err, (files, err)
        if code == 2:
            assert len(err.strip().splitlines()) == 1 and str(task) in err, (files, err)
            assert not out.exists()
        outcomes[code] += 1
    assert outcomes[0] > 10 and outcomes[2] > 100, outcomes  # the fuzz reaches both
