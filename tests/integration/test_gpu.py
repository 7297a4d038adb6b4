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
from runner.train.loop import train
from tests.integration.test_shared_passes import SPEC

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]


def test_the_engine_on_cuda_gives_the_cpu_verdicts(tiny_run: Path, tmp_path: Path):
    plan = compile_spec(parse(SPEC, "gpu.hyp"), SPEC, None)
    cpu = run_study(plan, [tiny_run], cache_dir=tmp_path / "cpu", device="cpu")
    gpu = run_study(plan, [tiny_run], cache_dir=tmp_path / "gpu", device="cuda")
    for a, b in zip(cpu.claims, gpu.claims, strict=True):
        assert "failed on cuda" not in b.reason, b.reason
        assert a.verdict == b.verdict, (a.name, a.reason, b.reason)
        for x, y in zip(a.predictions, b.predictions, strict=True):
            assert x.estimate == pytest.approx(y.estimate, rel=1e-3, abs=1e-3), a.name


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
