"""Random and mutated inputs raise only the project's own error type, never anything else."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from hypodsl.compiler import compile_spec
from hypodsl.errors import HypError, flatten
from hypodsl.parser import parse
from tests.unit.test_checks import REFERENCE_SIGNATURE

SPECS = Path(__file__).resolve().parents[2] / "specs"
ALPHABET = [*list('abcdLHmlp0123456789._-><=|(){}[],:#"\\ \n'), "->", "<-", "..", "claim", "at"]


GRAMMAR_TERMINALS = re.compile(
    r"\$END|__ANON|\b(COMPARATOR|NAME|INT|NUMBER|STRING|VERDICT|LPAR|"
    r"RPAR|LBRACE|RBRACE|HEAD_INPUT|HEAD|AGGREGATE|CORRECTION)\b"
)


def check(text: str) -> None:
    try:
        spec = parse(text, "fuzz.hyp")
        compile_spec(spec, text, REFERENCE_SIGNATURE, loader=_no_imports)
        compile_spec(spec, text, None, loader=_no_imports)
    except HypError as e:
        for err in flatten(e):
            assert not GRAMMAR_TERMINALS.search(err.message), err.message
            assert err.pos is not None and err.pos.line >= 1 and err.pos.column >= 1


def _no_imports(path: Path):
    raise OSError("imports are not followed while fuzzing")


def mutate(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(chars) + 1)
        action = rng.random()
        if action < 0.4 and chars:
            del chars[min(i, len(chars) - 1)]
        elif action < 0.8:
            chars.insert(i, rng.choice(ALPHABET))
        elif chars:
            j = rng.randrange(len(chars))
            chars[min(i, len(chars) - 1)], chars[j] = chars[j], chars[min(i, len(chars) - 1)]
    return "".join(chars)


@pytest.mark.filterwarnings("error")
def test_thousands_of_mutated_specs_raise_only_hyp_errors():
    rng = random.Random(0)
    seeds = [p.read_text() for p in sorted(SPECS.glob("*.hyp"))]
    for _ in range(3000):
        check(mutate(rng, rng.choice(seeds)))


@pytest.mark.filterwarnings("error")
def test_random_token_soup_raises_only_hyp_errors():
    rng = random.Random(1)
    for _ in range(2000):
        check("".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 60))))
