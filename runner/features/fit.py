"""`hypo features fit`: one sparse autoencoder for a hook site, on activations pooled across a
run's checkpoints, so that feature i is the same direction at every step (a *shared basis*).

1. Activations: the same `vectors_per_step` token positions (drawn once, seeded, among the real
   tokens of the first `sequences` sequences of a split) at every chosen checkpoint.
2. Fit: inputs divided by one scale s (mean |x| / √d_in over the pool, so the L1 weight means the
   same at every site), Adam on |x − x̂|² + l1 · Σ_i f_i with decoder rows renormalised to unit
   length after each step (Bricken et al. 2023). Batches are a pure function of (seed, step), and
   the state is saved every `SAVE_EVERY` steps, so a killed fit resumes to the same weights.
3. The scale is folded into the weights (W_enc / s, b_dec · s, W_dec · s): the stored basis reads
   raw activations, as SAELens expects, with the same feature activations.
4. Metrics per checkpoint (explained variance, active fraction, dead features, reconstruction
   loss) on that checkpoint's pooled activations.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from runner.atomic import atomic_write_bytes
from runner.features.basis import (
    MAX_WEIGHTS_BYTES,
    BasisError,
    BasisInfo,
    FittedRun,
    StepMetrics,
    basis_key,
    save_basis,
    signature_entry,
)
from runner.features.fit_checks import check_fit_memory, site_width
from runner.features.sae import SparseAutoencoder
from runner.kv import dataset
from runner.model import checkpoints
from runner.model.hooks import run_with_cache
from runner.model.rundir import data_dir, read_config, register_basis
from runner.safe_files import read_bounded

SAVE_EVERY = 250
STATE_FILE = ".fit_state.safetensors"
ProgressFn = Callable[[str, int, int], None]  # (phase, done, total)


class FitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    site: str
    width: int = Field(ge=1, le=1 << 20)
    steps: tuple[int, ...] = ()  # checkpoints pooled; () = every checkpoint of the run
    split: str = "train"
    sequences: int = Field(default=256, ge=1)
    vectors_per_step: int = Field(default=4096, ge=1)
    l1: float = Field(default=1.0, ge=0)
    train_steps: int = Field(default=3000, ge=1)
    batch_size: int = Field(default=1024, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    seed: int = 0

    def content_hash(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


# --- activations ----------------------------------------------------------------------------


def positions(lengths: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(sequence, position) of n real-token positions, drawn without replacement, sorted."""
    seq = np.repeat(np.arange(len(lengths)), lengths)
    pos = np.concatenate([np.arange(int(k)) for k in lengths])
    rng = np.random.default_rng([seed, 1])
    pick = np.sort(rng.choice(len(seq), size=min(n, len(seq)), replace=False))
    return seq[pick], pos[pick]


def activations_at(
    model: torch.nn.Module, tokens: torch.Tensor, site: str, where: tuple[np.ndarray, np.ndarray]
) -> torch.Tensor:
    """[vector, d] the site's activation at the chosen positions, in chunks of 64 sequences."""
    seq, pos = where
    out = []
    with torch.no_grad():
        for start in range(0, tokens.shape[0], 64):
            _, cache = run_with_cache(model, tokens[start : start + 64], [site])
            x = cache[site]
            if x.dim() != 3 or x.shape[-1] < 2:
                raise BasisError(
                    f"--site {site}: its activation is {list(x.shape)}; a basis needs one "
                    "vector per token ([batch, pos, d] with d ≥ 2)"
                )
            chosen = (seq >= start) & (seq < start + 64)
            out.append(x[seq[chosen] - start, pos[chosen]])
    return torch.cat(out)


def gather(
    run_dir: Path, settings: FitSettings, progress: ProgressFn | None = None
) -> tuple[dict[int, torch.Tensor], dict[int, str]]:
    """Each chosen checkpoint's pooled activations, and the SHA-256 of its weights."""
    config = read_config(run_dir)
    available = checkpoints.list_steps(run_dir)
    steps = list(settings.steps) or available
    missing = [s for s in steps if s not in available]
    if missing:
        raise BasisError(f"--steps: no checkpoint at step {missing[0]} in {run_dir}")
    split = dataset.load_split(data_dir(run_dir), settings.split, settings.sequences)
    n_pos = int(split.lengths.max())
    tokens = torch.as_tensor(split.tokens[:, :n_pos], dtype=torch.int64)
    where = positions(split.lengths, settings.vectors_per_step, settings.seed)
    acts, hashes = {}, {}
    for i, step in enumerate(steps):
        hashes[step] = checkpoints.verified_sha256(run_dir, step)
        model = checkpoints.load_model(run_dir, step, config.model)
        acts[step] = activations_at(model, tokens, settings.site, where)
        if progress:
            progress("activations", i + 1, len(steps))
    return acts, hashes


# --- fitting --------------------------------------------------------------------------------


def init_sae(d_in: int, width: int, mean: torch.Tensor, seed: int) -> SparseAutoencoder:
    sae = SparseAutoencoder(d_in, width)
    gen = torch.Generator().manual_seed(seed)
    directions = torch.randn(width, d_in, generator=gen)
    directions = directions / directions.norm(dim=1, keepdim=True)
    with torch.no_grad():
        sae.W_dec.copy_(directions)
        sae.W_enc.copy_(directions.T)
        sae.b_dec.copy_(mean)
    return sae


def _batch(n: int, size: int, seed: int, step: int) -> torch.Tensor:
    return torch.as_tensor(np.random.default_rng([seed, 2, step]).integers(0, n, size=size))


