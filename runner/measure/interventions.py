"""Interventions: replace a component's activation and run the model.

A `Site` names an activation and the part of it that belongs to a component:

| component | activation | part |
|---|---|---|
| head `Ll.Hh` | `blocks.l.attn.hook_z` | head h |
| head input `Ll.Hh.q` (k, v) | `blocks.l.attn.hook_q` | head h |
| MLP `Ll.mlp` | `blocks.l.mlp.hook_post` | every neuron |
| neurons `Ll.mlp[i, j]` | `blocks.l.mlp.hook_post` | neurons i, j |
| `embed`, `pos` | `hook_embed`, `hook_pos_embed` | all |
| residual at a role | `blocks.l.hook_resid_pre` | the role's positions |

Ablating a head replaces its z, so its write z_h W_O^h changes and the shared output bias stays;
ablating an MLP replaces every neuron's activation, so the MLP's output bias stays too (an MLP
is the set of all its neurons).

The replacement (a *source*) is a tensor of the activation's shape:

- zero: 0;
- mean: the mean over a reference probe's real tokens at each position (0 where no reference
  sequence is that long);
- resample: the activation of another sequence of the reference probe at the same position, by a
  seeded permutation with no fixed point;
- patch from a probe: the activation on sequence i of another probe (sequences paired by index,
  positions by index);
- patch from a checkpoint: the activation of another checkpoint's model on the same sequences.

A QK restriction `Ll.Hh[from <- to]` is ablated by zeroing the attention weights from each read's
`from` position to its `to` positions (zero ablation only): the head's output loses exactly the
restricted part.

Edits compose: several sites, at the same or different activations, are applied in one pass.
An edit may be applied to a window of the probe's sequences (`seqs`: a slice, or their indices):
a batched pass runs long probes a window at a time, and whatever the edit holds per sequence is
indexed to match. It always sees the probe's positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from hypodsl import plan as p
from hypodsl.plan_view import node_text
from runner.measure.probe import CleanRun, ProbeBatch
from runner.model.hooks import hooks
from runner.model.transformer import Transformer

ALL_SEQUENCES = slice(None)
# The probe's sequences an activation holds: a slice, or their indices in the order held.
Sequences = slice | torch.Tensor


class EditFn(Protocol):
    """The edited activation, for x [seq, ...] holding the probe's sequences `seqs`."""

    def __call__(
        self, x: torch.Tensor, name: str, /, seqs: Sequences = ALL_SEQUENCES
    ) -> torch.Tensor: ...


Edit = tuple[str, EditFn]


def per_sequence(x: torch.Tensor, seqs: Sequences) -> torch.Tensor:
    """x [seq or 1, ...] for the sequences `seqs`: one row is shared by all of them."""
    return x if x.shape[0] == 1 else x[seqs]


@dataclass(frozen=True)
class Site:
    hook: str
    head: int | None = None
    neurons: tuple[int, ...] | None = None
    role: str | None = None  # residual sites: only at this role's positions
    label: str = ""

    def part(self, x: torch.Tensor) -> torch.Tensor:
        """The component's part of the activation x (a view where possible)."""
        if self.head is not None:
            return x[:, :, self.head]
        if self.neurons is not None:
            return x[..., list(self.neurons)]
        return x


def site_of(node: p.PathNode) -> Site:
    """The site an intervention on a path node acts on."""
    if isinstance(node, p.HeadNode):
        hook = f"blocks.{node.layer}.attn.hook_z"
        return Site(hook, head=node.head, label=node_text(node))
    if isinstance(node, p.HeadInputNode):
        hook = f"blocks.{node.layer}.attn.hook_{node.input}"
        return Site(hook, head=node.head, label=node_text(node))
    if isinstance(node, p.MlpNode):
        return Site(f"blocks.{node.layer}.mlp.hook_post", label=node_text(node))
    if isinstance(node, p.NeuronsNode):
        hook = f"blocks.{node.layer}.mlp.hook_post"
        return Site(hook, neurons=node.indices, label=node_text(node))
    if isinstance(node, p.EmbedNode):
        return Site("hook_embed", label="embed")
    if isinstance(node, p.PosNode):
        return Site("hook_pos_embed", label="pos")
    raise ValueError(f"cannot intervene on `{node.kind}` as a site")


def residual_site(layer: int, role: str) -> Site:
    """The residual stream entering block `layer`, at a role's positions."""
    return Site(f"blocks.{layer}.hook_resid_pre", role=role, label=f"resid L{layer} @ {role}")


# --- sources -------------------------------------------------------------------------------


def align_positions(x: torch.Tensor, n_pos: int) -> torch.Tensor:
    """x [seq, pos, ...] truncated or zero-padded to n_pos positions."""
    if x.shape[1] >= n_pos:
        return x[:, :n_pos]
    pad = torch.zeros(x.shape[0], n_pos - x.shape[1], *x.shape[2:], dtype=x.dtype, device=x.device)
    return torch.cat([x, pad], dim=1)


