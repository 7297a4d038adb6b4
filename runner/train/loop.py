"""Training with dense checkpoints, resumable after a kill at any moment.

Plain next-token prediction with AdamW, linear warm-up then cosine decay. The batch of step s is
a pure function of (seed, s): the train split is reshuffled each epoch by a generator seeded with
(seed, epoch). Together with the optimiser state saved at every checkpoint, this makes a run that
is killed and started again end with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file as load_tensors
from safetensors.torch import save as save_tensors

from runner.atomic import atomic_write_bytes, atomic_write_text
from runner.kv import dataset
from runner.kv.dataset import EVAL_SPLITS, Split
from runner.measure import behaviour
from runner.measure.scoring import split_summary
from runner.model.checkpoints import save_checkpoint
from runner.model.configs import TrainConfig
from runner.model.rundir import RunError, config_path, data_dir, write_signature
from runner.model.transformer import Transformer

# on_step(step_done, total_steps, loss); on_checkpoint(step, metrics)
StepCallback = Callable[[int, int, float], None]
CheckpointCallback = Callable[[int, dict[str, dict[str, float]]], None]


def learning_rate(config: TrainConfig, step: int) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    floor = config.lr * config.min_lr_ratio
    return floor + 0.5 * (config.lr - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


class BatchOrder:
    """Which train sequences form the batch of each step: a pure function of (seed, step)."""

    def __init__(self, n_sequences: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed = n_sequences, batch_size, seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return self._perms[epoch]

    def indices(self, step: int) -> np.ndarray:
        flat = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
        return np.array([self._perm(int(i // self.n))[i % self.n] for i in flat])


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]  # matrices and embeddings
    no_decay = [p for p in model.parameters() if p.dim() < 2]  # biases and LayerNorm gains
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


def evaluate(model: torch.nn.Module, splits: dict[str, Split]) -> dict[str, dict[str, float]]:
    model.eval()
    metrics = {name: split_summary(model, split) for name, split in splits.items()}
    model.train()
    return metrics


RESUME_FILE = "resume.safetensors"
_LEGACY_RESUME_META = "resume.json"  # written beside it before the step moved into its header


def _save_resume(
    run_dir: Path, step: int, model: torch.nn.Module, opt: torch.optim.Optimizer
) -> None:
    """Weights, optimiser state, step and param groups in one file, renamed into place at once:
    its rename is the resume's single commit point, so a kill at any instant leaves either the
    old resume state or the new one, never weights of one step with the step of another."""
    state = opt.state_dict()
    tensors = {f"model.{k}": v.detach().cpu().clone() for k, v in model.state_dict().items()}
    for idx, slots in state["state"].items():
        tensors.update({f"opt.{idx}.{name}": t.cpu().clone() for name, t in slots.items()})
    header = {"step": str(step), "param_groups": json.dumps(state["param_groups"])}
    atomic_write_bytes(run_dir / RESUME_FILE, save_tensors(tensors, metadata=header))
    (run_dir / _LEGACY_RESUME_META).unlink(missing_ok=True)


def resume_step(run_dir: Path) -> int | None:
    """The step a restarted run resumes from, or None when it would start afresh."""
    if not (run_dir / RESUME_FILE).exists():
        return None
    return int(_resume_meta(run_dir)["step"])


def _resume_meta(run_dir: Path) -> dict[str, Any]:
    try:
        with safe_open(str(run_dir / RESUME_FILE), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise RunError(
            f"{run_dir / RESUME_FILE} is unreadable ({e}); delete it to restart"
        ) from None
    if "step" in header:
        return {"step": int(header["step"]), "param_groups": json.loads(header["param_groups"])}
    legacy = run_dir / _LEGACY_RESUME_META  # a run started before the single-file format
    if not legacy.exists():
        raise RunError(f"{run_dir / RESUME_FILE}: no step in its header; delete it to restart")
    return dict(json.loads(legacy.read_text()))


def _load_resume(run_dir: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> int:
    meta = _resume_meta(run_dir)
    device = next(model.parameters()).device
    tensors = load_tensors(str(run_dir / RESUME_FILE), device=str(device))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            slots.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": slots, "param_groups": meta["param_groups"]})
    return int(meta["step"])


def _prepare_run_dir(config: TrainConfig, run_dir: Path) -> dict[str, Any]:
    """Write config.json (or check it matches) and make sure the run's data exists."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = config_path(run_dir)
    if path.exists():
        existing = TrainConfig.model_validate_json(path.read_text())
        if existing != config:
            raise RunError(
                f"{run_dir} holds a run with another config ({existing.name}); "
                "resume it with that config or choose another --out"
            )
    else:
        atomic_write_text(path, config.model_dump_json(indent=2) + "\n")
    data = data_dir(run_dir)
    if (data / "dataset.json").exists():
        manifest = dataset.load_manifest(data)
        if manifest["config"] != config.data.model_dump():
            raise RunError(f"{data} was generated with another data config than {config.name}'s")
        return manifest
    return dataset.save(data, config.data, dataset.generate(config.data))


