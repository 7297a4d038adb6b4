"""Building blocks of the fault-injection tests: a tiny Hugging Face GPT-2 series written
without training, a small task directory, and the check that a refused command exits 2 with one
line naming the file and wrote nothing outside its output directory."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save

from hypodsl.cli import main
from runner.model.hf_gpt2 import hf_config, hf_state_dict
from runner.model.transformer import ModelConfig, Transformer

CFG = ModelConfig(vocab_size=16, n_ctx=12, d_model=8, n_layers=1, n_heads=2, d_ff=16)


def hf_tensors(cfg: ModelConfig = CFG, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    state = {k: v.detach() for k, v in Transformer(cfg).state_dict().items()}
    return hf_state_dict(state, cfg.n_layers)


def write_checkpoint(
    directory: Path,
    cfg: ModelConfig = CFG,
    config: dict | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    fields = hf_config(cfg) | (config or {})
    (directory / "config.json").write_text(json.dumps(fields))
    blob = save(hf_tensors(cfg) if tensors is None else tensors)
    (directory / "model.safetensors").write_bytes(blob)
    return directory


def write_series(root: Path, steps: tuple[int, ...] = (0, 10), cfg: ModelConfig = CFG) -> Path:
    for step in steps:
        write_checkpoint(root / f"checkpoint-{step}", cfg)
    return root


LINE = {"tokens": [1, 2, 3, 4], "examples": [{"position": 2, "target": 4, "roles": {"prev": 1}}]}


def write_task(root: Path, lines: list[object] | None = None, **spec: object) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    fields = {"name": "t", "vocab_size": 10, "roles": ["prev"], "splits": ["held"]} | spec
    (root / "task.json").write_text(json.dumps(fields))
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines or [LINE])
    (root / "held.jsonl").write_text(text + "\n")
    return root


def snapshot(root: Path, skip: Path | None = None) -> dict[str, tuple[int, int, int]]:
    """Every path under `root` (links not followed) -> (mode, size, mtime); `skip` left out."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if skip is not None and (path == skip or skip in path.parents):
                continue
            info = path.lstat()
            found[str(path)] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return found


def refused(capsys, args: list[str], root: Path, out: Path | None, names: str) -> str:
    """Run `hypo ARGS`; assert exit 2, one line without a traceback naming `names`, nothing
    changed under `root` outside `out`, and `out` left absent or as it was. Returns the line."""
    before = snapshot(root)
    out_before = snapshot(out) if out is not None and out.exists() else None
    capsys.readouterr()
    code = main(args)
    captured = capsys.readouterr()
    lines = [x for x in captured.err.splitlines() if x.strip()]
    assert code == 2, (code, captured.err, captured.out)
    assert "Traceback" not in captured.err and len(lines) == 1, captured.err
    assert names in lines[0], (names, lines[0])
    assert snapshot(root, skip=out) == {k: v for k, v in before.items() if not _under(k, out)}
    if out is not None:
        if out_before is None:
            assert not out.exists(), sorted(p.name for p in out.rglob("*"))
        else:
            assert snapshot(out) == out_before
    return lines[0]


def _under(path: str, out: Path | None) -> bool:
    return out is not None and (Path(path) == out or out in Path(path).parents)


Change = Callable[[Path], object]
