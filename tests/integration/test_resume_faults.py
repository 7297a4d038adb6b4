"""A kill at any write point of training resumes to exactly the weights of an unkilled run.

Every file training writes goes through `runner.atomic` (a temporary file, then `os.replace`).
The test stops a short run at each `os.replace` in turn, once just before the rename and once
just after it, as a kill at that instant would, then trains again from what is on disk and
compares the final weights and metrics with a run that was never stopped.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from runner.model.checkpoints import list_steps, load_state
from runner.model.configs import NAMED_CONFIGS
from runner.model.rundir import data_dir, read_metrics
from runner.train.loop import train

SHORT = NAMED_CONFIGS["tiny"].model_copy(
    update={"name": "short", "steps": 10, "checkpoint_schedule": ((0, 5),), "eval_sequences": 8}
)


class Killed(BaseException):
    """Stands for SIGKILL: no `except Exception` handler in training can catch it."""


def _run_with(run_dir: Path, data: Path) -> None:
    shutil.copytree(data, data_dir(run_dir))
    train(SHORT, run_dir)


def _kill_at(monkeypatch: pytest.MonkeyPatch, point: int, after_rename: bool) -> None:
    real_replace, calls = os.replace, [0]

    def replace(src, dst):
        calls[0] += 1
        if calls[0] == point and not after_rename:
            raise Killed
        real_replace(src, dst)
        if calls[0] == point:
            raise Killed

    monkeypatch.setattr(os, "replace", replace)


def _count_writes(monkeypatch: pytest.MonkeyPatch, run_dir: Path, data: Path) -> int:
    real_replace, calls = os.replace, [0]

    def replace(src, dst):
        calls[0] += 1
        real_replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(os, "replace", replace)
        _run_with(run_dir, data)
    return calls[0]


@pytest.mark.slow
def test_a_kill_at_every_write_point_resumes_to_the_unkilled_weights(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    data = data_dir(tiny_run)
    straight = tmp_path / "straight"
    writes = _count_writes(monkeypatch, straight, data)
    assert writes >= 1 + 3 * 4  # config, then each checkpoint's weights, sidecar, metrics, resume
    expected = load_state(straight, SHORT.steps)

    for point in range(1, writes + 1):
        for after_rename in (False, True):
            run_dir = tmp_path / f"killed_{point}_{int(after_rename)}"
            with monkeypatch.context() as m:
                _kill_at(m, point, after_rename)
                with pytest.raises(Killed):
                    _run_with(run_dir, data)
            train(SHORT, run_dir)  # started again with the same command
            where = f"kill at write {point} ({'after' if after_rename else 'before'} rename)"
            got = load_state(run_dir, SHORT.steps)
            assert all(torch.equal(got[k], expected[k]) for k in expected), where
            assert read_metrics(run_dir) == read_metrics(straight), where
            assert list_steps(run_dir) == list_steps(straight), where
