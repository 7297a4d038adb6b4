"""The Pygments lexer covers every spec without error tokens; `hypo fmt --stdout` uses it."""

from __future__ import annotations

from pathlib import Path

from pygments.token import Error, Keyword, Name

from hypodsl.cli import main
from hypodsl.highlight import HypLexer

SPECS = Path(__file__).resolve().parents[2] / "specs"


def test_every_spec_lexes_without_error_tokens():
    for path in SPECS.glob("*.hyp"):
        tokens = list(HypLexer().get_tokens(path.read_text()))
        assert not [t for t in tokens if t[0] is Error], path.name


def test_components_and_keywords_get_their_own_tokens():
    tokens = dict((v, t) for t, v in HypLexer().get_tokens('claim a "t" { at final on iid: x }'))
    assert tokens["claim"] is Keyword and tokens["final"] is Keyword
    tokens = {v: t for t, v in HypLexer().get_tokens("path p = L1.H2.k -> L2.mlp")}
    assert tokens["L1.H2.k"] is Name.Class and tokens["L2.mlp"] is Name.Class


def test_fmt_stdout_prints_and_leaves_the_file_alone(tmp_path: Path, capsys):
    spec = tmp_path / "s.hyp"
    spec.write_text('study   "S"\n')
    assert main(["fmt", "--stdout", str(spec)]) == 0
    assert 'study "S"' in capsys.readouterr().out
    assert spec.read_text() == 'study   "S"\n'


def test_the_lexer_knows_every_keyword_of_the_grammar():
    import re

    from hypodsl.highlight import CONSTANTS, KEYWORDS

    grammar = (SPECS.parent / "grammar" / "hyp.lark").read_text()
    literals = set(re.findall(r'"([a-z_]+)"', grammar))
    assert literals <= set(KEYWORDS) | set(CONSTANTS)
