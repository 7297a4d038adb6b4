"""Checkpoints: model weights as safetensors plus a JSON sidecar, never pickle.

`RUN/checkpoints/step_000500.safetensors` holds the weights; `step_000500.json` holds the step,
the config and data hashes, the metrics at that step and the SHA-256 of the weights file. A
checkpoint counts only once its sidecar exists (written last), and loading verifies the hash,
so a truncated or altered file is reported as corrupt instead of being loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from hypodsl.errors import UserError
from runner.atomic import atomic_write_bytes, atomic_write_text
from runner.model.transformer import ModelConfig, Transformer
from runner.safe_files import read_bounded, regular_file_size

_STEP_FILE = re.compile(r"step_(\d+)\.json$")


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated or does not match its sidecar."""


def weights_path(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:06d}.safetensors"


def sidecar_path(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:06d}.json"


def save_checkpoint(run_dir: Path, step: int, model: torch.nn.Module, meta: dict[str, Any]) -> str:
    """Write weights then sidecar, each atomically; return the weights' SHA-256."""
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = save_safetensors(weights)
    digest = hashlib.sha256(blob).hexdigest()
    atomic_write_bytes(weights_path(run_dir, step), blob)
    sidecar = {"step": step, "sha256": digest, **meta}
    atomic_write_text(sidecar_path(run_dir, step), json.dumps(sidecar, indent=2) + "\n")
    return digest


def list_steps(run_dir: Path) -> list[int]:
    """Steps that have a sidecar (the mark of a completely written checkpoint)."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _STEP_FILE.match(p.name)))


MAX_SIDECAR_BYTES = 16 * 1024 * 1024
MAX_WEIGHTS_BYTES = 16 * 1024**3  # far above any model this project trains


def read_sidecar(run_dir: Path, step: int) -> dict[str, Any]:
    path = sidecar_path(run_dir, step)
    if not os.path.lexists(path):
        raise CheckpointError(f"no checkpoint at step {step} in {run_dir}")
    try:
        sidecar = json.loads(
            read_bounded(path, MAX_SIDECAR_BYTES, "sidecar", CheckpointError).decode("utf-8")
        )
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: corrupt sidecar (not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: corrupt sidecar ({e.msg})") from None
    if not isinstance(sidecar, dict):
        raise CheckpointError(f"{path}: corrupt sidecar (not a JSON object)")
    if not isinstance(sidecar.get("sha256"), str) or sidecar.get("step") != step:
        raise CheckpointError(f"{path}: corrupt sidecar (needs `step` {step} and `sha256`)")
    return sidecar


def load_state(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    """The weights of one checkpoint, verified against the sidecar's hash."""
    expected = read_sidecar(run_dir, step)["sha256"]
    path = weights_path(run_dir, step)
    blob = read_bounded(path, MAX_WEIGHTS_BYTES, "weights file", CheckpointError)
    if hashlib.sha256(blob).hexdigest() != expected:
        raise CheckpointError(f"{path}: corrupt checkpoint (SHA-256 does not match its sidecar)")
    try:
        return load_safetensors(blob)
    except SafetensorError as e:
        raise CheckpointError(f"{path}: unreadable safetensors file ({e})") from None


def load_model(run_dir: Path, step: int, config: ModelConfig) -> Transformer:
    """The model at `step`; weights of another dtype or shape, or not finite, are refused."""
    model = Transformer(config)
    state = load_state(run_dir, step)
    path = weights_path(run_dir, step)
    expected = model.state_dict()
    for name, tensor in state.items():
        want = expected.get(name)
        if want is not None and tensor.dtype != want.dtype:
            raise CheckpointError(
                f"{path}: `{name}` is {tensor.dtype}, the model needs {want.dtype}"
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: `{name}` holds NaN or Inf values")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(
            f"{weights_path(run_dir, step)}: does not fit the model: {e}"
        ) from None
    return model.eval()


def file_sha256(run_dir: Path, step: int) -> str:
    return str(read_sidecar(run_dir, step)["sha256"])


def verified_sha256(run_dir: Path, step: int) -> str:
    """The SHA-256 of the weights file as it is now, checked against its sidecar."""
    expected = file_sha256(run_dir, step)
    path = weights_path(run_dir, step)
    regular_file_size(path, "weights file", CheckpointError)  # a FIFO would block the hash below
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise CheckpointError(f"{path}: corrupt checkpoint (SHA-256 does not match its sidecar)")
    return expected