def _append_metrics(run_dir: Path, step: int, metrics: dict[str, dict[str, float]]) -> None:
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    # After a resume, drop lines the killed process wrote past the resumed checkpoint.
    kept = [line for line in lines if line.strip() and json.loads(line)["step"] < step]
    kept.append(json.dumps({"step": step, "splits": metrics}))
    atomic_write_text(path, "\n".join(kept) + "\n")


def train(
    config: TrainConfig,
    run_dir: Path,
    on_step: StepCallback | None = None,
    on_checkpoint: CheckpointCallback | None = None,
    device: str = "cpu",
) -> Transformer:
    """Train (or resume) the run in `run_dir` and return the final model.

    On `device` "cuda" the run is the same schedule and batches, but not bit-identical to a CPU
    run (float kernels differ); checkpoints are written from CPU copies either way.
    """
    manifest = _prepare_run_dir(config, run_dir)
    data = data_dir(run_dir)
    train_tokens = dataset.load_tokens(data, "train")
    eval_splits = {
        s: dataset.load_split(data, s, config.eval_sequences) for s in ("train", *EVAL_SPLITS)
    }
    torch.manual_seed(config.seed)
    model = Transformer(config.model).to(device)
    opt = make_optimizer(model, config)
    order = BatchOrder(len(train_tokens), config.batch_size, config.seed)
    checkpoint_steps = set(config.checkpoint_steps())
    meta = {"config_hash": config.content_hash(), "data_hash": manifest["data_hash"]}

    start = _load_resume(run_dir, model, opt) if (run_dir / RESUME_FILE).exists() else 0
    if start == 0:
        _checkpoint(run_dir, 0, model, opt, eval_splits, meta, manifest, config, on_checkpoint)
    model.train()
    for step in range(start, config.steps):
        for group in opt.param_groups:
            group["lr"] = learning_rate(config, step)
        tokens = torch.as_tensor(train_tokens[order.indices(step)]).to(device)
        loss = behaviour.next_token_loss(model(tokens), tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        if on_step:
            on_step(step + 1, config.steps, loss.item())
        if step + 1 in checkpoint_steps:
            _checkpoint(
                run_dir, step + 1, model, opt, eval_splits, meta, manifest, config, on_checkpoint
            )
    return model.eval()


def _checkpoint(
    run_dir: Path,
    step: int,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    eval_splits: dict[str, Split],
    meta: dict[str, str],
    manifest: dict[str, Any],
    config: TrainConfig,
    on_checkpoint: CheckpointCallback | None,
) -> None:
    metrics = evaluate(model, eval_splits)
    save_checkpoint(run_dir, step, model, {**meta, "metrics": metrics})
    _append_metrics(run_dir, step, metrics)
    _save_resume(run_dir, step, model, opt)
    write_signature(run_dir, config, manifest)
    if on_checkpoint:
        on_checkpoint(step, metrics)
