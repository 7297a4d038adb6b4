"""Every quantity form and intervention the compiler accepts is measured by the runner: a study
that writes each of them, on the planted run (it has a feature basis), judges every prediction;
none comes out "not evaluable". The spec is built from the language's catalogue, so a quantity
added to the language without a form here fails the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypodsl import plan as p
from hypodsl.compiler import compile_spec
from hypodsl.parser import parse
from hypodsl.quantities import ABLATION_METHODS, GRAM_GROUPS, QUANTITIES
from runner.engine.study import run_study
from runner.features import planted as fp
from runner.model.rundir import read_signature
from tests.conftest import SMALL_DATA
from tests.integration.planted_features import BASIS, write_planted_run

# One plain form of each quantity.
PLAIN = {
    "accuracy": ["accuracy"],
    "loss": ["loss"],
    "margin": ["margin"],
    "attention": ["attention(L1.H0, from=answer, to=match_value)"],
    "qk_gap": ["qk_gap(L1.H0, from=answer, to=match_value)",
               "qk_gap(L1.H0, from=answer, to=match_value, contrast=stale_value)"],
    "ov_copy": ["ov_copy(L1.H0)"],
    "contribution": ["contribution(direct)", "contribution(restricted)", "contribution(both)",
                     "contribution(L1.H0 -> ret)", "contribution(ret)", "contribution(k_comp)"],
    "share": ["share(direct)", "share(ret)"],
    "alignment": ["alignment(direct)", "alignment(activation(ret))"],
    "update_alignment": ["update_alignment(direct)", "update_alignment(direct, scope=L0.mlp)",
                         "update_alignment(activation(ret))"],
    "gram": [f"gram(by={group})" for group in GRAM_GROUPS],
    "activation": ["activation(ret)"],
    "active": ["active(ret)"],
}  # fmt: skip
TARGETS = ["L1.H0", "L0.mlp", "L0.mlp[1, 2]", "embed", "pos", "ret"]
EDITS = [f"ablate({t}, {m})" for t in TARGETS for m in ABLATION_METHODS]
EDITS += [f"patch({t}, from=pick)" for t in TARGETS] + [f"patch({t}, from=final)" for t in TARGETS]
EDITS += ["ablate(L1.H0, zero) and patch(L0.mlp, from=pick)"]


def spec() -> str:
    lines = [
        'study "every form"',
        "probe iid = split test_iid n 32 seed 0",
        "probe pick = split val_iid n 32 seed 0",
        f'basis v = "{BASIS}" at "{fp.SITE}"',
        f"family ret = v[{', '.join(map(str, fp.VALUE_FEATURES))}]",
        "path direct = L1.H0 -> unembed",
        "path restricted = L1.H0[answer <- match_value] -> unembed",
        "path k_comp = L0.H1 -> L1.H0.k",
        "circuit both = direct + restricted",
        "window all_steps = 0 ..",
    ]
    predictions = [
        f"at first on iid: {form} > -1000000" for forms in PLAIN.values() for form in forms
    ]
    predictions.append("over all_steps (mean) on iid: contribution(direct) > -1000000")
    # every edit on one quantity; each quantity measured under edits, ablated and patched
    predictions += [f"at first on iid: margin with {edit} > -1000000" for edit in EDITS]
    for name, quantity in QUANTITIES.items():
        if quantity.intervened and name != "margin":
            form = PLAIN[name][0]
            for edit in ("ablate(L1.H0, mean)", "patch(ret, from=final)"):
                predictions.append(f"at first on iid: {form} with {edit} > -1000000")
    predictions.append("at first on iid: margin on pick with ablate(L1.H0, mean) > -1000000")
    for i, prediction in enumerate(predictions):
        lines += [f'claim c{i} "form {i}" {{', f"  {prediction}", "}"]
    lines.append('claim born "a birth of an intervened quantity" {')
    lines.append("  birth(margin with ablate(L1.H0, mean) < margin + 100) before "
                 "birth(accuracy > -1) on iid")  # fmt: skip
    lines.append("}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_planted_run(tmp_path_factory.mktemp("forms") / "planted", SMALL_DATA)


@pytest.mark.slow
def test_every_accepted_form_is_measured(planted_run: Path, tmp_path: Path):
    text = spec()
    plan = compile_spec(parse(text, "forms.hyp"), text, read_signature(planted_run))
    written = {q.name for claim in plan.claims for q in _quantities(claim)}
    assert written == set(QUANTITIES)
    result = run_study(plan, [planted_run], cache_dir=tmp_path)
    for claim in result.claims:
        for prediction in claim.predictions:
            assert "not evaluable" not in prediction.reason, (prediction.text, prediction.reason)
            if claim.name != "born":  # both born at the first step: a tie, inconclusive
                assert prediction.verdict == "supported", (prediction.text, prediction.reason)


def _quantities(claim: p.ClaimPlan) -> list[p.QuantityExpr]:
    found: list[p.QuantityExpr] = []

    def walk(x: object) -> None:
        if isinstance(x, p.QuantityExpr):
            found.append(x)
            if x.target is not None:
                walk(x.target)
        elif isinstance(x, p.Frozen):
            for value in x.__dict__.values():
                walk(value)
        elif isinstance(x, tuple | list):
            for item in x:
                walk(item)

    walk(claim)
    return found
