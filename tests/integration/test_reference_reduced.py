"""The reference study in a small form: every spec of specs/reference/, its steps divided by 50,
against a narrow run of the reference architecture trained 280 steps on the divided schedule.

CI cannot train the reference run (an hour), so this shows the next best thing: every claim of
the real study plans, measures, judges and reports on a run of the same shape (3 layers, 4
heads, 512 MLP neurons, bases of 64 features at the same sites), or is pending with its reason.
The verdicts mean nothing and are not checked; the published ledger is reports/reference.md.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from benchmarks.reduced import reduce_spec
from hypodsl.compiler import compile_spec
from hypodsl.parser import parse
from runner.engine.study import run_study, unsupported_feature
from runner.features.fit import FitSettings, fit_basis
from runner.kv.dataset import DataConfig
from runner.model.configs import TrainConfig
from runner.model.rundir import read_signature
from runner.model.transformer import ModelConfig
from runner.report.files import write_reports
from runner.train.loop import train
from tests.conftest import SMALL_DATA

SPECS = Path(__file__).resolve().parents[2] / "specs" / "reference"
BASES = {
    "features/l2": "blocks.2.hook_resid_post",
    "features/final_norm": "ln_final.hook_normalized",
}
SMOKE = TrainConfig(
    name="reference_smoke",
    model=ModelConfig(d_model=32, n_layers=3, n_heads=4, d_ff=512),
    data=DataConfig(seed=3, **SMALL_DATA),
    steps=280, batch_size=16, lr=3e-3, warmup_steps=10,
    checkpoint_schedule=((0, 1), (40, 5)),  # the reference's ((0, 50), (2000, 250)) / 50
    eval_sequences=32,
)  # fmt: skip


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("reference") / "reference"
    train(SMOKE, run)
    for key, site in BASES.items():
        settings = FitSettings(
            site=site, width=64, sequences=16, vectors_per_step=128, train_steps=60
        )
        fit_basis(run, run / key, settings)
    return run


def reduced_specs(tmp_path: Path) -> list[Path]:
    out = tmp_path / "specs"
    out.mkdir()
    for spec in sorted(SPECS.glob("*.hyp")):
        (out / spec.name).write_text(reduce_spec(spec.read_text()))
    return sorted(out.glob("*.hyp"))


@pytest.mark.slow
def test_every_reference_claim_is_judged_or_pending_on_a_reduced_run(smoke_run, tmp_path):
    signature = read_signature(smoke_run)
    studies = 0
    started = time.perf_counter()
    for spec in reduced_specs(tmp_path):
        text = spec.read_text()
        plan = compile_spec(parse(text, str(spec)), text, signature)
        if not plan.claims:
            continue  # shared declarations
        studies += 1
        result = run_study(plan, [smoke_run])
        for claim, planned in zip(result.claims, plan.claims, strict=True):
            for pred in planned.predictions:
                assert unsupported_feature(pred) is None, (claim.name, unsupported_feature(pred))
            if planned.pending:
                assert claim.status == "next test"
            else:
                assert "not implemented" not in claim.reason, (claim.name, claim.reason)
        written = write_reports(result, tmp_path / "reports", spec.stem, spec, figures=False)
        assert written.markdown.read_text().count("## ") >= len(result.claims)
    assert studies >= 1
    assert time.perf_counter() - started < 600


def test_the_reference_specs_check_against_the_reference_signature():
    """Unreduced, against the reference model's signature listing the two bases."""
    from tests.unit.test_checks import REFERENCE_SIGNATURE

    signature = {
        **REFERENCE_SIGNATURE,
        "checkpoints": SMOKE_STEPS_TIMES_50,
        "bases": {k: {"site": v, "d_in": 128, "d_sae": 64} for k, v in BASES.items()},
    }
    for spec in sorted(SPECS.glob("*.hyp")):
        compile_spec(parse(spec.read_text(), str(spec)), spec.read_text(), signature)


SMOKE_STEPS_TIMES_50 = [50 * s for s in SMOKE.checkpoint_steps()]


def test_the_reduced_schedule_is_the_reference_schedule_divided_by_50():
    from runner.model.configs import NAMED_CONFIGS

    reference = NAMED_CONFIGS["reference"].checkpoint_steps()
    assert reference == SMOKE_STEPS_TIMES_50
