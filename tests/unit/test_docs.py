"""Every ```hyp example in the docs parses and compiles, so the docs cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hypodsl.compiler import compile_spec
from hypodsl.parser import parse

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "docs" / "language.md", ROOT / "README.md"]
PRELUDE = 'study "docs"\nprobe iid = split test_iid n 8\n'


def examples() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for i, block in enumerate(re.findall(r"```hyp\n(.*?)```", doc.read_text(), re.S)):
            found.append((f"{doc.name}#{i}", block))
    return found


@pytest.mark.parametrize(("where", "text"), examples(), ids=[w for w, _ in examples()])
def test_doc_example_parses_and_compiles(where: str, text: str):
    source = text if text.lstrip().startswith(("study", "#")) else PRELUDE + text
    plan = compile_spec(parse(source, where), source)
    assert plan.claims


def test_there_are_examples():
    assert len(examples()) >= 3
