"""Training: dense checkpoints with sidecars, metrics, signature, and resume after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from runner.model.checkpoints import (
    CheckpointError,
    list_steps,
    load_state,
    read_sidecar,
    weights_path,
)
from runner.model.configs import NAMED_CONFIGS
from runner.model.rundir import read_metrics, read_signature
from runner.train.loop import resume_step

TINY = NAMED_CONFIGS["tiny"]


def test_run_directory_holds_checkpoints_metrics_and_signature(tiny_run: Path):
    steps = TINY.checkpoint_steps()
    assert steps == [0, 10, 20, 30, 40, 60]
    assert list_steps(tiny_run) == steps
    assert [m["step"] for m in read_metrics(tiny_run)] == steps
    final = read_metrics(tiny_run)[-1]["splits"]
    assert set(final) == {
        "train",
        "val_iid",
        "test_iid",
        "heldout",
        "structural_ood",
        "counterfactual",
    }
    assert set(final["test_iid"]) == {
        "loss",
        "token_accuracy",
        "answer_accuracy",
        "answer_loss",
        "answer_margin",
    }
    first = read_metrics(tiny_run)[0]["splits"]["test_iid"]
    assert final["test_iid"]["loss"] < first["loss"]  # it learned something
    sig = read_signature(tiny_run)
    assert sig["checkpoints"] == steps and sig["model"]["n_layers"] == 2
    assert "match_value" in sig["roles"] and sig["splits"]["test_iid"] == 128
    sidecar = read_sidecar(tiny_run, 60)
    assert sidecar["metrics"] == read_metrics(tiny_run)[-1]["splits"]


def test_a_truncated_checkpoint_is_reported_not_loaded(tiny_run: Path, tmp_path: Path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    path = weights_path(run, 20)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt checkpoint"):
        load_state(run, 20)


def _train_cmd(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hypodsl.cli",
        "train",
        "--config",
        "tiny",
        "--out",
        str(out),
        "--threads",
        "1",
    ]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_state(run, TINY.steps)


@pytest.mark.slow
def test_killed_training_resumes_to_exactly_the_uninterrupted_weights(tmp_path: Path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight = tmp_path / "straight"
    subprocess.run(_train_cmd(straight), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_cmd(killed),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (resume_step(killed) or 0) >= 20:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    step_at_kill = resume_step(killed)
    assert step_at_kill is not None
    assert step_at_kill < TINY.steps, "the run finished before it could be killed"

    subprocess.run(_train_cmd(killed), check=True, env=env, capture_output=True)
    a, b = _weights(straight), _weights(killed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [m["step"] for m in read_metrics(killed)] == TINY.checkpoint_steps()
    assert read_metrics(killed) == read_metrics(straight)
