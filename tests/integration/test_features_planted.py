"""Feature claims about the planted circuit get the verdicts its hand-set weights dictate.

The planted basis's value family is the retrieved value (runner.features.planted): active at
every read, carrying most of the margin, needed for retrieval, and restoring it when patched in
from the checkpoint that has it. Its idle family is never active: every claim that it matters
is Negative.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hypodsl.compiler import compile_spec
from hypodsl.parser import parse
from hypodsl.plan import Plan
from runner.engine.study import run_study
from runner.features import planted as fp
from runner.model.rundir import read_signature
from tests.conftest import SMALL_DATA
from tests.integration.planted_features import BASIS, write_planted_run

VALUES = ", ".join(map(str, fp.VALUE_FEATURES))
IDLE = ", ".join(map(str, fp.IDLE_FEATURES))
SPEC = f"""study "Planted features"
probe iid = split test_iid n 48 seed 0
probe pick = split val_iid n 48 seed 0
basis v = "{BASIS}" at "{fp.SITE}"
family ret = v[{VALUES}]
family idle = v[{IDLE}]

claim ret_active "The value family is active at the read" {{
  at final on iid: activation(ret) > 10
}}
claim ret_every_read "Every read has one value feature on" {{
  at final on iid: active(ret) > 0.005
}}
claim ret_carries "The value family carries most of the linearised margin" {{
  at final on iid: share(ret) > 0.5
}}
claim ret_written_by_retrieval "L1.H0 writes the value family" {{
  at final on iid: contribution(L1.H0 -> ret) > 10
}}
claim ret_needed "Zeroing the value family in the basis breaks retrieval" {{
  at final on iid: accuracy with ablate(ret, zero) < 0.1
}}
claim ret_resampled "Another sequence's value features give the wrong answer" {{
  at final on iid: accuracy with ablate(ret, resample) < 0.2
}}
claim ret_patched "Patching the value family in from the final step restores retrieval at step 0" {{
  at first on iid: accuracy with patch(ret, from=final) > accuracy + 0.5
}}
claim ret_absent_at_first "Without the retrieval write the value family is quiet" {{
  at first on iid: activation(ret) < 5
}}
claim idle_active "The idle family is active" expect negative {{
  at final on iid: activation(idle) > 0.5
}}
claim idle_carries "The idle family carries margin" expect negative {{
  at final on iid: contribution(idle) > 0.1
}}
claim idle_needed "Zeroing the idle family breaks retrieval" expect negative {{
  at final on iid: accuracy with ablate(idle, zero) < accuracy - 0.1
}}
claim idle_written "L1.H0 writes the idle family" expect negative {{
  at final on iid: contribution(L1.H0 -> idle) > 1
}}

select busiest = ret features top 3 by activation over 0 .. 10 on pick
select carriers = v features where contribution > 0.01 over 0 .. 10 on pick
claim carriers_carry "Features chosen on val_iid for carrying margin carry it on test_iid" {{
  at final on iid: share(carriers) > 0.3
}}
"""


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_planted_run(tmp_path_factory.mktemp("planted") / "planted", SMALL_DATA)


def plan_of(run: Path, text: str = SPEC) -> Plan:
    return compile_spec(parse(text, "planted.hyp"), text, read_signature(run))


def test_planted_feature_claims_get_the_verdicts_the_weights_dictate(planted_run: Path):
    result = run_study(plan_of(planted_run), [planted_run])
    verdicts = {c.name: c.verdict for c in result.claims}
    reasons = {c.name: c.reason for c in result.claims}
    for name, verdict in verdicts.items():
        expected = "negative" if name.startswith("idle") else "supported"
        assert verdict == expected, (name, reasons[name])
    busiest, carriers = result.provenance.runs[0].selections
    assert len(busiest.members) == 3 and busiest.reason is None and busiest.steps == (0, 10)
    assert set(busiest.members) <= set(fp.VALUE_FEATURES)
    # the idle features carry nothing, so only value features can be chosen
    assert 10 < len(carriers.members) <= len(fp.VALUE_FEATURES)
    assert set(carriers.members) <= set(fp.VALUE_FEATURES)
    assert min(carriers.values) > 0.01
    assert result.provenance.runs[0].bases[0].width == fp.WIDTH