def mean_source(reference: torch.Tensor, token_mask: torch.Tensor, n_pos: int) -> torch.Tensor:
    """[1, n_pos, ...] per-position mean of a reference activation over its real tokens."""
    weights = token_mask.to(reference.dtype)
    weights = weights.view(*weights.shape, *[1] * (reference.dim() - 2))
    total = (reference * weights).sum(dim=0, keepdim=True)
    count = weights.sum(dim=0, keepdim=True).clamp(min=1)
    return align_positions(total / count, n_pos)


def derangement(n: int, seed: int) -> torch.Tensor:
    """A seeded permutation of range(n) with no fixed point (identity when n < 2)."""
    if n < 2:
        return torch.arange(n)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    # Shifting a random order by one place moves every element: a derangement.
    out = np.empty(n, dtype=np.int64)
    out[perm] = np.roll(perm, 1)
    return torch.as_tensor(out)


def resample_source(activation: torch.Tensor, seed: int) -> torch.Tensor:
    if activation.shape[0] < 2:  # the only derangement of one sequence is itself: a no-op
        raise ValueError("resample ablation needs a probe of at least 2 sequences; it has 1")
    return activation[derangement(activation.shape[0], seed)]


def patch_source(source: torch.Tensor, n_seq: int, n_pos: int, what: str) -> torch.Tensor:
    """A source activation from another probe, paired with this one by sequence index."""
    if source.shape[0] < n_seq:
        raise ValueError(f"{what} has {source.shape[0]} sequences; the probe patched has {n_seq}")
    return align_positions(source[:n_seq], n_pos)


# --- applying edits ------------------------------------------------------------------------


def role_position_mask(probe: ProbeBatch, role: str) -> torch.Tensor:
    """[seq, pos] bool: positions that are `role` for some read of the sequence."""
    counts = torch.zeros(probe.n_seq, probe.n_pos, device=probe.device)
    counts.index_add_(0, probe.read_seq, probe.role_mask(role).float())
    return counts > 0


def replace_edit(site: Site, source: torch.Tensor, probe: ProbeBatch) -> Edit:
    """An edit that replaces the site's part of the activation with the source's."""
    where = role_position_mask(probe, site.role) if site.role else None

    def fn(x: torch.Tensor, name: str, seqs: Sequences = ALL_SEQUENCES) -> torch.Tensor:
        src = per_sequence(source, seqs).expand_as(x).to(x)
        out = x.clone()
        if site.head is not None:
            out[:, :, site.head] = src[:, :, site.head]
        elif site.neurons is not None:
            idx = list(site.neurons)
            out[..., idx] = src[..., idx]
        elif where is not None:
            out[where[seqs]] = src[where[seqs]]
        else:
            out = src.clone()
        return out

    return site.hook, fn


def qk_restriction_mask(probe: ProbeBatch, from_role: str, to_role: str) -> torch.Tensor:
    """[seq, query, key] bool: True from each read's `from` position to its `to` positions."""
    rows = probe.read_seq * probe.n_pos + probe.role_positions(from_role)
    counts = torch.zeros(probe.n_seq * probe.n_pos, probe.n_pos, device=probe.device)
    counts.index_add_(0, rows, probe.role_mask(to_role).float())
    return (counts > 0).view(probe.n_seq, probe.n_pos, probe.n_pos)


def qk_restriction_at_answers(probe: ProbeBatch, from_role: str, to_role: str) -> torch.Tensor:
    """[read, key] bool: `qk_restriction_mask` at each read's (sequence, answer position),
    built for those rows only."""
    sources = probe.read_seq * probe.n_pos + probe.role_positions(from_role)
    wanted = probe.read_seq * probe.n_pos + probe.answer
    rows, index = torch.unique(torch.cat([sources, wanted]), return_inverse=True)
    counts = torch.zeros(len(rows), probe.n_pos, device=probe.device)
    counts.index_add_(0, index[: len(sources)], probe.role_mask(to_role).float())
    return counts[index[len(sources) :]] > 0


def qk_zero_edit(probe: ProbeBatch, node: p.HeadQKNode) -> Edit:
    """Zero the attention weights from each read's `from` position to its `to` positions."""
    drop = qk_restriction_mask(probe, node.from_role, node.to_role)

    def fn(pattern: torch.Tensor, name: str, seqs: Sequences = ALL_SEQUENCES) -> torch.Tensor:
        out = pattern.clone()
        out[:, node.head] = out[:, node.head].masked_fill(drop[seqs], 0.0)
        return out

    return f"blocks.{node.layer}.attn.hook_pattern", fn


def run_edited(
    model: Transformer,
    probe: ProbeBatch,
    edits: Sequence[Edit],
    names: Sequence[str] = (),
) -> CleanRun:
    """Answer logits (and activations at `names`) with every edit applied in one pass."""
    cache: dict[str, torch.Tensor] = {}

    def store(x: torch.Tensor, name: str) -> None:
        cache[name] = x.detach()

    with torch.no_grad(), hooks(model, [*edits, *[(n, store) for n in names]]):
        logits = model(probe.tokens)
    return CleanRun(probe.at_answers(logits), cache)
