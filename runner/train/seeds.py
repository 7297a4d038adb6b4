"""A seed matrix: one config trained once per seed, into OUT/seed-S/, here or on Ray.

Every seed's run directory gets a copy of the same data (the manifest and the split files it
names), so the seeds differ only in the weights' initialisation and the batch order. Training
resumes, so a seed whose worker was killed is finished by Ray's retry (or by running again).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from runner.kv import dataset
from runner.model.checkpoints import list_steps
from runner.model.configs import TrainConfig
from runner.model.hf_import import copy_splits
from runner.model.rundir import data_dir


def seed_dir(out: Path, seed: int) -> Path:
    return out / f"seed-{seed}"


def prepare(out: Path, seeds: list[int], data: Path) -> None:
    """Each seed's run directory with the data copied in (kept when already there)."""
    manifest = dataset.load_manifest(data)  # a clear error before anything is written
    for seed in seeds:
        target = data_dir(seed_dir(out, seed))
        if not (target / "dataset.json").is_file():
            copy_splits(data, manifest, target)


def train_seed(config_json: str, run_dir: str, seed: int, threads: int | None) -> float:
    """Train one seed to its end (resuming); returns the wall time in seconds."""
    from runner.train.loop import train

    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    config = TrainConfig.model_validate_json(config_json).model_copy(update={"seed": seed})
    train(config, Path(run_dir))
    return time.perf_counter() - started


def trained(config: TrainConfig, out: Path, seed: int) -> bool:
    return config.steps in list_steps(seed_dir(out, seed))
