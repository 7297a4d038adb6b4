"""The language accepts exactly what the runner measures: one catalogue, two halves that agree."""

from __future__ import annotations

import pytest

from hypodsl.compiler import compile_spec
from hypodsl.errors import HypValidationError
from hypodsl.parser import parse
from hypodsl.quantities import QUANTITIES
from runner.measure import quantities as runner_quantities


def test_every_quantity_the_language_accepts_the_runner_implements_and_no_other():
    assert set(QUANTITIES) == set(runner_quantities.IMPLEMENTED)


def test_the_quantities_measured_under_interventions_agree():
    intervened = {name for name, spec in QUANTITIES.items() if spec.intervened}
    assert intervened == set(runner_quantities.INTERVENED)


PRELUDE = 'study "t"\nprobe iid = split test_iid n 8\nprobe other = split heldout n 8\n'


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("contribution(L0.H1 -> unembed) with ablate(L1.H0, zero) > 0",
         "`contribution` is not measured under interventions"),
        ("share(L0.H1 -> unembed) with patch(L1.H0, from=other) > 0",
         "`share` is not measured under interventions"),
        ("attention(L1.H0, from=answer, to=match_value) with ablate(L0.H1, mean) > 0",
         "`attention` is not measured under interventions"),
        ("alignment(L0.H1 -> unembed) with ablate(L0.mlp, mean) > 0",
         "`alignment` is not measured under interventions"),
        ("alignment_cosine(L0.H1 -> unembed) > 0", "`alignment_cosine` is not measured"),
        ("gram(by=split) > 0", "`gram(by=split)` is not measured"),
        ("margin with ablate(L1.H0, zero) and patch(L1.H0, from=other) > 0",
         "`L1.H0` is ablated or patched twice in one term"),
        ("accuracy with ablate(L0.mlp[1, 2], zero) and ablate(L0.mlp[1, 2], mean) > 0",
         "is ablated or patched twice in one term"),
    ],
)  # fmt: skip
def test_a_form_the_runner_does_not_measure_is_an_error_at_its_place(line, message):
    source = PRELUDE + 'claim c "x" {\n  at final on iid: ' + line + "\n}\n"
    with pytest.raises(HypValidationError) as error:
        compile_spec(parse(source, "t.hyp"), source, None)
    assert message in str(error.value)
    assert "t.hyp:5:" in str(error.value)


def test_the_same_component_edited_in_two_terms_is_fine():
    source = PRELUDE + (
        'claim c "x" {\n  at final on iid: margin with ablate(L1.H0, zero) < '
        "margin with patch(L1.H0, from=other)\n}\n"
    )
    assert compile_spec(parse(source, "t.hyp"), source, None).claims