def train_sae(
    pool: torch.Tensor,
    settings: FitSettings,
    state_path: Path | None = None,
    progress: ProgressFn | None = None,
) -> tuple[SparseAutoencoder, float]:
    """Fit on pool [vector, d_in] (already scaled); return the SAE and its final loss.

    With `state_path`, the fit saves its state there every SAVE_EVERY steps and resumes from it.
    """
    sae = init_sae(pool.shape[1], settings.width, pool.mean(dim=0), settings.seed)
    opt = torch.optim.Adam(sae.parameters(), lr=settings.lr)
    start = _load_state(state_path, sae, opt, settings) if state_path else 0
    loss_value = float("nan")
    for step in range(start, settings.train_steps):
        x = pool[_batch(len(pool), settings.batch_size, settings.seed, step)]
        x_hat, f = sae(x)
        loss = (x_hat - x).pow(2).sum(dim=-1).mean() + settings.l1 * f.sum(dim=-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            sae.W_dec.div_(sae.W_dec.norm(dim=1, keepdim=True).clamp(min=1e-8))
        loss_value = float(loss.detach())
        if state_path and (step + 1) % SAVE_EVERY == 0 and step + 1 < settings.train_steps:
            _save_state(state_path, sae, opt, settings, step + 1)
        if progress and ((step + 1) % 50 == 0 or step + 1 == settings.train_steps):
            progress("fit", step + 1, settings.train_steps)
    return sae, loss_value


def _save_state(
    path: Path, sae: SparseAutoencoder, opt: torch.optim.Optimizer, settings: FitSettings, step: int
) -> None:
    """The SAE, Adam's moments and the step in one file, renamed into place (one commit point)."""
    tensors = {f"sae.{k}": v for k, v in sae.state().items()}
    for idx, slots in opt.state_dict()["state"].items():
        tensors.update({f"opt.{idx}.{k}": v.clone() for k, v in slots.items() if v.dim() > 0})
        tensors[f"opt.{idx}.step"] = torch.as_tensor([float(slots["step"])])
    header = {"step": str(step), "settings": settings.content_hash()}
    atomic_write_bytes(path, save_safetensors(tensors, metadata=header))


def _load_state(
    path: Path, sae: SparseAutoencoder, opt: torch.optim.Optimizer, settings: FitSettings
) -> int:
    if not path.exists():
        return 0
    try:
        blob = read_bounded(path, MAX_WEIGHTS_BYTES, "fit state", BasisError)  # not a FIFO
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_safetensors(blob)
    except (SafetensorError, OSError, ValueError) as e:
        raise BasisError(f"{path}: unreadable fit state ({e}); delete it to start again") from None
    if header.get("settings") != settings.content_hash():
        raise BasisError(
            f"{path.parent} holds an unfinished fit with other settings; delete {path.name} "
            "or choose another --out"
        )
    sae.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("sae.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for slots in state.values():
        slots["step"] = torch.tensor(float(slots["step"][0]))
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
    return int(header["step"])


def fold_scale(sae: SparseAutoencoder, scale: float) -> SparseAutoencoder:
    """The SAE for raw activations x from one fitted on x / scale (same feature activations)."""
    out = SparseAutoencoder(sae.d_in, sae.d_sae)
    with torch.no_grad():
        out.W_enc.copy_(sae.W_enc / scale)
        out.b_enc.copy_(sae.b_enc)
        out.W_dec.copy_(sae.W_dec * scale)
        out.b_dec.copy_(sae.b_dec * scale)
    return out.eval().requires_grad_(False)


def step_metrics(sae: SparseAutoencoder, x: torch.Tensor) -> StepMetrics:
    with torch.no_grad():
        x_hat, f = sae(x)
        residual = (x - x_hat).pow(2).sum()
        spread = (x - x.mean(dim=0)).pow(2).sum().clamp(min=1e-30)
        active = f > 0
    ev = float(1 - residual / spread)
    return StepMetrics(
        explained_variance=ev,
        active_fraction=float(active.float().mean()),
        dead_features=int((~active.any(dim=0)).sum()),
        reconstruction_loss=float(residual / spread),
    )


def fit_basis(
    run_dir: Path, out_dir: Path, settings: FitSettings, progress: ProgressFn | None = None
) -> BasisInfo:
    """Fit, store and register a basis (see the module docstring); resumes a killed fit."""
    config = read_config(run_dir)
    d_in = site_width(config.model, settings.site)
    check_fit_memory(d_in, settings.width, settings.batch_size)
    acts, hashes = gather(run_dir, settings, progress)
    pool = torch.cat(list(acts.values()))
    scale = float(pool.norm(dim=1).mean() / pool.shape[1] ** 0.5) or 1.0
    out_dir.mkdir(parents=True, exist_ok=True)
    state = out_dir / STATE_FILE
    fitted, loss = train_sae(pool / scale, settings, state, progress)
    sae = fold_scale(fitted, scale)
    manifest = dataset.load_manifest(data_dir(run_dir))
    info = BasisInfo(
        site=settings.site,
        d_in=pool.shape[1],
        d_sae=settings.width,
        run=FittedRun(
            name=config.name, config_hash=config.content_hash(), data_hash=manifest["data_hash"]
        ),
        checkpoints=hashes,
        fit={**settings.model_dump(mode="json"), "scale": scale, "final_loss": loss},
        weights_sha256="",
        metrics={step: step_metrics(sae, x) for step, x in acts.items()},
    )
    info = save_basis(out_dir, sae, info, model_name=config.name, n_ctx=config.model.n_ctx)
    state.unlink(missing_ok=True)
    try:
        key = basis_key(run_dir, out_dir)
    except ValueError:
        return info  # a basis stored outside the run cannot be named by a spec of it
    register_basis(run_dir, key, signature_entry(info))
    return info
