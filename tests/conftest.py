"""Shared fixtures: a small generated benchmark, and a tiny run trained once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

torch.set_num_threads(2)

# Property tests draw the same examples on every run, so CI is deterministic; set
# HYPOTHESIS_PROFILE=explore to search with fresh random examples instead.
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

pytest_plugins = ["pytester"]

SMALL_DATA = {
    "train": 500,
    "val_iid": 64,
    "test_iid": 64,
    "heldout": 64,
    "structural_ood": 64,
    "counterfactual": 64,
}


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep the measurement cache of every test out of the working directory."""
    import os

    from runner.engine.cache import ENV_VAR

    previous = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = str(tmp_path_factory.mktemp("hypo-cache"))
    yield
    if previous is None:
        os.environ.pop(ENV_VAR, None)
    else:
        os.environ[ENV_VAR] = previous


@pytest.fixture(scope="session")
def small_arrays():
    from runner.kv.dataset import DataConfig, generate

    return generate(DataConfig(seed=3, **SMALL_DATA))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `tiny` config trained to its end (about 5 s)."""
    from runner.model.configs import NAMED_CONFIGS
    from runner.train.loop import train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    train(NAMED_CONFIGS["tiny"], run_dir)
    return run_dir
