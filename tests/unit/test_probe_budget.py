"""A probe too large for one forward pass is refused before anything is measured, with its
size and the largest `n` that fits."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypodsl.cli import main
from runner.engine import probe_budget
from runner.model.configs import NAMED_CONFIGS
from runner.model.rundir import RunError

REFERENCE = NAMED_CONFIGS["reference"].model


def test_the_estimate_grows_with_the_probe_and_the_model():
    one = probe_budget.clean_pass_bytes(512, 96, REFERENCE)
    assert probe_budget.clean_pass_bytes(1024, 96, REFERENCE) == 2 * one
    wider = REFERENCE.model_copy(update={"vocab_size": 50_304})
    assert probe_budget.clean_pass_bytes(512, 96, wider) > 5 * one  # the logits dominate


def test_the_benchmark_probes_fit_and_a_hundred_thousand_sequences_do_not(monkeypatch):
    monkeypatch.setattr(probe_budget, "memory_limit", lambda: 12 * 2**30)  # a 24 GiB machine
    probe_budget.check_probe_fits("iid", 512, 96, REFERENCE)
    with pytest.raises(RunError) as refused:
        probe_budget.check_probe_fits("iid", 100_000, 96, REFERENCE)
    message = str(refused.value)
    assert "probe `iid`: 100000 sequences of 96 positions" in message and "\n" not in message
    most = int(message.rsplit("write `n ", 1)[1].split("`")[0])
    probe_budget.check_probe_fits("iid", most, 96, REFERENCE)
    with pytest.raises(RunError):
        probe_budget.check_probe_fits("iid", most + 2, 96, REFERENCE)


def test_hypo_run_refuses_the_probe_in_one_line(
    tiny_run: Path, tmp_path: Path, monkeypatch, capsys
):
    monkeypatch.setattr(probe_budget, "memory_limit", lambda: 2**20)
    spec = tmp_path / "big.hyp"
    spec.write_text(
        'study "big"\nprobe iid = split test_iid n 64 seed 0\n'
        'claim c "x" {\n  at final on iid: accuracy > 0\n}\n'
    )
    assert main(["run", str(spec), "--run", str(tiny_run), "--no-cache"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "probe `iid`: 64 sequences" in err and "Traceback" not in err
