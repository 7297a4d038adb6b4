"""A spec pins the basis its feature ids belong to by a prefix of the weights' SHA-256: a run
whose basis was fitted again is refused at `hypo check --run`, and a study that meets one
anyway makes the claims that read it not evaluable, saying so."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypodsl.compiler import compile_spec
from hypodsl.errors import HypError
from hypodsl.parser import parse
from runner.engine.study import run_study
from runner.features import planted as fp
from runner.model.rundir import read_signature
from tests.conftest import SMALL_DATA
from tests.integration.planted_features import BASIS, write_planted_run


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_planted_run(tmp_path_factory.mktemp("pin") / "planted", SMALL_DATA)


def spec(pin: str) -> str:
    return f"""study "pinned"
probe iid = split test_iid n 32 seed 0
basis v = "{BASIS}" at "{fp.SITE}" sha256 "{pin}"
claim reads_features "reads the basis" {{
  at final on iid: activation(v[{fp.VALUE_FEATURES[0]}]) > -1000
}}
claim reads_none "reads no basis" {{
  at final on iid: accuracy > -1
}}
"""


def weights(run: Path) -> str:
    return read_signature(run)["bases"][BASIS]["weights_sha256"]


def test_the_right_pin_compiles_and_a_wrong_one_is_an_error_at_its_line(planted_run: Path):
    sha = weights(planted_run)
    signature = read_signature(planted_run)
    assert compile_spec(parse(spec(sha[:12]), "p.hyp"), spec(sha[:12]), signature).bases
    wrong = ("0" if sha[0] != "0" else "1") + sha[1:12]
    with pytest.raises(HypError) as error:
        compile_spec(parse(spec(wrong), "p.hyp"), spec(wrong), signature)
    assert "p.hyp:3:1: basis `v` is pinned to sha256" in str(error.value)
    with pytest.raises(HypError) as error:
        compile_spec(parse(spec("xyz"), "p.hyp"), spec("xyz"), None)
    assert "12 to 64 lowercase hex digits" in str(error.value)


def test_a_study_that_meets_another_basis_does_not_read_it(planted_run: Path, tmp_path: Path):
    sha = weights(planted_run)
    wrong = ("0" if sha[0] != "0" else "1") + sha[1:12]
    plan = compile_spec(parse(spec(wrong), "p.hyp"), spec(wrong), None)  # checked against nothing
    result = run_study(plan, [planted_run], cache_dir=tmp_path)
    by_name = {c.name: c for c in result.claims}
    assert by_name["reads_features"].status == "not evaluable"
    assert f"pinned to sha256 {wrong}" in by_name["reads_features"].reason
    assert by_name["reads_none"].verdict == "supported"
