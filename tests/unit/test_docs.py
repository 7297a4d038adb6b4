"""Every ```hyp example in the docs parses and compiles, so the docs cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hypodsl.compiler import compile_spec
from hypodsl.parser import parse
from hypodsl.plan import Plan

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
    plan = compile_spec(parse(source, where), source, loader=_from_specs)
    assert plan.claims
    assert Plan.model_validate_json(plan.model_dump_json()) == plan  # lossless JSON


def _from_specs(path: Path):
    """Imports in the docs name files of specs/."""
    real = ROOT / "specs" / path.name
    return real.read_text()


def test_there_are_examples():
    assert len(examples()) >= 3


def test_the_examples_use_every_keyword_of_the_grammar():
    grammar = (ROOT / "grammar" / "hyp.lark").read_text()
    keywords = set(re.findall(r'"([a-z_]+)"', grammar))
    examples_text = "\n".join(text for _, text in examples())
    missing = {k for k in keywords if not re.search(rf"\b{k}\b", examples_text)}
    assert not missing, f"docs/language.md has no example using: {sorted(missing)}"


def test_the_python_examples_of_the_quantities_doc_run():
    text = (ROOT / "docs" / "quantities.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/quantities.md", "exec"), {})
