"""A `Trainer`-style series of Hugging Face GPT-2 directories (`checkpoint-STEP/`) imported as a
run directory of the stream-KV task or of a task file's task.

Everything is checked before anything is written: the series' step names, every checkpoint's
config.json and weights header (the same shapes in all), the task or data against the model's
vocabulary and context, then every checkpoint's values. So a refused import leaves nothing in
the output directory; one interrupted while writing can be run again (config.json, written
last, marks a whole run).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from hypodsl.jsonfile import validated
from runner.atomic import atomic_write_text
from runner.kv import dataset, vocab
from runner.model import checkpoints
from runner.model.configs import TrainConfig
from runner.model.hf_gpt2 import CHECKPOINT_DIR, check_weights_header, read_hf, read_hf_config
from runner.model.rundir import RunError, config_path, data_dir, write_signature
from runner.model.transformer import ModelConfig, Transformer
from runner.safe_files import read_bounded, regular_file_size, safetensors_header

MAX_STEP_DIGITS = 12
STEP = re.compile(r"[0-9]{1,12}")
SPLIT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_LISTING_BYTES = 1024 * 1024


def checkpoint_dirs(source: Path) -> dict[int, Path]:
    """step -> checkpoint directory: `source/checkpoint-STEP/` as `Trainer` names them, or,
    when `source` is a JSON file, its `{"STEP": "DIR", ...}` (DIR relative to the file).
    Two names of one step (`checkpoint-10`, `checkpoint-010`) are refused, not one dropped."""
    if source.suffix == ".json" and not source.is_dir():
        return _listed_dirs(source)
    if not source.is_dir():
        raise RunError(f"{source}: not a directory of checkpoint-STEP/ folders")
    found: dict[int, Path] = {}
    for path in sorted(source.iterdir()):
        if not (m := CHECKPOINT_DIR.fullmatch(path.name)):
            continue
        if len(m.group(1)) > MAX_STEP_DIGITS:
            raise RunError(f"{path}: step {m.group(1)} has more than {MAX_STEP_DIGITS} digits")
        if not path.is_dir():
            raise RunError(f"{path}: not a directory (a checkpoint is a config.json and weights)")
        _add_step(found, int(m.group(1)), path, source)
    if not found:
        raise RunError(f"{source}: no checkpoint-STEP/ folders")
    return dict(sorted(found.items()))


def _add_step(found: dict[int, Path], step: int, path: Path, where: Path) -> None:
    if step in found:
        raise RunError(f"{where}: {found[step]} and {path} are both step {step}; keep one of them")
    found[step] = path


class _Pairs(list):
    """A JSON object's (key, value) pairs in file order, duplicates kept (json.loads would
    keep only the last)."""


def _listed_dirs(listing: Path) -> dict[int, Path]:
    try:
        text = read_bounded(listing, MAX_LISTING_BYTES, "checkpoint list").decode("utf-8")
        data = json.loads(text, object_pairs_hook=_Pairs)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise RunError(f'{listing}: not a JSON object {{"STEP": "DIRECTORY", ...}} ({e})') from None
    if not isinstance(data, _Pairs) or not data:
        raise RunError(f'{listing}: expected a JSON object {{"STEP": "DIRECTORY", ...}}')
    found: dict[int, Path] = {}
    for step, directory in data:
        if not STEP.fullmatch(step):
            raise RunError(f"{listing}: `{step}` is not a step (digits 0-9, at most 12)")
        if not isinstance(directory, str):
            raise RunError(f"{listing}: step {step}: the directory must be a string")
        path = listing.parent / directory
        if not path.is_dir():
            raise RunError(f"{listing}: step {step}: {path} is not a directory")
        _add_step(found, int(step), path, listing)
    return dict(sorted(found.items()))


def series_config(source: Path, series: dict[int, Path]) -> ModelConfig:
    """The one model config of a series, after every checkpoint's config.json and then its
    weights header were checked (headers only: nothing is loaded)."""
    configs = {path: read_hf_config(path) for path in series.values()}
    (first, config), *rest = configs.items()
    for path, other in rest:
        if other != config:
            field = next(k for k, v in other if getattr(config, k) != v)
            raise RunError(
                f"{source}: the checkpoints have different model configs: {field} is "
                f"{getattr(config, field)} in {first.name} and {getattr(other, field)} in "
                f"{path.name}"
            )
    for path in series.values():
        check_weights_header(path / "model.safetensors", config)
    return config


def check_kv_data(data: Path, manifest: dict[str, Any], config: ModelConfig) -> None:
    """Refuse stream-KV splits the model cannot read: a split name that is not a name (it
    becomes a file name), tokens outside its vocabulary, sequences longer than its context."""
    names = manifest.get("token_names") or vocab.token_names()
    if not isinstance(names, list):
        raise RunError(f"{data}/dataset.json: token_names is not a list of names")
    if (tokens := len(names)) > config.vocab_size:
        raise RunError(
            f"{data}/dataset.json: {tokens} tokens; the model's vocab_size is {config.vocab_size}"
        )
    for split in manifest["sha256"]:
        if not SPLIT_NAME.fullmatch(split):
            raise RunError(f"{data}/dataset.json: split `{split}` is not a name")
        path = data / f"{split}.safetensors"
        header = safetensors_header(path)
        if split not in manifest["splits"]:
            continue  # not a split of sequences (the heldout pairs)
        if "tokens" not in header:
            raise RunError(f"{path}: no `tokens` tensor; not a split file")
        for name in ("tokens", "clean_tokens"):
            shape = header[name].shape if name in header else (0, 0)
            if len(shape) != 2 or shape[1] > config.n_ctx:
                raise RunError(
                    f"{path}: `{name}` has shape {list(shape)}; the model reads [sequences, at "
                    f"most n_positions {config.n_ctx}]"
                )


def import_series(
    source: Path, out: Path, data: Path | None = None, task: Path | None = None
) -> list[int]:
    """Write the series in `source` as a run directory `out`; returns the steps.

    The run's task is either the stream-KV benchmark whose splits are in `data` (copied) or a
    task file directory `task` (checked and converted, see `runner.task.taskfile`). The run's
    config.json holds the model's shape and the last step; its training fields are defaults
    (checkpoints do not record them).
    """
    from runner.task.taskfile import load_task, write_task

    if (data is None) == (task is None):
        raise RunError("import needs exactly one of --data (a stream-KV dataset) or --task")
    if config_path(out).exists():
        raise RunError(f"{out} already holds a run; import into a new directory")
    series = checkpoint_dirs(source)
    model_config = series_config(source, series)
    if data is not None:
        if data.resolve() == data_dir(out).resolve():
            raise RunError(f"--data {data}: is the new run's own data directory")
        manifest = dataset.load_manifest(data)
        check_kv_data(data, manifest, model_config)
        data_config = validated(data / "dataset.json", dataset.DataConfig, manifest["config"])
    else:
        assert task is not None
        loaded = load_task(task, model_config.n_ctx, model_config.vocab_size)
        data_config = dataset.DataConfig()
    for path in series.values():  # refuses NaN or untied weights before anything is written
        read_hf(path)
    if data is not None:
        copy_splits(data, manifest, data_dir(out))
    else:
        manifest = write_task(loaded, data_dir(out))
    config = TrainConfig(name=out.name, model=model_config, steps=max(series), data=data_config)
    write_checkpoints(series, out, config, manifest["data_hash"])
    write_signature(out, config, manifest)
    # config.json last: it marks a whole run (an interrupted import can be run again)
    atomic_write_text(config_path(out), config.model_dump_json(indent=2) + "\n")
    return list(series)


def write_checkpoints(series: dict[int, Path], out: Path, config: TrainConfig, data: str) -> None:
    meta = {"config_hash": config.content_hash(), "data_hash": data}
    model = Transformer(config.model)  # every checkpoint's weights replace all of its own
    for step, path in series.items():
        _, state = read_hf(path)
        model.load_state_dict(state)
        imported = {"imported_from": f"{path.name}/model.safetensors"}
        checkpoints.save_checkpoint(out, step, model, {**meta, **imported})


def copy_splits(data: Path, manifest: dict[str, Any], into: Path) -> None:
    """The manifest and the split files it names (regular files only; hashes are checked when
    a split is read)."""
    names = ["dataset.json", *(f"{split}.safetensors" for split in manifest["sha256"])]
    for name in names:  # a FIFO or device would block or never end
        regular_file_size(data / name, "data file")
    into.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(data / name, into / name)
