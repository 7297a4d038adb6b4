"""docs/own_model.md runs as written: its `hypo` commands and its Python snippets, in order, on
the tiny run (its paths replaced)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from hypodsl.cli import main

pytest.importorskip("transformers")
ray = pytest.importorskip("ray")

PAGE = Path(__file__).resolve().parents[2] / "docs" / "own_model.md"


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, in order."""
    return re.findall(r"```(sh|python)\n(.*?)```", text, re.S)


@pytest.fixture
def stop_ray():
    yield
    if ray.is_initialized():
        ray.shutdown()


def test_every_command_and_snippet_of_the_page_runs(tiny_run: Path, tmp_path: Path, stop_ray):
    text = re.sub(r"/tmp/([\w-]+)", lambda m: f"{tmp_path}/{m.group(1)}", PAGE.read_text())
    text = text.replace("runs/small", str(tiny_run))
    found = blocks(text)
    assert [lang for lang, _ in found].count("sh") == 4 and len(found) == 9
    namespace: dict[str, object] = {}
    for lang, body in found:
        if lang == "sh":
            for line in body.strip().splitlines():
                argv = shlex.split(line)
                assert argv[0] == "hypo" and main(argv[1:]) == 0, line
        else:
            exec(compile(body, str(PAGE), "exec"), namespace)
    assert (tmp_path / "hf-small-all").is_dir() and (tmp_path / "imported-small").is_dir()
    assert (tmp_path / "two-back-run" / "data" / "held.safetensors").is_file()
    assert (tmp_path / "seed-matrix" / "seed-2" / "checkpoints" / "step_000060.json").is_file()
    assert namespace["float64"] < 1e-10  # type: ignore[operator]
