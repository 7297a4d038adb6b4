"""Hugging Face GPT-2 directories (`config.json` + `model.safetensors`): a run's checkpoints
written as one, and one read back as our model after its config and weights header are checked
(`runner.model.hf_import` imports a `Trainer`-style series of them as a run).

The model is GPT-2's architecture in nanoGPT's layout, so the conversion is a renaming: Hugging
Face's `Conv1D` stores a linear layer's weight as [in, out], the transpose of `nn.Linear`'s,
and the unembedding is tied to the token embedding (written once, as `transformer.wte`). No
dependency on transformers: the files are written with safetensors and json, and a test loads
them with `transformers.GPT2LMHeadModel`.
"""

from __future__ import annotations

import functools
import json
import os
import re
import stat
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from hypodsl.jsonfile import read_json
from runner.atomic import atomic_write_bytes, atomic_write_text
from runner.model import checkpoints
from runner.model.rundir import RunError, read_config
from runner.model.transformer import ModelConfig, Transformer
from runner.safe_files import FLOAT_DTYPES, safetensors_header

CHECKPOINT_DIR = re.compile(r"checkpoint-([0-9]+)")  # as `Trainer` names them
EXPORT_FILES = ("config.json", "model.safetensors")

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


def check_export_target(out: Path, steps: list[int] | None, force: bool) -> None:
    """Refuse, before anything is written, an `out` whose names an export would write are
    taken: by anything, unless `force`; even with it, by what a file cannot replace (a
    directory, a FIFO). For a series (`steps`), `out` may hold no other `checkpoint-N/`: an
    import would read it as part of the series."""
    if steps is None:
        targets = [out / name for name in EXPORT_FILES]
    else:
        names = {f"checkpoint-{s}" for s in steps}
        stale = sorted(p.name for p in out.iterdir() if CHECKPOINT_DIR.fullmatch(p.name))
        other = next((name for name in stale if name not in names), None)
        if other is not None:
            raise RunError(
                f"{out}: holds {other}, which this export does not write, and an import would "
                "read as part of the series; export into an empty directory"
            )
        for name in sorted(names & set(stale)):
            if not (out / name).is_dir():
                raise RunError(f"{out / name}: exists and is not a directory")
        targets = [out / name / file for name in sorted(names) for file in EXPORT_FILES]
    taken = [t for t in targets if os.path.lexists(t)]
    if taken and not force:
        raise RunError(f"{taken[0]}: exists; pass --force to overwrite an earlier export")
    for path in taken:
        if not (path.is_symlink() or stat.S_ISREG(path.lstat().st_mode)):
            raise RunError(f"{path}: exists and is not a file; export writes a file there")


MAX_CONFIG_BYTES = 1024 * 1024
MAX_PARAMETERS = 1_000_000_000  # 4 GB in float32; import holds about three copies of one
MAX_LAYERS = 1024
MAX_MASK_BYTES = 1 << 30  # the causal masks: a bool [n_positions, n_positions] per layer
SIZE_FIELDS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
# Buffers older transformers saved with the weights (the causal mask); rebuilt, never read.
IGNORED_BUFFER = re.compile(r"transformer\.h\.(\d+)\.attn\.(bias|masked_bias)")


def model_config(hf: dict[str, object], where: str = "config.json") -> ModelConfig:
    """Our config for a GPT-2 `config.json` this model can run exactly; refuses the others, and
    a model too large to import (more than MAX_PARAMETERS), before anything is allocated."""
    if hf.get("model_type") != "gpt2":
        raise RunError(
            f"{where}: model_type {hf.get('model_type')!r}: only GPT-2 checkpoints are read"
        )
    expected = {
        "activation_function": "gelu_new",
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "tie_word_embeddings": True,
        "add_cross_attention": False,
    }
    for key, value in expected.items():
        if hf.get(key, value) != value:
            raise RunError(f"{where}: {key} {hf[key]!r} is not supported (only {value!r})")
    sizes = {field: _positive_size(hf, field, where) for field in SIZE_FIELDS}
    width, heads, layers = sizes["n_embd"], sizes["n_head"], sizes["n_layer"]
    d_ff = 4 * width if hf.get("n_inner") is None else _positive_size(hf, "n_inner", where)
    if width % heads:
        raise RunError(f"{where}: n_head {heads} does not divide n_embd {width}")
    if layers > MAX_LAYERS:
        raise RunError(f"{where}: n_layer {layers}: at most {MAX_LAYERS} layers are read")
    config = ModelConfig(
        vocab_size=sizes["vocab_size"],
        n_ctx=sizes["n_positions"],
        d_model=width,
        n_layers=layers,
        n_heads=heads,
        d_ff=d_ff,
        ln_eps=_epsilon(hf, where),
    )
    if (count := parameter_count(config)) > MAX_PARAMETERS:
        raise RunError(
            f"{where}: these sizes make {count:,} parameters; import reads models of at most "
            f"{MAX_PARAMETERS:,}"
        )
    if layers * config.n_ctx**2 > MAX_MASK_BYTES:
        raise RunError(
            f"{where}: n_positions {config.n_ctx} with {layers} layers needs "
            f"{layers * config.n_ctx**2 / 2**30:.1f} GiB of attention masks; at most "
            f"{MAX_MASK_BYTES >> 30} GiB"
        )
    return config


