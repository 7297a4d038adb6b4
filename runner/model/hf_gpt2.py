"""Hugging Face GPT-2 directories (`config.json` + `model.safetensors`): a run's checkpoints
written as one, one read back as our model, and a `Trainer`-style series of them
(`checkpoint-N/`) imported as a run directory of the stream-KV task or of a task file's task.

The model is GPT-2's architecture in nanoGPT's layout, so the conversion is a renaming: Hugging
Face's `Conv1D` stores a linear layer's weight as [in, out], the transpose of `nn.Linear`'s,
and the unembedding is tied to the token embedding (written once, as `transformer.wte`). No
dependency on transformers: the files are written with safetensors and json, and a test loads
them with `transformers.GPT2LMHeadModel`.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from runner.atomic import atomic_write_bytes, atomic_write_text
from runner.kv import dataset
from runner.model import checkpoints
from runner.model.configs import TrainConfig
from runner.model.rundir import RunError, config_path, data_dir, read_config, write_signature
from runner.model.transformer import ModelConfig, Transformer

CHECKPOINT_DIR = re.compile(r"checkpoint-(\d{1,12})")

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


def export_step(run_dir: Path, step: int, out: Path, config: ModelConfig | None = None) -> Path:
    """Write checkpoint `step` of a run as a Hugging Face directory `out`; returns `out`."""
    config = config or read_config(run_dir).model
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
    config = read_config(run_dir).model
    return [export_step(run_dir, s, out / f"checkpoint-{s}", config) for s in wanted]


def model_config(hf: dict[str, object]) -> ModelConfig:
    """Our config for a GPT-2 `config.json` this model can run exactly; refuses the others."""
    if hf.get("model_type") != "gpt2":
        raise RunError(f"model_type {hf.get('model_type')!r}: only GPT-2 checkpoints are read")
    expected = {
        "activation_function": "gelu_new",
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "tie_word_embeddings": True,
    }
    for key, value in expected.items():
        if hf.get(key, value) != value:
            raise RunError(f"config.json: {key} {hf[key]!r} is not supported (only {value!r})")
    try:
        return ModelConfig.model_validate(
            {
                "vocab_size": hf["vocab_size"],
                "n_ctx": hf["n_positions"],
                "d_model": hf["n_embd"],
                "n_layers": hf["n_layer"],
                "n_heads": hf["n_head"],
                "d_ff": hf.get("n_inner") or 4 * int(hf["n_embd"]),  # type: ignore[call-overload]
                "ln_eps": hf.get("layer_norm_epsilon", 1e-5),
            }
        )
    except (KeyError, TypeError, ValueError) as e:  # pydantic's ValidationError is a ValueError
        raise RunError(f"config.json: not a GPT-2 config this model can run ({e})") from None


def our_state_dict(tensors: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """The inverse of `hf_state_dict` (`lm_head.weight`, when written, must be the embedding)."""
    try:
        state = {ours: tensors[hf] for ours, hf in TOP_NAMES.items()}
        for layer in range(n_layers):
            for ours, (hf, transposed) in BLOCK_NAMES.items():
                tensor = tensors[f"transformer.h.{layer}.{hf}"]
                state[f"blocks.{layer}.{ours}"] = (
                    tensor.t() if transposed else tensor
                ).contiguous()
    except KeyError as e:
        raise RunError(f"model.safetensors: no tensor {e}") from None
    head = tensors.get("lm_head.weight")
    if head is not None and not torch.equal(head, state["embed.weight"]):
        raise RunError("model.safetensors: lm_head.weight is not tied to transformer.wte.weight")
    return state


def read_hf(directory: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """A Hugging Face GPT-2 directory as our config and state dict."""
    try:
        hf = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        tensors = load_file(directory / "model.safetensors")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, SafetensorError) as e:
        raise RunError(f"{directory}: not a readable Hugging Face directory ({e})") from None
    if not isinstance(hf, dict):
        raise RunError(f"{directory}/config.json: not a JSON object")
    config = model_config(hf)
    return config, our_state_dict(tensors, config.n_layers)


def checkpoint_dirs(source: Path) -> dict[int, Path]:
    """step -> checkpoint directory: `source/checkpoint-STEP/` as `Trainer` names them, or,
    when `source` is a JSON file, its `{"STEP": "DIR", ...}` (DIR relative to the file)."""
    if source.is_file() and source.suffix == ".json":
        return _listed_dirs(source)
    if not source.is_dir():
        raise RunError(f"{source}: not a directory of checkpoint-STEP/ folders")
    found = {
        int(m.group(1)): path
        for path in source.iterdir()
        if (m := CHECKPOINT_DIR.fullmatch(path.name)) and path.is_dir()
    }
    if not found:
        raise RunError(f"{source}: no checkpoint-STEP/ folders")
    return dict(sorted(found.items()))


def _listed_dirs(listing: Path) -> dict[int, Path]:
    try:
        data = json.loads(listing.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{listing}: not a JSON list of checkpoints ({e})") from None
    if not isinstance(data, dict) or not data:
        raise RunError(f'{listing}: expected {{"STEP": "DIRECTORY", ...}}')
    found = {}
    for step, directory in data.items():
        if not (isinstance(step, str) and step.isdigit() and len(step) <= 12):
            raise RunError(f"{listing}: `{step}` is not a step (a whole number)")
        if not isinstance(directory, str):
            raise RunError(f"{listing}: step {step}: the directory must be a string")
        path = listing.parent / directory
        if not path.is_dir():
            raise RunError(f"{listing}: step {step}: {path} is not a directory")
        found[int(step)] = path
    return dict(sorted(found.items()))


def import_series(
    source: Path, out: Path, data: Path | None = None, task: Path | None = None
) -> list[int]:
    """Write the series in `source` as a run directory `out`; returns the steps.

    The run's task is either the stream-KV benchmark whose splits are in `data` (copied) or a
    task file directory `task` (checked and converted, see `runner.task.taskfile`). The run's
    config.json holds the model's shape and the last step; its training fields are defaults
    (checkpoints do not record them).
    """
    from runner.task.taskfile import write_task_data

    if (data is None) == (task is None):
        raise RunError("import needs exactly one of --data (a stream-KV dataset) or --task")
    if config_path(out).exists():
        raise RunError(f"{out} already holds a run; import into a new directory")
    series = checkpoint_dirs(source)
    manifest = dataset.load_manifest(data) if data is not None else None  # clear error if none
    loaded = {step: read_hf(path) for step, path in series.items()}
    shapes = {config for config, _ in loaded.values()}
    if len(shapes) > 1:
        raise RunError(f"{source}: the checkpoints have different model configs")
    (model_config,) = shapes
    if data is not None and manifest is not None:
        data_config = dataset.DataConfig.model_validate(manifest["config"])
        copy_splits(data, manifest, data_dir(out))
    else:
        assert task is not None
        manifest = write_task_data(task, data_dir(out), model_config.n_ctx)
        vocab_size = manifest["config"]["vocab_size"]
        if vocab_size > model_config.vocab_size:
            raise RunError(
                f"{task}/task.json: vocab_size {vocab_size} is larger than the model's "
                f"({model_config.vocab_size})"
            )
        data_config = dataset.DataConfig()
    config = TrainConfig(name=out.name, model=model_config, steps=max(series), data=data_config)
    meta = {"config_hash": config.content_hash(), "data_hash": manifest["data_hash"]}
    for step, (_, state) in loaded.items():
        model = Transformer(model_config)
        model.load_state_dict(state)
        imported = {"imported_from": f"{series[step].name}/model.safetensors"}
        checkpoints.save_checkpoint(out, step, model, {**meta, **imported})
    write_signature(out, config, manifest)
    # config.json last: it marks a whole run (an interrupted import can be run again)
    atomic_write_text(config_path(out), config.model_dump_json(indent=2) + "\n")
    return list(series)


def copy_splits(data: Path, manifest: dict[str, Any], into: Path) -> None:
    """The manifest and the split files it names (regular files only; hashes are checked when
    a split is read)."""
    names = ["dataset.json", *(f"{split}.safetensors" for split in manifest["sha256"])]
    into.mkdir(parents=True, exist_ok=True)
    for name in names:
        source = data / name
        if not source.is_file():  # a FIFO or device would block or never end
            raise RunError(f"{source}: not a regular file")
        shutil.copyfile(source, into / name)
