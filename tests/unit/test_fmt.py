"""`hypo fmt`: parse(fmt(s)) == parse(s) and fmt(fmt(s)) == fmt(s), on the bundled specs and on
random valid specs; comments survive."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypodsl import syntax as s
from hypodsl.cli import main
from hypodsl.errors import SourcePosition
from hypodsl.formatter import fmt
from hypodsl.highlight import CONSTANTS as LEXER_CONSTANTS
from hypodsl.highlight import KEYWORDS as LEXER_KEYWORDS
from hypodsl.parser import parse

SPECS = Path(__file__).resolve().parents[2] / "specs"
P = SourcePosition("gen", 1, 1, 1, 1)  # positions take no part in equality


def test_bundled_specs_are_canonical_and_round_trip():
    paths = sorted(SPECS.rglob("*.hyp"))
    assert any(path.parent.name == "reference" for path in paths)  # pending "why" is there
    for path in paths:
        text = path.read_text()
        tree = parse(text, str(path))
        assert fmt(tree) == text, f"{path.name} is not in canonical layout (run `hypo fmt`)"
        assert parse(fmt(tree)) == tree


def test_comments_are_kept_and_formatting_is_idempotent():
    text = """# leading
study "S"   # after study
probe   iid = split test_iid n 8
claim a "t" {   # header
  # before prediction
  at final on iid:
      accuracy > 0.5   # continuation
  at first on iid: ((accuracy)) - (0.1 + 0.2) > -(1) # tail
}
# the end
"""
    out = fmt(parse(text))
    for comment in (
        "# leading",
        "# after study",
        "# header",
        "# before prediction",
        "# continuation",
        "# tail",
        "# the end",
    ):
        assert comment in out
    assert "  at first on iid: accuracy - (0.1 + 0.2) > -1  # tail" in out
    assert parse(out) == parse(text)
    assert fmt(parse(out)) == out


# --- random syntax trees -------------------------------------------------------------------

KEYWORDS = set(LEXER_KEYWORDS) | set(LEXER_CONSTANTS)  # words a name may not be
names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda x: x not in KEYWORDS and not x.startswith("l")
)
name = names.map(lambda t: s.Name(P, t))
small = st.integers(0, 40)
numbers = st.floats(0, 1e6, allow_nan=False, allow_infinity=False).map(lambda v: s.Number(P, v))
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)

head = st.builds(lambda a, b: s.Head(P, a, b), small, small)
path_node = st.one_of(
    st.just(s.Embed(P)),
    st.just(s.Pos(P)),
    st.just(s.Unembed(P)),
    head,
    st.builds(lambda a, b, i: s.HeadInput(P, a, b, i), small, small, st.sampled_from("qkv")),
    st.builds(lambda a, b, f, t: s.HeadQK(P, a, b, f, t), small, small, name, name),
    st.builds(lambda a: s.Mlp(P, a), small),
    st.builds(
        lambda a, ix: s.Neurons(P, a, tuple(ix)), small, st.lists(small, min_size=1, max_size=4)
    ),
)
path_expr = st.lists(path_node, min_size=2, max_size=4).map(lambda ns: s.PathExpr(P, tuple(ns)))
value = st.one_of(
    path_expr,
    path_node,
    name,
    numbers,
    st.sampled_from(["final", "first"]).map(lambda k: s.StepValue(P, k)),
)
arg = st.builds(lambda k, v: s.Arg(P, k, v), st.none() | name, value)
call = st.builds(
    lambda n, a: s.Call(P, n, a), name, st.none() | st.lists(arg, max_size=3).map(tuple)
)
term = st.builds(
    lambda c, pr, iv: s.Term(P, c, pr, tuple(iv)),
    call,
    st.none() | name,
    st.lists(call, max_size=2),
)
expr = st.recursive(
    numbers | term,
    lambda inner: st.one_of(
        st.builds(lambda o, a, b: s.BinOp(P, o, a, b), st.sampled_from("*/"), inner, inner),
        st.lists(st.tuples(st.sampled_from("+-"), inner), min_size=1, max_size=3).flatmap(
            lambda rest: inner.map(
                lambda first: s.Sum(P, (first, *(t for _, t in rest)), tuple(o for o, _ in rest))
            )
        ),
        inner.map(lambda x: s.Neg(P, x)),
        inner.map(lambda x: s.Abs(P, x)),
    ),
    max_leaves=6,
)
comparison = st.builds(
    lambda a, o, b: s.Comparison(P, a, o, b), expr, st.sampled_from(["<", "<=", ">", ">="]), expr
)
birth = comparison.map(lambda c: s.Birth(P, c))
step = st.one_of(
    small.map(lambda n: s.Step(P, "number", n)),
    st.just(s.Step(P, "final")),
    st.just(s.Step(P, "first")),
)
when = st.one_of(
    step.map(lambda x: s.At(P, x)),
    st.builds(lambda w, a: s.Over(P, w, a), name, st.sampled_from(["all", "mean", "trend"])),
)
prediction = st.one_of(
    st.builds(lambda w, pr, c: s.TimedPrediction(P, w, pr, c), when, st.none() | name, comparison),
    st.builds(
        lambda a, r, b, pr: s.BirthOrder(P, a, r, b, pr),
        birth,
        st.sampled_from(["before", "after"]),
        birth,
        st.none() | name,
    ),
)
window = st.one_of(
    st.builds(lambda a, b: s.WindowRange(P, a, b), st.none() | small, small),
    st.builds(lambda a: s.WindowRange(P, a, None), small),
    st.builds(lambda r, b: s.WindowBirth(P, r, b), st.sampled_from(["before", "after"]), birth),
)
claim = st.one_of(
    st.builds(
        lambda n, t, e, ps: s.Claim(P, n, t, e, False, tuple(ps)),
        name,
        text,
        st.none() | st.sampled_from(["supported", "negative", "unsupported"]),
        st.lists(prediction, min_size=1, max_size=3),
    ),
    st.builds(lambda n, t: s.Claim(P, n, t, None, True, ()), name, text),
)
statement = st.one_of(
    text.map(lambda t: s.Study(P, t)),
    st.builds(lambda n, t: s.RunDecl(P, n, t), name, text),
    st.builds(lambda n, t: s.RunsDecl(P, n, t), name, text),
    text.map(lambda t: s.ImportDecl(P, t)),
    st.builds(
        lambda n, sp, k, sd: s.ProbeDecl(P, n, sp, k, sd), name, name, small, st.none() | small
    ),
    st.floats(0, 1, allow_nan=False).map(lambda v: s.ConfidenceDecl(P, v)),
    st.sampled_from(["holm", "bh", "none"]).map(lambda m: s.CorrectionDecl(P, m)),
    st.lists(name, min_size=1, max_size=3).map(lambda ns: s.MarkDecl(P, tuple(ns))),
    st.builds(lambda n, w: s.WindowDecl(P, n, w), name, window),
    st.builds(lambda n, x: s.PathDecl(P, n, x), name, path_expr),
    st.builds(
        lambda n, ps: s.CircuitDecl(P, n, tuple(ps)), name, st.lists(name, min_size=1, max_size=3)
    ),
    claim,
)
specs = st.lists(statement, max_size=8).map(lambda sts: s.Spec(P, tuple(sts)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_random_specs_round_trip_through_the_formatter(spec: s.Spec):
    text = fmt(spec)
    again = parse(text, "gen")
    assert again == spec
    assert fmt(again) == text


def test_fmt_check_reports_files_that_would_change(tmp_path: Path, capsys):
    messy = tmp_path / "messy.hyp"
    messy.write_text('study   "S"\nprobe iid = split test_iid n 8\n')
    messy.chmod(0o644)
    assert main(["fmt", "--check", str(messy)]) == 1
    assert "would reformat" in capsys.readouterr().out
    assert main(["fmt", str(messy)]) == 0
    assert messy.read_text() == 'study "S"\n\nprobe iid = split test_iid n 8\n'
    assert messy.stat().st_mode & 0o777 == 0o644  # the rewrite keeps the file's mode
    assert main(["fmt", "--check", str(messy)]) == 0


@pytest.mark.parametrize(
    ("line", "comments"),
    [
        ('study "\\"#"', 0),  # an escaped quote, then # inside the string
        ('study "a\\\\"  # c', 1),  # an escaped backslash closes the string
        ('study "\\\\\\"#x"', 0),
        ('run r = "\\"" # "#', 1),
    ],
)
def test_a_hash_after_an_escaped_quote_inside_a_string_is_not_a_comment(line, comments):
    spec = parse(line + "\n", "gen")
    assert len(spec.comments) == comments
    again = fmt(spec)
    assert parse(again, "gen") == spec
    assert fmt(parse(again, "gen")) == again
