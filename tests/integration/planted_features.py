"""A run directory holding the planted circuit and its hand-set feature basis.

Step 0 is the planted model with its retrieval head's write removed (L1.H0 writes nothing), step
10 the full planted model; `features/values` is `runner.features.planted`'s basis, registered in
the signature as `hypo features fit` would register a fitted one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from runner.atomic import atomic_write_text
from runner.features import planted as fp
from runner.features.basis import BasisInfo, FittedRun, save_basis, signature_entry
from runner.kv import dataset
from runner.model.checkpoints import file_sha256, save_checkpoint
from runner.model.configs import TrainConfig
from runner.model.planted import CONFIG, planted_model
from runner.model.rundir import register_basis, write_signature

BASIS = "features/values"


def without_retrieval() -> torch.nn.Module:
    model = planted_model()
    rows = slice(0, CONFIG.d_head)  # head 0 of layer 1
    with torch.no_grad():
        model.block(1).attn.c_proj.weight[:, rows] = 0.0
    return model


def write_planted_run(run_dir: Path, sizes: dict[str, int]) -> Path:
    config = TrainConfig(
        name="planted", model=CONFIG, data=dataset.DataConfig(seed=3, **sizes), steps=10,
        checkpoint_schedule=((0, 10),),
    )  # fmt: skip
    run_dir.mkdir(parents=True)
    atomic_write_text(run_dir / "config.json", config.model_dump_json(indent=2) + "\n")
    manifest = dataset.save(run_dir / "data", config.data, dataset.generate(config.data))
    meta = {"config_hash": config.content_hash(), "data_hash": manifest["data_hash"], "metrics": {}}
    save_checkpoint(run_dir, 0, without_retrieval(), meta)
    save_checkpoint(run_dir, 10, planted_model(), meta)
    write_signature(run_dir, config, manifest)
    info = BasisInfo(
        site=fp.SITE, d_in=CONFIG.d_model, d_sae=fp.WIDTH,
        run=FittedRun(
            name=config.name, config_hash=config.content_hash(), data_hash=manifest["data_hash"]
        ),
        checkpoints={s: file_sha256(run_dir, s) for s in (0, 10)},
        fit={"by": "hand (runner.features.planted)"}, weights_sha256="",
    )  # fmt: skip
    info = save_basis(run_dir / BASIS, fp.planted_basis(), info, config.name, CONFIG.n_ctx)
    register_basis(run_dir, BASIS, signature_entry(info))
    return run_dir
