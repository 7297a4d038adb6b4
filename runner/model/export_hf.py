"""A run's checkpoints as Hugging Face GPT-2 directories (`config.json` + `model.safetensors`).

The model is GPT-2's architecture in nanoGPT's layout, so the export is a renaming: Hugging
Face's `Conv1D` stores a linear layer's weight as [in, out], the transpose of `nn.Linear`'s,
and the unembedding is tied to the token embedding (written once, as `transformer.wte`). No
dependency on transformers: the files are written with safetensors and json, and a test loads
them with `transformers.GPT2LMHeadModel`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save

from runner.atomic import atomic_write_bytes, atomic_write_text
from runner.model import checkpoints
from runner.model.rundir import RunError, read_config
from runner.model.transformer import ModelConfig

# Our names inside a block -> Hugging Face's, and whether the weight is transposed (Conv1D).
BLOCK_NAMES = {
    "ln1.weight": ("ln_1.weight", False),
    "ln1.bias": ("ln_1.bias", False),
    "attn.c_attn.weight": ("attn.c_attn.weight", True),
    "attn.c_attn.bias": ("attn.c_attn.bias", False),
    "attn.c_proj.weight": ("attn.c_proj.weight", True),
    "attn.c_proj.bias": ("attn.c_proj.bias", False),
    "ln2.weight": ("ln_2.weight", False),
    "ln2.bias": ("ln_2.bias", False),
    "mlp.c_fc.weight": ("mlp.c_fc.weight", True),
    "mlp.c_fc.bias": ("mlp.c_fc.bias", False),
    "mlp.c_proj.weight": ("mlp.c_proj.weight", True),
    "mlp.c_proj.bias": ("mlp.c_proj.bias", False),
}
TOP_NAMES = {
    "embed.weight": "transformer.wte.weight",
    "pos_embed.weight": "transformer.wpe.weight",
    "ln_final.weight": "transformer.ln_f.weight",
    "ln_final.bias": "transformer.ln_f.bias",
}


def hf_config(cfg: ModelConfig) -> dict[str, object]:
    """GPT2Config's fields for this model (no dropout, tanh GELU, tied embeddings)."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.n_ctx,
        "n_embd": cfg.d_model,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "n_inner": cfg.d_ff,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": cfg.ln_eps,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "bos_token_id": None,
        "eos_token_id": None,
        "torch_dtype": "float32",
    }


def hf_state_dict(state: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """Our state dict (a checkpoint's tensors) under Hugging Face GPT-2's names."""
    out = {hf: state[ours].contiguous() for ours, hf in TOP_NAMES.items()}
    for layer in range(n_layers):
        for ours, (hf, transposed) in BLOCK_NAMES.items():
            tensor = state[f"blocks.{layer}.{ours}"]
            out[f"transformer.h.{layer}.{hf}"] = (tensor.t() if transposed else tensor).contiguous()
    return out


def export_step(run_dir: Path, step: int, out: Path) -> Path:
    """Write checkpoint `step` of a run as a Hugging Face directory `out`; returns `out`."""
    config = read_config(run_dir).model
    model = checkpoints.load_model(run_dir, step, config)  # refuses damaged weights
    state = {name: t.detach() for name, t in model.state_dict().items()}
    tensors = hf_state_dict(state, config.n_layers)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "model.safetensors", save(tensors, metadata={"format": "pt"}))
    atomic_write_text(out / "config.json", json.dumps(hf_config(config), indent=2) + "\n")
    return out


def export_run(run_dir: Path, steps: list[int] | None, out: Path) -> list[Path]:
    """Checkpoints `steps` (None: every one) as `out/checkpoint-STEP/`, as `Trainer` names them."""
    available = checkpoints.list_steps(run_dir)
    if not available:
        raise RunError(f"{run_dir}: no checkpoints")
    wanted = available if steps is None else steps
    missing = sorted(set(wanted) - set(available))
    if missing:
        raise RunError(f"{run_dir}: no checkpoint at step {missing[0]}")
    return [export_step(run_dir, s, out / f"checkpoint-{s}") for s in wanted]
