"""Generating, saving and loading every split of the stream KV benchmark.

All splits come deterministically from one seed. The heldout (key, value) pairs are drawn first;
then each split draws its programs from its own generator, in a fixed order, rejecting any
program whose exact sequence or latent form (see `programs.latent_form`) an earlier split
already holds, so overlaps across splits are zero by construction (and the sanity report checks
it independently).

A dataset directory holds one `SPLIT.safetensors` per split (tokens, and for evaluation splits the
read table of `roles.py`), `dataset.json` (config, sizes, content hashes) and `sanity.json`.
"""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict
from safetensors import SafetensorError
from safetensors.numpy import load as load_safetensors_bytes

from hypodsl.errors import UserError
from hypodsl.jsonfile import read_json, validated
from hypodsl.system_paths import is_system_path
from runner.atomic import atomic_write_bytes, atomic_write_text
from runner.kv import vocab
from runner.kv.programs import Op, ProgramShape, ValuePools, latent_form, sample_program, to_tokens
from runner.kv.roles import SET_ROLES, SINGLE_ROLES, ReadTable, build_read_table

IID = ProgramShape(active_keys=(2, 3), overwrites=(8, 8), reads=(6, 7))
STRUCTURAL_OOD = ProgramShape(active_keys=(4, 5), overwrites=(10, 12), reads=(8, 10))
EVAL_SPLITS = ("val_iid", "test_iid", "heldout", "structural_ood", "counterfactual")
SPLITS = ("train", *EVAL_SPLITS)


class DataConfig(BaseModel):
    """Sizes (in sequences) and seed of one generated benchmark. Defaults are the demo's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    train: int = 100_000
    val_iid: int = 2048
    test_iid: int = 2048
    heldout: int = 2048
    structural_ood: int = 2048
    counterfactual: int = 2048
    heldout_fraction: float = 0.1
    max_len: int = 96

    def size(self, split: str) -> int:
        return int(getattr(self, split))


@dataclass(frozen=True)
class Split:
    """One loaded split: padded tokens, lengths and (for evaluation splits) the read table."""

    name: str
    tokens: np.ndarray  # [seq, pos] int64, padded with PAD
    lengths: np.ndarray  # [seq] int64
    reads: ReadTable
    clean_tokens: np.ndarray | None = None  # counterfactual only: the unedited program
    # (first token, count) of the tokens an answer can be; None: the benchmark's value tokens
    answer_tokens: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.tokens)

    def select(self, indices: np.ndarray) -> Split:
        """The sequences at `indices` (in that order), with their reads renumbered."""
        new_index = np.full(len(self), -1, dtype=np.int64)
        new_index[indices] = np.arange(len(indices))
        keep = new_index[self.reads.sequence] >= 0
        reads = self.reads.subset(keep)
        order = np.argsort(new_index[reads.sequence], kind="stable")
        reads = reads.subset(order)
        reads = ReadTable(new_index[reads.sequence], reads.target, reads.single, reads.sets)
        clean = None if self.clean_tokens is None else self.clean_tokens[indices]
        return Split(
            self.name, self.tokens[indices], self.lengths[indices], reads, clean,
            self.answer_tokens,
        )  # fmt: skip


def draw_heldout_pairs(seed: int, fraction: float) -> np.ndarray:
    """[key, value] bool: the (key, value) pairs reserved for the heldout split."""
    rng = np.random.default_rng([seed, 999])
    n_pairs = vocab.N_KEYS * vocab.N_VALUES
    chosen = rng.choice(n_pairs, size=round(fraction * n_pairs), replace=False)
    mask = np.zeros(n_pairs, dtype=bool)
    mask[chosen] = True
    return mask.reshape(vocab.N_KEYS, vocab.N_VALUES)


class _Deduplicator:
    """Remembers every exact sequence and latent form handed out so far, across splits."""

    def __init__(self) -> None:
        self.sequences: set[tuple[int, ...]] = set()
        self.latent: set[tuple[tuple[int, int, int], ...]] = set()

    def fresh(self, *programs: list[Op]) -> bool:
        return all(
            tuple(to_tokens(p)) not in self.sequences and latent_form(p) not in self.latent
            for p in programs
        )

    def add(self, *programs: list[Op]) -> None:
        for p in programs:
            self.sequences.add(tuple(to_tokens(p)))
            self.latent.add(latent_form(p))


def _counterfactual(rng: np.random.Generator, ops: list[Op], pools: ValuePools) -> list[Op] | None:
    """`ops` with one read write's value changed, so the reads of that write change answer."""
    latest: dict[int, int] = {}
    read_writes = []
    for i, op in enumerate(ops):
        if op.is_read:
            read_writes.append(latest[op.key])
        else:
            latest[op.key] = i
    edit = int(rng.choice(sorted(set(read_writes))))
    key = ops[edit].key
    taken = {op.value for op in ops if op.key == key}
    choices = [v for v in pools.open_values[key].tolist() if v not in taken]
    new_value = int(rng.choice(choices))
    edited = [
        Op(
            op.is_read,
            op.key,
            new_value if op.value == ops[edit].value and op.key == key else op.value,
        )
        for op in ops
    ]
    for prev, op in pairwise(edited):
        if op.is_read and prev.value == op.value:
            return None
    return edited


