"""A probe's sequences and reads as tensors, and the clean forward pass that most quantities share.

Every quantity is a value per read (at the read's `answer` position), so that estimates can be
bootstrapped over reads clustered by sequence. `ProbeBatch` holds the tokens, truncated to the
probe's longest sequence, and each read's sequence index, answer position and target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from runner.kv.dataset import Split
from runner.kv.roles import ReadTable
from runner.measure import behaviour
from runner.model.hooks import run_with_cache
from runner.model.transformer import Transformer


@dataclass(frozen=True)
class ProbeBatch:
    tokens: torch.Tensor  # [seq, pos] int64
    lengths: torch.Tensor  # [seq] int64
    read_seq: torch.Tensor  # [read] int64
    answer: torch.Tensor  # [read] int64 position of the read's answer
    target: torch.Tensor  # [read] int64 value token
    reads: ReadTable
    answer_tokens: tuple[int, int] | None = None  # see `Split.answer_tokens`

    @classmethod
    def from_split(cls, split: Split) -> ProbeBatch:
        n_pos = int(split.lengths.max()) if len(split) else 1
        return cls(
            tokens=torch.as_tensor(split.tokens[:, :n_pos], dtype=torch.int64),
            lengths=torch.as_tensor(split.lengths, dtype=torch.int64),
            read_seq=torch.as_tensor(split.reads.sequence, dtype=torch.int64),
            answer=torch.as_tensor(split.reads.single["answer"], dtype=torch.int64),
            target=torch.as_tensor(split.reads.target, dtype=torch.int64),
            reads=split.reads,
            answer_tokens=split.answer_tokens,
        )

    def to(self, device: torch.device | str) -> ProbeBatch:
        """The same probe with its tensors on `device`."""
        move = {
            name: getattr(self, name).to(device)
            for name in ("tokens", "lengths", "read_seq", "answer", "target")
        }
        return ProbeBatch(**move, reads=self.reads, answer_tokens=self.answer_tokens)

    @property
    def device(self) -> torch.device:
        return self.tokens.device

    @property
    def n_seq(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_pos(self) -> int:
        return int(self.tokens.shape[1])

    def __len__(self) -> int:
        return int(self.read_seq.shape[0])

    def at_answers(self, x: torch.Tensor) -> torch.Tensor:
        """x[seq, pos, ...] -> [read, ...] at each read's answer position."""
        return x[self.read_seq, self.answer]

    def role_positions(self, role: str) -> torch.Tensor:
        """[read] position of a single-position role."""
        if role not in self.reads.single:
            raise ValueError(f"role `{role}` is a set of positions, not one position")
        return torch.as_tensor(self.reads.single[role], dtype=torch.int64, device=self.device)

    def role_mask(self, role: str) -> torch.Tensor:
        """[read, pos] bool: the positions of `role` for each read."""
        return torch.as_tensor(self.reads.mask(role, self.n_pos), device=self.device)

    def token_mask(self) -> torch.Tensor:
        """[seq, pos] bool: True at real (non-padding) tokens."""
        return torch.arange(self.n_pos, device=self.device)[None, :] < self.lengths[:, None]


@dataclass(frozen=True)
class CleanRun:
    """Answer logits and the cached activations of one forward pass over a probe."""

    logits: torch.Tensor  # [read, vocab] at answer positions
    cache: dict[str, torch.Tensor]
    # True for `batched.restart_pass`: the last block's activations past its attention's keys
    # and values (its z, resid_mid, neurons, resid_post) are cached at the answers only, NaN
    # elsewhere, so an edited run that needs them anywhere else restarts before that block.
    last_block_at_answers: bool = False

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.cache[name]

    def behaviour(self, probe: ProbeBatch) -> dict[str, torch.Tensor]:
        return behaviour.per_read(self.logits, probe.target)


def clean_run(
    model: Transformer, probe: ProbeBatch, names: Sequence[str], detach: bool = True
) -> CleanRun:
    """One forward pass over the probe, caching the activations at `names`."""
    logits, cache = run_with_cache(model, probe.tokens, names, detach=detach)
    return CleanRun(probe.at_answers(logits), cache)


def attribution_names(model: Transformer) -> list[str]:
    """Every activation direct logit attribution needs."""
    names = ["hook_embed", "hook_pos_embed", "ln_final.hook_scale"]
    for layer in range(model.cfg.n_layers):
        names += [f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.mlp.hook_post"]
    return names


def residual_names(model: Transformer) -> list[str]:
    """The residual stream before and inside every block, for restarting a forward pass."""
    names = []
    for layer in range(model.cfg.n_layers):
        names += [f"blocks.{layer}.hook_resid_pre", f"blocks.{layer}.hook_resid_mid"]
    return names
