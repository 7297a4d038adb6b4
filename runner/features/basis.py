"""A feature basis on disk: SAELens's file layout plus what hypodsl needs to trust it.

```
RUN/features/NAME/cfg.json                 SAELens's config: d_in, d_sae, hook_name, architecture
RUN/features/NAME/sae_weights.safetensors  W_enc, b_enc, W_dec, b_dec (float32)
RUN/features/NAME/hypodsl_basis.json       the run, checkpoints and data it was fitted on, the
                                           fit settings, the weights' SHA-256, metrics per step
```

SAELens opens the directory with `SAE.load_from_disk(path)`; hypodsl never imports SAELens.
Loading checks every file (a regular file of bounded size, valid JSON, the fields it needs,
tensors of the declared shapes, float32 and finite, the weights' hash) and that the basis was
fitted on the run it is read from: a basis copied from another run or directory is refused.
Each basis is also listed in the run's `signature.json` (`bases`), so `hypo check` validates a
spec's feature ids and sites without loading anything.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from hypodsl.errors import UserError
from hypodsl.jsonfile import JsonFileError, read_json, validated
from runner.atomic import atomic_write_bytes, atomic_write_text
from runner.features.sae import SparseAutoencoder
from runner.kv import dataset
from runner.model.rundir import data_dir, read_config
from runner.safe_files import FileRefused, read_bounded, safetensors_header

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
INFO_FILE = "hypodsl_basis.json"
MAX_WEIGHTS_BYTES = 4 * 1024**3
FORMAT = 1


class BasisError(UserError):
    """A basis directory that cannot be used; the message names the file and says why."""


class FittedRun(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    config_hash: str
    data_hash: str


class StepMetrics(BaseModel):
    """How well the basis reconstructs one checkpoint's activations (the draft's fit table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    explained_variance: float  # 1 − Σ|x − x̂|² / Σ|x − mean x|²
    active_fraction: float  # mean L0 / d_sae
    dead_features: int  # features never active on this checkpoint's activations
    reconstruction_loss: float  # mean |x − x̂|² / mean |x − mean x|² (= 1 − EV, per vector)


class BasisInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = FORMAT
    site: str
    d_in: int = Field(ge=1)
    d_sae: int = Field(ge=1)
    run: FittedRun
    checkpoints: dict[int, str]  # step -> SHA-256 of the weights the activations came from
    fit: dict[str, Any]  # the settings of `hypo features fit`
    weights_sha256: str
    metrics: dict[int, StepMetrics] = Field(default_factory=dict)


class _SaeLensConfig(BaseModel):
    """The fields of SAELens's cfg.json that hypodsl reads (others are kept, not checked)."""

    model_config = ConfigDict(extra="allow")

    architecture: str
    d_in: int = Field(ge=1)
    d_sae: int = Field(ge=1)
    hook_name: str
    apply_b_dec_to_input: bool = True


@dataclass(frozen=True)
class Basis:
    sae: SparseAutoencoder
    info: BasisInfo
    directory: Path

    def to(self, device: str | torch.device) -> Basis:
        """This basis with its SAE on `device`: itself on its own device, else a copy (the
        module's own `.to` would move the one every user of this basis shares)."""
        if next(self.sae.parameters()).device == torch.device(device):
            return self
        return Basis(copy.deepcopy(self.sae).to(device), self.info, self.directory)


def saelens_config(info: BasisInfo, model_name: str, n_ctx: int) -> dict[str, Any]:
    """cfg.json as SAELens writes it for a standard ReLU SAE."""
    layer = info.site.split(".")[1] if info.site.startswith("blocks.") else None
    return {
        "architecture": "standard",
        "d_in": info.d_in,
        "d_sae": info.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "model_name": model_name,
        "hook_name": info.site,
        "hook_layer": int(layer) if layer is not None and layer.isdigit() else -1,
        "hook_head_index": None,
        "activation_fn_str": "relu",
        "activation_fn_kwargs": {},
        "apply_b_dec_to_input": True,
        "finetuning_scaling_factor": False,
        "normalize_activations": "none",
        "context_size": n_ctx,
        "prepend_bos": True,
        "dataset_path": "",
        "model_from_pretrained_kwargs": {},
    }


def save_basis(
    directory: Path, sae: SparseAutoencoder, info: BasisInfo, model_name: str, n_ctx: int
) -> BasisInfo:
    """Write the three files (weights first, the info last: a basis counts once it exists)."""
    blob = save_safetensors(sae.state())
    info = info.model_copy(update={"weights_sha256": hashlib.sha256(blob).hexdigest()})
    atomic_write_bytes(directory / WEIGHTS_FILE, blob)
    cfg = saelens_config(info, model_name, n_ctx)
    atomic_write_text(directory / CFG_FILE, json.dumps(cfg, indent=2) + "\n")
    atomic_write_text(directory / INFO_FILE, info.model_dump_json(indent=2) + "\n")
    return info