def _split_programs(
    split: str, index: int, config: DataConfig, pools: ValuePools, dedup: _Deduplicator
) -> Iterator[tuple[list[Op], list[Op] | None]]:
    """(program, clean program or None) pairs for one split, `config.size(split)` of them."""
    rng = np.random.default_rng([config.seed, index])
    shape = STRUCTURAL_OOD if split == "structural_ood" else IID
    made = 0
    while made < config.size(split):
        ops = sample_program(rng, shape, pools, heldout_answers=split == "heldout")
        clean: list[Op] | None = None
        if split == "counterfactual":
            clean, ops_cf = ops, _counterfactual(rng, ops, pools)
            if ops_cf is None:
                continue
            ops = ops_cf
        candidates = [ops] if clean is None else [ops, clean]
        if not dedup.fresh(*candidates):
            continue
        dedup.add(*candidates)
        made += 1
        yield ops, clean


def _pad(sequences: list[list[int]], max_len: int) -> np.ndarray:
    out = np.full((len(sequences), max_len), vocab.PAD, dtype=np.uint8)
    for i, seq in enumerate(sequences):
        if len(seq) > max_len:
            raise ValueError(f"sequence of {len(seq)} tokens exceeds max_len {max_len}")
        out[i, : len(seq)] = seq
    return out


