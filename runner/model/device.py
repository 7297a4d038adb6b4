"""Which torch device a command runs on: `--device auto|cpu|cuda`."""

from __future__ import annotations

import torch

from runner.model.rundir import RunError


def resolve_device(device: str) -> str:
    """`auto`: CUDA when there is a GPU, else CPU. Asking for CUDA without one is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RunError("--device cuda: no CUDA device is available (use --device auto or cpu)")
    if device not in ("cpu", "cuda"):
        raise RunError(f"--device {device}: expected auto, cpu or cuda")
    return device
