"""The GPU path: `--device cuda` for the engine and for training. Skipped without a CUDA device
(`-m gpu` selects these tests); nothing else needs a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hypodsl.compiler import compile_spec
from hypodsl.parser import parse
from runner.engine.study import run_study
from runner.model.checkpoints import list_steps, load_model
from runner.model.configs import NAMED_CONFIGS
from runner.model.rundir import read_signature
from runner.train.loop import train
from tests.conftest import SMALL_DATA
from tests.integration.planted_features import write_planted_run
from tests.integration.test_features_planted import SPEC as FEATURE_SPEC
from tests.integration.test_shared_passes import SPEC

GRAM = """claim gram_on_cuda "per-example gradients" {
  at final on iid: gram(by=key) > -1000
}
"""

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]


def test_the_engine_on_cuda_gives_the_cpu_verdicts(tiny_run: Path, tmp_path: Path):
    text = SPEC + GRAM
    plan = compile_spec(parse(text, "gpu.hyp"), text, None)
    cpu = run_study(plan, [tiny_run], cache_dir=tmp_path / "cpu", device="cpu")
    gpu = run_study(plan, [tiny_run], cache_dir=tmp_path / "gpu", device="cuda")
    for a, b in zip(cpu.claims, gpu.claims, strict=True):
        assert "failed on cuda" not in b.reason, b.reason
        assert a.verdict == b.verdict, (a.name, a.reason, b.reason)
        for x, y in zip(a.predictions, b.predictions, strict=True):
            assert x.estimate == pytest.approx(y.estimate, rel=1e-3, abs=1e-3), a.name


def test_feature_claims_and_selections_on_cuda_give_the_cpu_ones(tmp_path: Path):
    run = write_planted_run(tmp_path / "planted", SMALL_DATA)
    neurons = "select builders = L1.mlp neurons top 4 by drive(ret) over 0 .. 10 on pick\n"
    text = FEATURE_SPEC + neurons
    plan = compile_spec(parse(text, "gpu.hyp"), text, read_signature(run))
    cpu = run_study(plan, [run], cache_dir=tmp_path / "cpu", device="cpu")
    gpu = run_study(plan, [run], cache_dir=tmp_path / "gpu", device="cuda")
    for a, b in zip(cpu.provenance.runs[0].selections, gpu.provenance.runs[0].selections,
                    strict=True):  # fmt: skip
        assert b.reason == a.reason and b.members == a.members, (a.name, b.reason)
        assert b.values == pytest.approx(a.values, rel=1e-3, abs=1e-4), a.name
    for a, b in zip(cpu.claims, gpu.claims, strict=True):
        assert "failed on cuda" not in b.reason, b.reason
        assert a.verdict == b.verdict, (a.name, a.reason, b.reason)


def test_training_on_cuda_resumes_and_writes_cpu_checkpoints(tmp_path: Path):
    config = NAMED_CONFIGS["tiny"]
    run = tmp_path / "tiny_cuda"
    model = train(config, run, device="cuda")
    assert next(model.parameters()).device.type == "cuda"
    steps = list_steps(run)
    assert steps[-1] == config.steps
    loaded = load_model(run, config.steps, config.model)  # on the CPU
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a.cpu(), b), name
    again = train(config, run, device="cuda")  # already trained: resumes at the end
    assert torch.equal(next(again.parameters()).cpu(), next(loaded.parameters()))