def generate(
    config: DataConfig, progress: object | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """Every split as arrays ready to save: tokens, lengths, read tables, clean tokens."""
    pools = ValuePools(draw_heldout_pairs(config.seed, config.heldout_fraction))
    dedup = _Deduplicator()
    arrays: dict[str, dict[str, np.ndarray]] = {}
    # Evaluation splits first, so that the (much larger) train split avoids them.
    for index, split in enumerate((*EVAL_SPLITS, "train")):
        pairs = list(_split_programs(split, index, config, pools, dedup))
        tokens = [to_tokens(p) for p, _ in pairs]
        out = {
            "tokens": _pad(tokens, config.max_len),
            "lengths": np.array([len(t) for t in tokens], dtype=np.int64),
        }
        if split == "counterfactual":
            out["clean_tokens"] = _pad([to_tokens(c) for _, c in pairs if c], config.max_len)
        if split != "train":
            out.update(read_table_arrays(build_read_table(out["tokens"].astype(np.int64))))
        arrays[split] = out
        if callable(progress):
            progress(split)
    arrays["_heldout_pairs"] = {"mask": pools.heldout.astype(np.uint8)}
    return arrays


def read_table_arrays(table: ReadTable) -> dict[str, np.ndarray]:
    """A read table as the arrays of a split file (`role_NAME` per role)."""
    out = {"read_sequence": table.sequence, "read_target": table.target}
    out.update({f"role_{r}": v for r, v in table.single.items()})
    out.update({f"role_{r}": v.astype(np.uint8) for r, v in table.sets.items()})
    return out


def _read_table_from_arrays(
    arrays: dict[str, np.ndarray], single: Sequence[str], sets: Sequence[str]
) -> ReadTable:
    return ReadTable(
        sequence=arrays["read_sequence"].astype(np.int64),
        target=arrays["read_target"].astype(np.int64),
        single={r: arrays[f"role_{r}"].astype(np.int64) for r in single},
        sets={r: arrays[f"role_{r}"].astype(bool) for r in sets},
    )


def save(out_dir: Path, config: DataConfig, arrays: dict[str, dict[str, np.ndarray]]) -> dict:
    """Write the split files atomically and return the dataset manifest (also written)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for split, tensors in arrays.items():
        name = "heldout_pairs" if split == "_heldout_pairs" else split
        blob = _safetensors_bytes(tensors)
        atomic_write_bytes(out_dir / f"{name}.safetensors", blob)
        hashes[name] = hashlib.sha256(blob).hexdigest()
    manifest = {
        "benchmark": "stream_kv",
        "config": config.model_dump(),
        "splits": {s: len(arrays[s]["tokens"]) for s in SPLITS},
        "sha256": hashes,
        "data_hash": hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest(),
    }
    atomic_write_text(out_dir / "dataset.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def _safetensors_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in tensors.items()})


class Manifest(BaseModel):
    """dataset.json: what was generated, and the SHA-256 of every split file.

    A task imported from a task file (`runner.task`) also names its roles (`roles`: single
    positions, the scored `answer` first; `set_roles`), its `token_names` and `answer_tokens`.
    """

    model_config = ConfigDict(extra="allow")

    config: dict[str, Any]
    splits: dict[str, int]
    sha256: dict[str, str]
    data_hash: str
    roles: list[str] = list(SINGLE_ROLES)
    set_roles: list[str] = list(SET_ROLES)
    answer_tokens: tuple[int, int] | None = None


def role_names(manifest: dict[str, Any]) -> list[str]:
    """Every role a spec may name on this data: single-position roles, then sets."""
    return [*manifest.get("roles", SINGLE_ROLES), *manifest.get("set_roles", SET_ROLES)]


class DataError(UserError):
    """A data directory whose files are missing, malformed or not what dataset.json says."""


def load_manifest(data_dir: Path) -> dict:
    path = data_dir / "dataset.json"
    if not path.exists():
        raise DataError(f"{path}: no dataset here (run `hypo data generate --out {data_dir}`)")
    data = read_json(path)
    validated(path, Manifest, data)
    return dict(data)


def _load_arrays(data_dir: Path, split: str) -> dict[str, np.ndarray]:
    """A split's arrays, after checking its file against dataset.json's SHA-256."""
    manifest = load_manifest(data_dir)
    if split not in manifest["splits"]:
        raise DataError(
            f"{data_dir}: no split {split!r}; splits are {', '.join(manifest['splits'])}"
        )
    path = data_dir / f"{split}.safetensors"
    expected = manifest["sha256"].get(split)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) or is_system_path(path):
            raise DataError(f"{path}: not a regular file")
        blob = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: unreadable ({e.strerror})") from None
    if hashlib.sha256(blob).hexdigest() != expected:
        raise DataError(f"{path}: does not match dataset.json's SHA-256 (truncated or changed)")
    try:
        return load_safetensors_bytes(blob)
    except SafetensorError as e:
        raise DataError(f"{path}: unreadable safetensors file ({e})") from None


def load_tokens(data_dir: Path, split: str) -> np.ndarray:
    """[seq, pos] int64 tokens of a split, without its read table."""
    return _load_arrays(data_dir, split)["tokens"].astype(np.int64)


def load_split(data_dir: Path, split: str, limit: int | None = None) -> Split:
    """The first `limit` sequences of a split (all when None) with their reads.

    The train split stores no read table; it is built here for the sequences asked for.
    """
    arrays = _load_arrays(data_dir, split)
    manifest = load_manifest(data_dir)
    n = len(arrays["tokens"]) if limit is None else min(limit, len(arrays["tokens"]))
    tokens = arrays["tokens"][:n].astype(np.int64)
    if "read_sequence" in arrays:
        single = manifest.get("roles", SINGLE_ROLES)
        table = _read_table_from_arrays(arrays, single, manifest.get("set_roles", SET_ROLES))
        reads = table.subset(table.sequence < n)
    else:
        reads = build_read_table(tokens)
    clean = arrays["clean_tokens"][:n].astype(np.int64) if "clean_tokens" in arrays else None
    answer_tokens = manifest.get("answer_tokens")
    return Split(
        split, tokens, arrays["lengths"][:n].astype(np.int64), reads, clean,
        None if answer_tokens is None else (int(answer_tokens[0]), int(answer_tokens[1])),
    )  # fmt: skip
