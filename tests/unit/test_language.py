"""The first cut of the language: parse, check, compile, and errors with positions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hypodsl.cli import main
from hypodsl.compiler import compile_spec
from hypodsl.errors import HypSyntaxError, HypValidationError, MultipleErrors, format_error
from hypodsl.parser import parse
from hypodsl.plan import Plan
from runner.kv.roles import ROLE_NAMES

SPECS = Path(__file__).resolve().parents[2] / "specs"
SIGNATURE = {  # the shape of the `small` run's signature.json
    "model": {"n_layers": 2, "n_heads": 4, "d_model": 128, "d_head": 32, "d_ff": 512},
    "roles": list(ROLE_NAMES),
    "splits": {"val_iid": 2048, "test_iid": 2048, "heldout": 2048, "structural_ood": 2048},
    "checkpoints": [0, 100, 500, 1000, 4250, 4500],
}

GOOD = """study "S"
run r = "runs/r"
probe iid = split test_iid n 64 seed 1
confidence 0.9
claim a "A holds" expect negative {
  at final on iid: accuracy > 0.8
  at 500 on iid: accuracy - 0.1 >= margin + 2  # arithmetic on both sides
}
"""


def compile_text(text: str, signature: dict | None = SIGNATURE) -> Plan:
    return compile_spec(parse(text, "t.hyp"), text, signature)


def test_a_spec_compiles_to_a_plan_that_round_trips_through_json():
    plan = compile_text(GOOD)
    assert plan.study == "S" and plan.confidence == 0.9
    assert plan.probes[0].seed == 1 and plan.run and plan.run.path == "runs/r"
    claim = plan.claims[0]
    assert claim.expect == "negative"
    assert [p.when.step.label() for p in claim.predictions] == ["final", "500"]
    assert claim.predictions[0].text == "at final on iid: accuracy > 0.8"
    assert claim.predictions[1].source.line == 7
    again = Plan.model_validate_json(plan.model_dump_json())
    assert again == plan and again.content_hash() == plan.content_hash()
    assert compile_text(GOOD.replace("0.8", "0.7")).content_hash() != plan.content_hash()


def test_a_pending_claim_keeps_its_reason_and_a_bare_one_its_plan_json():
    text = 'study "S"\nclaim a "t" pending "no quantity for it yet"\nclaim b "u" pending\n'
    a, b = compile_text(text).claims
    assert a.pending and a.pending_reason == "no quantity for it yet"
    assert b.pending and b.pending_reason is None
    # no reason, no key: the plans (and plan hashes) of specs written before reasons existed
    assert "pending_reason" not in b.model_dump_json()
    assert '"pending_reason":"no quantity for it yet"' in a.model_dump_json()
    assert type(a).model_validate_json(a.model_dump_json()) == a


def test_demo_spec_checks_clean():
    text = (SPECS / "demo.hyp").read_text()
    plan = compile_text(text)
    assert len(plan.claims) >= 5


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        (
            'study "S"\nclaim a "t" { at final on p: accuracy 0.8 }',
            2,
            39,
            "a comparison operator (<, <=, >, >=) after `accuracy`",
        ),
        (
            'study "S"\nprobe p = split test_iid n\n',
            2,
            27,
            "the file ends too early: expected a whole number",
        ),
        (
            'study "S"\nclaim a "t" { at final on p: accuracy > 0.8 ',
            2,
            44,
            "expected `*`, `+`, `-`, `/`, `at`, `birth`, `over` or `}` after `0.8`",
        ),
        ('stduy "S"', 1, 1, "found `stduy`"),
        ('study "S"\nclaim a "t" pending " "', 2, 21, "a pending claim's reason is empty"),
        ('study "S" $', 1, 11, "unexpected character `$`"),
    ],
)
def test_syntax_errors_name_the_line_column_and_what_was_expected(text, line, column, message):
    with pytest.raises(HypSyntaxError) as info:
        parse(text, "t.hyp")
    err = info.value
    assert (err.pos.line, err.pos.column) == (line, column)
    assert message in err.message
    assert "Token" not in err.message and "$END" not in err.message


def test_every_validation_error_is_reported_at_once_with_suggestions():
    text = """study "S"
probe iid = split test_idd n 64
probe iid = split heldout n 9999
claim a "t" { at 123 on idd: acuracy > 0.5 }
claim a "t" { at final on iid: accuracy > 0.5 }
"""
    with pytest.raises(MultipleErrors) as info:
        compile_text(text)
    errors = info.value.errors
    found = {(e.pos.line, e.pos.column, e.message) for e in errors}
    assert (2, 19, "unknown split `test_idd`; did you mean `test_iid`?") in found
    assert (3, 7, "probe `iid` is declared twice") in found
    assert (3, 1, "split `heldout` has 2048 sequences, not 9999") in found
    assert (4, 18, "no checkpoint at step 123; the nearest is 100") in found
    assert (4, 25, "probe `idd` is not declared before this use; did you mean `iid`?") in found
    assert (4, 30, "unknown quantity `acuracy`; did you mean `accuracy`?") in found
    assert (5, 7, "claim `a` is declared twice") in found
    assert all(isinstance(e, HypValidationError) for e in errors)


def test_use_before_declaration_is_an_error():
    text = (
        'study "S"\nclaim a "t" { at final on iid: accuracy > 0.5 }\nprobe iid = split test_iid n 4'
    )
    with pytest.raises(HypValidationError, match="not declared before this use"):
        compile_text(text)


def test_errors_print_the_source_line_with_carets():
    text = 'study "S"\nclaim a "t" { at final on p: accuracy 0.8 }'
    with pytest.raises(HypSyntaxError) as info:
        parse(text, "t.hyp")
    out = format_error(info.value, {"t.hyp": text}).splitlines()
    assert out[0].startswith("t.hyp:2:39: expected")
    assert out[1] == "  " + text.splitlines()[1]
    assert out[2] == "  " + " " * 38 + "^^^"


def test_cli_check_exit_codes(tmp_path, capsys):
    good, bad = tmp_path / "good.hyp", tmp_path / "bad.hyp"
    good.write_text(GOOD)
    bad.write_text('study "S"\nclaim a "t" { at final on p: accuracy > }')
    sig = tmp_path / "signature.json"
    sig.write_text(json.dumps(SIGNATURE))
    assert main(["check", str(good), "--signature", str(sig)]) == 0
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2:" in err and "Traceback" not in err
    assert main(["check", str(tmp_path / "missing.hyp")]) == 2


def test_hypo_check_imports_neither_torch_nor_transformers_nor_ray(tmp_path):
    import subprocess
    import sys

    spec = tmp_path / "ok.hyp"
    spec.write_text('study "S"\nprobe iid = split test_iid n 4\n'
                    'claim a "t" { at final on iid: accuracy > 0.5 }\n')  # fmt: skip
    code = (
        "import sys\nfrom hypodsl.cli import main\n"
        f"assert main(['check', {str(spec)!r}]) == 0\n"
        "print(sorted({'torch', 'transformers', 'ray'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_marks_compile_to_the_plan_and_a_repeated_mark_is_an_error():
    text = 'study "S"\nmark slow, nightly\nprobe iid = split test_iid n 4\n'
    claim = 'claim a "t" { at final on iid: accuracy > 0.5 }\n'
    assert compile_text(text + claim).marks == ("slow", "nightly")
    with pytest.raises(HypValidationError) as info:
        compile_text(text + "mark slow\n" + claim)
    assert (info.value.pos.line, info.value.pos.column) == (4, 6)
    assert info.value.message == "mark `slow` is given twice"