def _positive_size(hf: dict[str, object], field: str, where: str) -> int:
    value = hf.get(field)
    if value is None:
        raise RunError(f"{where}: no `{field}` (a GPT-2 config needs {', '.join(SIZE_FIELDS)})")
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RunError(
            f"{where}: not a GPT-2 config this model can run ({field} {value!r} is not a "
            "positive whole number)"
        )
    return value


def _epsilon(hf: dict[str, object], where: str) -> float:
    value = hf.get("layer_norm_epsilon", 1e-5)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < 1:
        raise RunError(f"{where}: layer_norm_epsilon {value!r} is not a number in (0, 1)")
    return float(value)


def parameter_count(cfg: ModelConfig) -> int:
    """Weights of a model of this shape (tied unembedding counted once)."""
    d, f = cfg.d_model, cfg.d_ff
    per_layer = 4 * d * d + 2 * d * f + 9 * d + f  # 2 LayerNorms, attention, MLP, with biases
    return (cfg.vocab_size + cfg.n_ctx + 2) * d + cfg.n_layers * per_layer


@functools.lru_cache(maxsize=4)  # asked for every checkpoint of a series, of one config
def hf_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a Hugging Face directory of this config holds, with its shape: our model's
    state dict renamed, built on the meta device so nothing is allocated."""
    with torch.device("meta"):
        state = Transformer(cfg).state_dict()
    return {name: tuple(t.shape) for name, t in hf_state_dict(state, cfg.n_layers).items()}


def check_weights_header(path: Path, cfg: ModelConfig) -> None:
    """Refuse a weights file whose header disagrees with `cfg`: a tensor missing, unknown,
    of another shape, or not floating point. Reads the header only."""
    expected = hf_shapes(cfg)
    header = safetensors_header(path)
    for name, entry in header.items():
        ignored = IGNORED_BUFFER.fullmatch(name)
        if ignored and int(ignored.group(1)) < cfg.n_layers:
            continue
        want = expected.get(name, expected["transformer.wte.weight"] if name == HEAD else None)
        if want is None:
            raise RunError(f"{path}: tensor `{name}` is not part of a GPT-2 model of this config")
        if entry.shape != want:
            raise RunError(
                f"{path}: tensor `{name}` has shape {list(entry.shape)}; config.json implies "
                f"{list(want)}"
            )
        if entry.dtype not in FLOAT_DTYPES:
            raise RunError(
                f"{path}: tensor `{name}` is {entry.dtype}; weights must be floating point "
                f"({', '.join(FLOAT_DTYPES)})"
            )
    missing = next((name for name in expected if name not in header), None)
    if missing is not None:
        raise RunError(f"{path}: no tensor `{missing}` (config.json implies it)")


HEAD = "lm_head.weight"


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
    head = tensors.get(HEAD)
    if head is not None and not torch.equal(head, state["embed.weight"]):
        raise RunError("model.safetensors: lm_head.weight is not tied to transformer.wte.weight")
    return state


def read_hf_config(directory: Path) -> ModelConfig:
    """The model config of a Hugging Face GPT-2 directory, checked (config.json only)."""
    path = directory / "config.json"
    hf = read_json(path, MAX_CONFIG_BYTES)
    if not isinstance(hf, dict):
        raise RunError(f"{path}: not a JSON object")
    return model_config(hf, str(path))


def read_hf(directory: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """A Hugging Face GPT-2 directory as our config and (float32) state dict. The weights'
    header is checked against the config before a tensor is read; weights that are not finite
    are refused."""
    config = read_hf_config(directory)
    path = directory / "model.safetensors"
    check_weights_header(path, config)
    wanted = [*hf_shapes(config), HEAD]
    try:
        with safe_open(str(path), framework="pt") as f:
            names = set(f.keys())
            tensors = {n: f.get_tensor(n).to(torch.float32) for n in wanted if n in names}
    except (OSError, SafetensorError) as e:
        raise RunError(f"{path}: unreadable safetensors file ({e})") from None
    bad = next((n for n, t in tensors.items() if not bool(torch.isfinite(t).all())), None)
    if bad is not None:
        raise RunError(f"{path}: tensor `{bad}` holds NaN or Inf values")
    try:
        return config, our_state_dict(tensors, config.n_layers)
    except RunError as e:
        raise RunError(f"{directory}/{e}") from None
