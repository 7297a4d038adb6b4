"""The layout of a run directory and the plain-JSON files in it.

```
RUN/config.json      the TrainConfig it was trained with
RUN/signature.json   what a spec may name: layers, heads, widths, vocabulary, roles, splits,
                     checkpoint steps (read by `hypo check` without loading torch models)
RUN/metrics.jsonl    one line of per-split metrics per checkpoint
RUN/checkpoints/     step_NNNNNN.safetensors + step_NNNNNN.json
RUN/data/            the generated benchmark it was trained on
RUN/features/NAME/   feature bases fitted on it (runner.features.basis), listed in signature.json
RUN/resume.*         the latest optimiser state, for resuming after a kill
```
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hypodsl.errors import UserError
from hypodsl.jsonfile import load_signature, read_json, validated
from runner.atomic import atomic_write_text
from runner.kv import vocab
from runner.kv.dataset import role_names
from runner.model.checkpoints import list_steps
from runner.model.configs import TrainConfig


class RunError(UserError):
    """A run directory that is missing or incomplete."""


def config_path(run_dir: Path) -> Path:
    return run_dir / "config.json"


def data_dir(run_dir: Path) -> Path:
    return run_dir / "data"


def read_config(run_dir: Path) -> TrainConfig:
    path = config_path(run_dir)
    if not path.exists():
        raise RunError(
            f"{run_dir}: not a run directory (no config.json); train one with `hypo train`"
        )
    config: TrainConfig = validated(path, TrainConfig, read_json(path))
    return config


def write_signature(run_dir: Path, config: TrainConfig, data_manifest: dict[str, Any]) -> None:
    m = config.model
    signature = {
        "run": config.name,
        "model": {
            "n_layers": m.n_layers,
            "n_heads": m.n_heads,
            "d_model": m.d_model,
            "d_head": m.d_head,
            "d_ff": m.d_ff,
            "n_ctx": m.n_ctx,
        },
        "vocab": data_manifest.get("token_names") or vocab.token_names(),
        "roles": role_names(data_manifest),
        "splits": dict(data_manifest["splits"]),
        "checkpoints": list_steps(run_dir),
        "final_step": config.steps,
        "data_hash": data_manifest["data_hash"],
        "config_hash": config.content_hash(),
        "bases": _registered_bases(run_dir),
    }
    atomic_write_text(run_dir / "signature.json", json.dumps(signature, indent=2) + "\n")


def _registered_bases(run_dir: Path) -> dict[str, Any]:
    """The feature bases the current signature lists (kept when training rewrites it)."""
    path = run_dir / "signature.json"
    if not path.is_file():
        return {}
    try:
        bases = json.loads(path.read_text()).get("bases", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return dict(sorted(bases.items())) if isinstance(bases, dict) else {}


def register_basis(run_dir: Path, key: str, entry: dict[str, Any]) -> None:
    """List a fitted feature basis (RUN/KEY) in the run's signature.json."""
    path = run_dir / "signature.json"
    signature = load_signature(path)
    bases = _registered_bases(run_dir)
    bases[key] = entry
    signature["bases"] = dict(sorted(bases.items()))
    atomic_write_text(path, json.dumps(signature, indent=2) + "\n")


def read_signature(path: Path) -> dict[str, Any]:
    sig = path / "signature.json" if path.is_dir() and path.name != "signature.json" else path
    if not os.path.lexists(sig):
        raise RunError(f"{sig}: no signature.json (is this a run directory?)")
    return load_signature(sig)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{path}: corrupt metrics ({e})") from None
