"""Path contributions: how much of the answer margin travels along a path of components.

A path is a chain of nodes: a sender (`embed`, `pos`, a head, a QK-restricted head
`Ll.Hh[from <- to]`, an MLP or neurons), then receivers (a head, one of its inputs `.q` `.k` `.v`,
an MLP or neurons), ending at `unembed` or at the last receiver.

- Single hop, `X -> unembed`: direct logit attribution (see `attribution`): C = x_X · u, the
  sender's write at the answer position read through the frozen final LayerNorm onto the
  linearised margin direction.
- Multi-hop, by path patching: the sender is ablated (zero by default, or mean or resample), and
  the change δ reaches only the next node of the path: each receiver recomputes its output with
  δ added to the input it reads (its LayerNorm recomputed; for `.k` only its keys see δ), and the
  change of its output is passed on to the next node only. A path ending at `unembed` reads the
  last change through the frozen final LayerNorm as above: C = −δ · u. A path ending at a receiver
  writes the receiver's change into the residual stream and runs the rest of the model
  normally: C = m_clean − m_patched, the drop of the (exact) margin.
- A QK restriction keeps only the part of the head's output that comes from attention from the
  read's `from` position to its `to` positions: Σ_{j ∈ to} A[f, j] v_j W_O^h.
- A circuit's contribution is the sum of its paths' contributions.

So for the zero ablation `X -> unembed` by path patching equals direct attribution exactly, and
`share(P)` = Σ_reads C_P / Σ_reads m_lin is the fraction of the linearised margin P carries.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from hypodsl import plan as p
from hypodsl.plan_view import node_text
from runner.measure import behaviour
from runner.measure import interventions as iv
from runner.measure.attribution import readout
from runner.measure.probe import CleanRun, ProbeBatch, attribution_names, residual_names
from runner.measure.recompute import head_pattern_and_z, run_from
from runner.measure.weights import mlp_out, w_o
from runner.model.transformer import Transformer

METHODS = ("zero", "mean", "resample")
HEAD_KINDS = ("head", "head_input", "head_qk")


class PathError(ValueError):
    """A path that cannot be measured as written (an impossible order, say)."""


def path_names(model: Transformer) -> list[str]:
    """Every activation path contributions need from the clean run."""
    names = attribution_names(model) + residual_names(model)
    for layer in range(model.cfg.n_layers):
        names += [f"blocks.{layer}.attn.hook_pattern", f"blocks.{layer}.attn.hook_v"]
    names.append(f"blocks.{model.cfg.n_layers - 1}.hook_resid_post")
    return names


def _write_time(node: p.PathNode) -> int:
    if isinstance(node, (p.EmbedNode, p.PosNode)):
        return 0
    if node.kind in HEAD_KINDS:
        return 2 * node.layer + 1  # type: ignore[union-attr]
    return 2 * node.layer + 2  # type: ignore[union-attr]


def _read_time(node: p.PathNode) -> int:
    if node.kind in HEAD_KINDS:
        return 2 * node.layer  # type: ignore[union-attr]
    return 2 * node.layer + 1  # type: ignore[union-attr]


def check_path(nodes: Sequence[p.PathNode]) -> None:
    """Raise PathError unless every node reads what the node before it writes."""
    if len(nodes) < 2:
        raise PathError("a path needs a sender and at least one receiver")
    if isinstance(nodes[0], (p.UnembedNode, p.HeadInputNode)):
        raise PathError(f"`{node_text(nodes[0])}` cannot send along a path")
    for i, (sender, receiver) in enumerate(itertools.pairwise(nodes)):
        if isinstance(receiver, (p.EmbedNode, p.PosNode)):
            raise PathError(f"`{receiver.kind}` cannot receive along a path")
        if isinstance(sender, p.UnembedNode) or (isinstance(sender, p.HeadInputNode) and i > 0):
            raise PathError(f"`{node_text(sender)}` must end the path")
        if isinstance(receiver, p.UnembedNode):
            continue
        if _write_time(sender) > _read_time(receiver):
            raise PathError(
                f"`{node_text(sender)}` writes after `{node_text(receiver)}` reads: "
                "paths go forward through the layers"
            )


Pick = Callable[[torch.Tensor], torch.Tensor]  # [seq, pos, ...] -> what is read of it


def _everywhere(x: torch.Tensor) -> torch.Tensor:
    return x


def _answers_suffice(nodes: Sequence[p.PathNode]) -> bool:
    """Whether the path reads its sender's change at the answer positions only: it goes
    straight to the unembedding, or through one MLP (or neurons) into it."""
    if isinstance(nodes[1], p.UnembedNode):
        return True
    return (
        len(nodes) == 3
        and isinstance(nodes[1], (p.MlpNode, p.NeuronsNode))
        and isinstance(nodes[2], p.UnembedNode)
    )


def answers_suffice(paths: Sequence[Sequence[p.PathNode]]) -> bool:
    """Whether the zero-ablation contributions of these paths read the last block's MLP, the
    final LayerNorm and the logits at the answer positions only (the last block's attention
    too, unless `reads_last_attention`): every path goes straight to the unembedding, or
    through one MLP into it, and none starts or ends at a feature."""
    return all(
        _answers_suffice(nodes)
        and not any(isinstance(node, p.FeatureNode | p.ErrorNode) for node in nodes)
        for nodes in paths
    )


def reads_last_attention(paths: Sequence[Sequence[p.PathNode]], n_layers: int) -> bool:
    """Whether a path has a head of the last layer, whose attention it reads at every query."""
    return any(
        node.kind in HEAD_KINDS and node.layer == n_layers - 1  # type: ignore[union-attr]
        for nodes in paths
        for node in nodes
    )


def _mix_by_sequence(
    weights: torch.Tensor, values: torch.Tensor, read_seq: torch.Tensor
) -> torch.Tensor:
    """[read, d] Σ_k weights[r, k] values[seq(r), k]: each sequence's reads stacked in one
    product with its values [seq, key, d] (gathering the values per read would copy them once
    for every read)."""
    counts = torch.bincount(read_seq, minlength=values.shape[0])
    order = torch.argsort(read_seq, stable=True)
    first = counts.cumsum(0) - counts  # each sequence's first read, in sorted order
    rank = torch.empty_like(read_seq)  # each read's place among its sequence's reads
    rank[order] = torch.arange(len(read_seq), device=read_seq.device) - first[read_seq[order]]
    grouped = weights.new_zeros(values.shape[0], int(counts.max()), weights.shape[1])
    grouped[read_seq, rank] = weights
    return (grouped @ values)[read_seq, rank]


class PathPatcher:
    """Path contributions on one model and probe, sharing one clean run."""

    def __init__(self, model: Transformer, probe: ProbeBatch, run: CleanRun, seed: int = 0):
        self.model, self.probe, self.run, self.seed = model, probe, run, seed
        self.u = readout(model, run, probe)  # [read, d_model]
        self.margin = behaviour.margin(run.logits, probe.target)

    def _change(self, activation: torch.Tensor, method: str, pick: Pick) -> torch.Tensor:
        """The ablated activation minus the clean one, both read through `pick`."""
        if method == "zero":
            return -pick(activation)
        if method == "mean":
            mean = iv.mean_source(activation, self.probe.token_mask(), self.probe.n_pos)
            replaced = pick(mean.expand_as(activation))
        elif method == "resample":
            replaced = pick(iv.resample_source(activation, self.seed))
        else:
            raise PathError(f"unknown ablation `{method}`; use one of {', '.join(METHODS)}")
        return replaced - pick(activation)

    def _restricted_output(
        self, node: p.HeadQKNode, pattern: torch.Tensor, v: torch.Tensor, at_answers: bool = False
    ) -> torch.Tensor:
        """[seq, pos, d_model] the head's write from attention to `to` positions only; with
        `at_answers`, [read, d_model] at the answer positions only."""
        if at_answers:
            keep = iv.qk_restriction_at_answers(self.probe, node.from_role, node.to_role)
            weights = pattern[self.probe.read_seq, self.probe.answer] * keep  # [read, key]
            mixed = _mix_by_sequence(weights, v, self.probe.read_seq)  # [read, d_head]
            return mixed @ w_o(self.model, node.layer)[node.head]
        keep = iv.qk_restriction_mask(self.probe, node.from_role, node.to_role)
        return ((pattern * keep) @ v) @ w_o(self.model, node.layer)[node.head]

    def sender_delta(self, node: p.PathNode, method: str, at_answers: bool = False) -> torch.Tensor:
        """[seq, pos, d_model] change of the sender's residual write under the ablation; with
        `at_answers`, [read, d_model]: the same change at the answer positions only, computed
        there only (equal up to float rounding: a matrix product over fewer rows)."""
        run = self.run
        pick = self.probe.at_answers if at_answers else _everywhere
        if isinstance(node, (p.EmbedNode, p.PosNode)):
            x = run["hook_embed" if node.kind == "embed" else "hook_pos_embed"]
            return self._change(x, method, pick)
        if isinstance(node, p.HeadNode):
            z = run[f"blocks.{node.layer}.attn.hook_z"][:, :, node.head]
            return self._change(z, method, pick) @ w_o(self.model, node.layer)[node.head]
        if isinstance(node, p.HeadQKNode):
            if method != "zero":
                raise PathError("a QK-restricted head is ablated by zeroing its attention only")
            pattern = run[f"blocks.{node.layer}.attn.hook_pattern"][:, node.head]
            v = run[f"blocks.{node.layer}.attn.hook_v"][:, :, node.head]
            return -self._restricted_output(node, pattern, v, at_answers)
        if isinstance(node, (p.MlpNode, p.NeuronsNode)):
            post = run[f"blocks.{node.layer}.mlp.hook_post"]
            return self._neuron_write(node, self._change(post, method, pick))
        raise PathError(f"`{node.kind}` cannot send along a path")

    def _neuron_write(self, node: p.MlpNode | p.NeuronsNode, change: torch.Tensor) -> torch.Tensor:
        w = mlp_out(self.model, node.layer)
        if isinstance(node, p.NeuronsNode):
            idx = list(node.indices)
            return change[..., idx] @ w[idx]
        return change @ w

    def receive(self, node: p.PathNode, delta: torch.Tensor) -> torch.Tensor:
        """The change of the receiver's write when δ is added to the input(s) it reads."""
        model, run = self.model, self.run
        if node.kind in HEAD_KINDS:
            layer, head = node.layer, node.head  # type: ignore[union-attr]
            ln1 = model.block(layer).ln1
            resid = run[f"blocks.{layer}.hook_resid_pre"]
            clean, moved = ln1(resid), ln1(resid + delta)
            inputs = {"q": clean, "k": clean, "v": clean}
            if isinstance(node, p.HeadInputNode):
                inputs[node.input] = moved
            else:
                inputs = {k: moved for k in inputs}
            pattern, z, v = head_pattern_and_z(model, layer, head, *inputs.values())
            if isinstance(node, p.HeadQKNode):
                pattern0 = run[f"blocks.{layer}.attn.hook_pattern"][:, head]
                v0 = run[f"blocks.{layer}.attn.hook_v"][:, :, head]
                return self._restricted_output(node, pattern, v) - self._restricted_output(
                    node, pattern0, v0
                )
            z0 = run[f"blocks.{layer}.attn.hook_z"][:, :, head]
            return (z - z0) @ w_o(model, layer)[head]
        if isinstance(node, (p.MlpNode, p.NeuronsNode)):
            block = model.block(node.layer)
            x = block.ln2(run[f"blocks.{node.layer}.hook_resid_mid"] + delta)
            post = F.gelu(block.mlp.c_fc(x), approximate="tanh")
            return self._neuron_write(node, post - run[f"blocks.{node.layer}.mlp.hook_post"])
        raise PathError(f"`{node.kind}` cannot receive along a path")

    def _rest_of_model(self, node: p.PathNode, delta: torch.Tensor) -> torch.Tensor:
        """[read] margin when the last receiver's change is written into the residual stream."""
        model, run, rows = self.model, self.run, (self.probe.read_seq, self.probe.answer)
        layer = node.layer  # type: ignore[union-attr]
        if node.kind in HEAD_KINDS:
            resid = run[f"blocks.{layer}.hook_resid_mid"] + delta
            logits = run_from(model, resid, layer, "mlp", rows)
        elif layer + 1 < model.cfg.n_layers:
            resid = run[f"blocks.{layer + 1}.hook_resid_pre"] + delta
            logits = run_from(model, resid, layer + 1, "attn", rows)
        else:
            resid = run[f"blocks.{layer}.hook_resid_post"] + delta
            logits = run_from(model, resid, model.cfg.n_layers, "attn", rows)
        return behaviour.margin(logits, self.probe.target)

    def contribution(self, nodes: Sequence[p.PathNode], method: str = "zero") -> torch.Tensor:
        """[read] C_P: the margin the path carries (see the module docstring)."""
        check_path(nodes)
        if _answers_suffice(nodes):  # X -> unembed, X -> MLP -> unembed
            delta = self.sender_delta(nodes[0], method, at_answers=True)
            if len(nodes) == 3:
                delta = self._mlp_write_at_answers(nodes[1], delta)  # type: ignore[arg-type]
            return -(delta * self.u).sum(dim=-1)
        delta = self.sender_delta(nodes[0], method)
        for i, node in enumerate(nodes[1:], start=1):
            if isinstance(node, p.UnembedNode):
                return -(self.probe.at_answers(delta) * self.u).sum(dim=-1)
            into_unembed = i + 1 < len(nodes) and isinstance(nodes[i + 1], p.UnembedNode)
            if into_unembed and isinstance(node, (p.MlpNode, p.NeuronsNode)):
                write = self._mlp_write_at_answers(node, self.probe.at_answers(delta))
                return -(write * self.u).sum(dim=-1)
            delta = self.receive(node, delta)
        return self.margin - self._rest_of_model(nodes[-1], delta)

    def _mlp_write_at_answers(
        self, node: p.MlpNode | p.NeuronsNode, delta: torch.Tensor
    ) -> torch.Tensor:
        """[read, d_model] `receive` of an MLP at the answer positions only, given δ there
        ([read, d_model]): the unembedding reads nothing else, so the MLP need not run
        elsewhere (per row, so the same values there)."""
        block, at = self.model.block(node.layer), self.probe.at_answers
        x = block.ln2(at(self.run[f"blocks.{node.layer}.hook_resid_mid"]) + delta)
        post = F.gelu(block.mlp.c_fc(x), approximate="tanh")
        return self._neuron_write(node, post - at(self.run[f"blocks.{node.layer}.mlp.hook_post"]))

    def circuit_contribution(
        self, paths: Sequence[Sequence[p.PathNode]], method: str = "zero"
    ) -> torch.Tensor:
        """[read] the sum of the paths' contributions."""
        return torch.stack([self.contribution(nodes, method) for nodes in paths]).sum(dim=0)