def read_info(directory: Path) -> BasisInfo:
    """The basis's hypodsl_basis.json, checked (no tensors are read)."""
    if not directory.is_dir():
        raise BasisError(f"{directory}: no basis directory (fit one with `hypo features fit`)")
    path = directory / INFO_FILE
    try:
        info: BasisInfo = validated(path, BasisInfo, read_json(path))
    except JsonFileError as e:
        raise BasisError(str(e)) from None
    if info.format != FORMAT:
        raise BasisError(f"{path}: basis format {info.format}; this hypodsl reads {FORMAT}")
    if not HOOK_NAME.fullmatch(info.site):
        raise BasisError(f"{path}: site {info.site!r} is not a hook name (blocks.1.hook_z, say)")
    return info


HOOK_NAME = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")


def load_basis(directory: Path, run: FittedRun | None = None) -> Basis:
    """The basis in `directory`, every file checked; `run`, when given, must be the one it was
    fitted on."""
    info = read_info(directory)
    cfg_path = directory / CFG_FILE
    try:
        cfg: _SaeLensConfig = validated(cfg_path, _SaeLensConfig, read_json(cfg_path))
    except JsonFileError as e:
        raise BasisError(str(e)) from None
    if cfg.architecture != "standard" or not cfg.apply_b_dec_to_input:
        raise BasisError(f"{cfg_path}: only SAELens's `standard` architecture is read")
    if (cfg.d_in, cfg.d_sae, cfg.hook_name) != (info.d_in, info.d_sae, info.site):
        raise BasisError(f"{cfg_path}: d_in, d_sae or hook_name disagree with {INFO_FILE}")
    if run is not None and run != info.run:
        raise BasisError(
            f"{directory}: fitted on run `{info.run.name}` (data {info.run.data_hash[:12]}, "
            f"config {info.run.config_hash[:12]}), not on this run (data {run.data_hash[:12]}, "
            f"config {run.config_hash[:12]})"
        )
    weights = directory / WEIGHTS_FILE
    tensors = _read_weights(weights, info)
    sae = SparseAutoencoder(info.d_in, info.d_sae)
    for name in WEIGHT_NAMES:
        if not bool(torch.isfinite(tensors[name]).all()):
            raise BasisError(f"{weights}: `{name}` holds NaN or Inf values")
    sae.load_state_dict({k: tensors[k] for k in WEIGHT_NAMES})
    return Basis(sae.eval().requires_grad_(False), info, directory)


WEIGHT_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec")


def _check_declared_shapes(path: Path, info: BasisInfo) -> None:
    """The weights file's header must list float32 tensors of the shapes `info` declares (and
    safetensors_header checks that their bytes lie in the file): a hostile d_sae is refused
    before the SAE is built."""
    try:
        header = safetensors_header(path)
    except FileRefused as e:
        raise BasisError(str(e)) from None
    d_in, d_sae = info.d_in, info.d_sae
    expected = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    for name, shape in expected.items():
        entry = header.get(name)
        if entry is None:
            raise BasisError(f"{path}: `{name}` is missing")
        if (entry.dtype, entry.shape) != ("F32", shape):
            raise BasisError(
                f"{path}: `{name}` is {entry.dtype} {list(entry.shape)}, not F32 {list(shape)} "
                f"(d_in {d_in}, d_sae {d_sae} in {INFO_FILE})"
            )


def _read_weights(path: Path, info: BasisInfo) -> dict[str, torch.Tensor]:
    blob = read_bounded(path, MAX_WEIGHTS_BYTES, "basis weights", BasisError)
    if hashlib.sha256(blob).hexdigest() != info.weights_sha256:
        raise BasisError(f"{path}: corrupt basis (SHA-256 does not match {INFO_FILE})")
    _check_declared_shapes(path, info)  # before a tensor, or the SAE, is built
    try:
        return load_safetensors(blob)
    except SafetensorError as e:
        raise BasisError(f"{path}: unreadable safetensors file ({e})") from None


def run_identity(run_dir: Path) -> FittedRun:
    """The run a basis read from `run_dir` must have been fitted on."""
    config = read_config(run_dir)
    manifest = dataset.load_manifest(data_dir(run_dir))
    return FittedRun(
        name=config.name, config_hash=config.content_hash(), data_hash=manifest["data_hash"]
    )


def signature_entry(info: BasisInfo) -> dict[str, Any]:
    """What `signature.json` lists of a basis, for `hypo check`."""
    return {
        "site": info.site,
        "d_in": info.d_in,
        "d_sae": info.d_sae,
        "config_hash": info.run.config_hash,
        "data_hash": info.run.data_hash,
        "weights_sha256": info.weights_sha256,
    }


def basis_key(run_dir: Path, directory: Path) -> str:
    """A basis's name in the signature: its directory relative to the run, as a spec writes it."""
    return Path(directory).resolve().relative_to(Path(run_dir).resolve()).as_posix()
