"""Semantic checks: every construct compiles; every error kind at its exact line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.parse_check import SIGNATURE
from hypodsl import plan as p
from hypodsl.compiler import compile_spec
from hypodsl.errors import HypError, flatten
from hypodsl.parser import parse, parse_file

SPECS = Path(__file__).resolve().parents[2] / "specs"
REFERENCE_SIGNATURE = SIGNATURE  # the reference model's (3 layers, 4 heads, d_ff 512)
PRELUDE = """study "S"
probe iid = split test_iid n 64
probe cf = split counterfactual n 64
window early = 1500 .. 2500
path retrieval = L1.H2[answer <- match_value] -> unembed
path direct = embed -> unembed
circuit kv = retrieval + direct
"""


def compile_text(text: str, uri: str = "t.hyp", signature: dict | None = REFERENCE_SIGNATURE):
    return compile_spec(parse(text, uri), text, signature)


def errors_of(text: str, signature: dict | None = REFERENCE_SIGNATURE) -> set[tuple[int, int, str]]:
    with pytest.raises(HypError) as info:
        compile_text(text, signature=signature)
    return {(e.pos.line, e.pos.column, e.message) for e in flatten(info.value) if e.pos}


def with_bases(spec) -> dict:
    """The reference signature, listing every basis the spec declares (64 features wide), as
    `hypo features fit` would have listed them."""
    from hypodsl import syntax

    bases = {
        st.path: {"site": st.site, "d_in": 128, "d_sae": 64}
        for st in spec.statements
        if isinstance(st, syntax.BasisDecl)
    }
    return {**REFERENCE_SIGNATURE, "bases": bases}


# The induction example's run (make induction): a task file's roles and splits, not the KV task's.
INDUCTION_SIGNATURE = {
    "model": {"n_layers": 2, "n_heads": 4, "d_ff": 256},
    "roles": ["answer", "earlier", "after_earlier", "three_after", "previous"],
    "splits": {"discover": 256, "test": 256},
    "checkpoints": list(range(0, 1201, 25)),
}


def test_every_bundled_spec_checks_clean_against_the_reference_signature():
    for path in sorted(SPECS.glob("*.hyp")):
        text = path.read_text()
        spec = parse_file(path)
        if path.name == "induction.hyp":
            compile_spec(spec, text, INDUCTION_SIGNATURE)
            with pytest.raises(HypError, match="role"):  # its roles are not the KV task's
                compile_spec(spec, text, with_bases(spec))
        else:
            compile_spec(spec, text, with_bases(spec))


def test_the_retrieval_study_compiles_every_construct():
    path = SPECS / "retrieval.hyp"
    plan = compile_spec(parse_file(path), path.read_text(), REFERENCE_SIGNATURE)
    claims = {c.name: c for c in plan.claims}
    assert plan.imports and plan.imports[0].endswith("kv_paths.hyp")
    assert {pr.name for pr in plan.probes} == {"iid", "heldout", "cf"}
    assert plan.circuits == {"kv": ("retrieval", "via_mlp")}
    prebirth = next(w for w in plan.windows if w.name == "prebirth")
    assert isinstance(prebirth, p.BirthWindow) and prebirth.condition.probe == "heldout"
    share = claims["margin_in_circuit"].predictions[0]
    assert isinstance(share, p.TimedPrediction) and isinstance(share.left, p.QuantityExpr)
    assert [path.name for path in share.left.paths] == ["retrieval", "via_mlp"]
    assert share.left.paths[0].nodes[0] == p.HeadQKNode(
        layer=1, head=2, from_role="answer", to_role="match_value"
    )
    birth = claims["geometry_first"].predictions[0]
    assert isinstance(birth, p.BirthOrder) and birth.relation == "before"
    assert birth.right.left.probe == "heldout" and birth.left.probe == "iid"
    needed = claims["head_needed"].predictions[0]
    assert isinstance(needed.left, p.QuantityExpr)
    assert needed.left.interventions == (
        p.Ablation(target=p.HeadNode(layer=1, head=2), method="mean"),
    )
    comp = claims["compensated"].predictions[0]
    assert isinstance(comp.left, p.UnaryExpr) and comp.left.op == "abs"
    assert claims["compensated"].expect == "supported"
    patch = claims["late_patch"].predictions[0].left
    assert patch.interventions[0].from_step == p.StepRef(kind="number", number=2500)
    assert claims["counterfactual_patch"].predictions[0].left.interventions[0].from_probe == "cf"
    over = claims["sgd_prefers_retrieval"].predictions[0]
    assert over.when == p.Over(window="prebirth", aggregate="mean")
    assert claims["pending_cross_seed"].pending and not claims["pending_cross_seed"].predictions
    assert p.Plan.model_validate_json(plan.model_dump_json()) == plan


def test_the_plan_hash_is_stable_and_sensitive():
    text = PRELUDE + 'claim a "t" { at final on iid: share(kv) > 0.5 }\n'
    a, b = compile_text(text), compile_text(text)
    assert a.content_hash() == b.content_hash()
    assert compile_text(text.replace("0.5", "0.6")).content_hash() != a.content_hash()


@pytest.mark.parametrize(
    ("body", "line", "column", "message"),
    [
        ("probe iid = split test_iid n 4", 8, 7, "probe `iid` is declared twice"),
        ("path iid = L0.H1 -> unembed", 8, 6, "path `iid` is declared twice (first as a probe)"),
        (
            'claim a "t" { at final on idd: accuracy > 0.5 }',
            8,
            27,
            "probe `idd` is not declared before this use; did you mean `iid`?",
        ),
        (
            'claim a "t" { at final on iid: attention(L3.H0, from=answer, to=match_value) > 0 }',
            8,
            42,
            "layer 3 is out of range: the model has 3 layers (0..2)",
        ),
        (
            'claim a "t" { at final on iid: attention(L1.H4, from=answer, to=match_value) > 0 }',
            8,
            42,
            "head 4 is out of range: each layer has 4 heads (0..3)",
        ),
        (
            'claim a "t" { at final on iid: accuracy with ablate(L0.mlp[3, 512], zero) > 0 }',
            8,
            53,
            "neuron 512 is out of range: the MLP has 512 neurons",
        ),
        (
            'claim a "t" { at final on iid: attention(L1.H2, from=answer, to=match_val) > 0 }',
            8,
            65,
            "unknown role `match_val`; did you mean `match_value`?",
        ),
        (
            "probe ood = split structural_od n 4",
            8,
            19,
            "unknown split `structural_od`; did you mean `structural_ood`?",
        ),
        (
            'claim a "t" { at 1234 on iid: accuracy > 0.5 }',
            8,
            18,
            "no checkpoint at step 1234; the nearest is 1250",
        ),
        (
            'claim a "t" { at final on iid: contribution(iid) > 0 }',
            8,
            45,
            "`iid` is a probe; a path or circuit is expected here",
        ),
        (
            'claim a "t" { over retrieval (mean) on iid: accuracy > 0 }',
            8,
            20,
            "`retrieval` is a path; a window is expected here",
        ),
        (
            'claim a "t" { at final on iid: acuracy > 0.5 }',
            8,
            32,
            "unknown quantity `acuracy`; did you mean `accuracy`?",
        ),
        (
            'claim a "t" { at final on iid: accuracy with ablat(L1.H2, zero) > 0 }',
            8,
            46,
            "unknown intervention `ablat`; did you mean `ablate`?",
        ),
        (
            'claim a "t" { at final on iid: accuracy with ablate(L1.H2, half) > 0 }',
            8,
            46,
            "write `ablate(TARGET, zero|mean|resample)`",
        ),
        (
            'claim a "t" { at final on iid: accuracy with patch(L1.H2, from=1234) > 0 }',
            8,
            64,
            "no checkpoint at step 1234; the nearest is 1250",
        ),
        (
            'claim a "t" { at final on iid: attention(L1.H2, from=answer) > 0 }',
            8,
            32,
            "`attention` needs `to=ROLE`",
        ),
        (
            'claim a "t" { at final on iid: attention(L1.H2, form=answer, to=bos) > 0 }',
            8,
            49,
            "`attention` has no argument `form`; did you mean `from`?",
        ),
        (
            'claim a "t" { at final on iid: attention(retrieval, from=answer, to=bos) > 0 }',
            8,
            42,
            "`attention` takes a head such as `L1.H2` here",
        ),
        (
            'claim a "t" { at final: accuracy > 0.5 }',
            8,
            15,
            "no probe: write `on PROBE` (after `at ...`, or on a quantity)",
        ),
        ("window late = 3000 .. 2000", 8, 15, "window `late` starts after it ends (3000 > 2000)"),
        (
            "path bad = L2.H0 -> L1.mlp -> unembed",
            8,
            12,
            "a path runs forward through the layers; these go backwards",
        ),
        ("path bad = unembed -> L1.mlp", 8, 12, "`unembed` can only end a path"),
        ("circuit c = retrieval + nope", 8, 25, "path `nope` is not declared before this use"),
        ("confidence 1.5", 8, 1, "confidence must be in [0.5, 1), not 1.5"),
        ('claim a "t" pending\nclaim a "u" pending', 9, 7, "claim `a` is declared twice"),
    ],
)
def test_each_error_kind_is_reported_at_its_line_and_column(body, line, column, message):
    assert (line, column, message) in errors_of(PRELUDE + body + "\n")


def test_all_errors_of_a_file_are_reported_at_once():
    text = PRELUDE + (
        'claim a "t" { at 1234 on idd: acuracy > 0.5 }\n'
        'claim a "t" { at final on iid: attention(L9.H9, from=x, to=y) > 0 }\n'
    )
    found = errors_of(text)
    assert len(found) >= 7


def test_without_a_signature_the_signature_checks_are_skipped():
    text = PRELUDE + 'claim a "t" { at 1234 on iid: attention(L9.H9, from=x, to=y) > 0 }\n'
    plan = compile_text(text, signature=None)
    assert plan.claims[0].predictions[0].when.step.number == 1234


def test_imports_share_declarations_and_cycles_are_errors(tmp_path: Path):
    (tmp_path / "shared.hyp").write_text('probe iid = split test_iid n 8\nimport "main.hyp"\n')
    main = tmp_path / "main.hyp"
    main.write_text(
        'study "S"\nimport "shared.hyp"\nclaim a "t" { at final on iid: accuracy > 0 }\n'
    )
    with pytest.raises(HypError) as info:
        compile_spec(parse_file(main), main.read_text())
    (err,) = flatten(info.value)
    assert err.pos.uri.endswith("shared.hyp") and (err.pos.line, err.pos.column) == (2, 1)
    assert err.message == "import cycle: main.hyp -> shared.hyp -> main.hyp"
    (tmp_path / "shared.hyp").write_text("probe iid = split test_iid n 8\n")
    plan = compile_spec(parse_file(main), main.read_text())
    assert plan.probe("iid").n == 8


def test_an_import_of_a_missing_file_names_it(tmp_path: Path):
    main = tmp_path / "main.hyp"
    main.write_text('study "S"\nimport "nope.hyp"\n')
    with pytest.raises(HypError, match=r"cannot import `nope\.hyp`"):
        compile_spec(parse_file(main), main.read_text())


def test_a_syntax_error_in_an_imported_file_is_shown_with_its_line(tmp_path: Path, capsys):
    from hypodsl.cli import main

    (tmp_path / "shared.hyp").write_text("probe iid = split test_iid n\n")
    main_spec = tmp_path / "main.hyp"
    main_spec.write_text('study "S"\nimport "shared.hyp"\n')
    assert main(["check", str(main_spec)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{(tmp_path / 'shared.hyp').resolve()}:1:")
    assert err[1] == "  probe iid = split test_iid n"


def test_plan_json_from_the_cli_is_the_compiled_plan(capsys):
    from hypodsl.cli import main

    spec = SPECS / "retrieval.hyp"
    assert main(["plan", str(spec), "--json"]) == 0
    shown = p.Plan.model_validate_json(capsys.readouterr().out)
    assert shown == compile_spec(parse_file(spec), spec.read_text())
    assert main(["plan", str(spec)]) == 0
    assert "L1.H2[answer <- match_value] -> unembed" in capsys.readouterr().out
