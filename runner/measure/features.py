"""Feature quantities: a basis's features measured like any component, per read.

A basis (runner.features) reads the activation x at its site; at a read's answer position
f = ReLU((x − b_dec) W_enc + b_enc) and x = Σ_i f_i d_i + e, with d_i = W_dec[i] and the
*error term* e = x − Σ_i f_i d_i (it holds the decoder bias b_dec and the reconstruction error).
For a family F (a set of feature ids):

- `activation(F)` = Σ_{i∈F} f_i; `active(F)` = the fraction of F's features with f_i > 0.
- `F -> unembed`: C_F = Σ_{i∈F} f_i (d_i · u'), where a change δ of the site's activation at the
  answer position moves the linearised margin by δ · u' directly (runner.measure.attribution,
  final LayerNorm scale frozen). `l2.error -> unembed` is e · u'. The features, the error term
  and every component writing after the site (plus the final LayerNorm bias) sum to the
  linearised margin exactly. Sites: the residual stream (`blocks.l.hook_resid_pre/mid/post`), a
  block's output (`hook_attn_out`, `hook_mlp_out`), an MLP's neurons (`mlp.hook_post`, read
  through W_out) and the final norm (`ln_final.hook_normalized`, read through its gain).
- `X -> F` (lineage): Σ_{i∈F} w_X · W_enc[:, i], the part of F's encoder pre-activations that
  component X's direct write w_X carries (residual sites, X writing before the site; at the
  final norm w_X is centred and divided by the frozen scale). All writers before a site sum to
  the site's activation, so their lineages sum to (x) · W_enc[:, i] exactly.
- `ablate(F, zero|mean|resample)` and `patch(F, from=...)` edit the site's activation at every
  position: x' = x + Σ_{i∈F} (f'_i − f_i) d_i, with f' zero, the per-position mean over the
  probe, another sequence's value, or the value on another checkpoint or probe. The error term
  and the other features are kept; a patch from the same checkpoint adds exactly 0.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

from hypodsl import plan as p
from runner.features.basis import Basis
from runner.measure import interventions as iv
from runner.measure.attribution import component_writes, margin_direction, readout
from runner.measure.probe import CleanRun, ProbeBatch
from runner.measure.weights import head_output, mlp_out
from runner.model.transformer import Transformer

_RESIDUAL = re.compile(r"blocks\.(\d+)\.hook_(resid_pre|resid_mid|resid_post|attn_out|mlp_out)$")
_NEURONS = re.compile(r"blocks\.(\d+)\.mlp\.hook_post$")
FINAL_NORM = "ln_final.hook_normalized"


class FeatureError(ValueError):
    """A feature quantity that cannot be measured at this basis's site."""


def site_vectors(run: CleanRun, probe: ProbeBatch, basis: Basis) -> torch.Tensor:
    """[read, d_in] the site's activation at each read's answer position."""
    return probe.at_answers(run[basis.info.site])


def encode(basis: Basis, x: torch.Tensor, ids: tuple[int, ...] | None = None) -> torch.Tensor:
    f = basis.sae.encode(x.to(basis.sae.W_enc.dtype))
    return f if ids is None else f[..., list(ids)]


def activation(
    run: CleanRun, probe: ProbeBatch, basis: Basis, ids: tuple[int, ...]
) -> torch.Tensor:
    """[read] Σ_{i∈F} f_i at the read."""
    return encode(basis, site_vectors(run, probe, basis), ids).sum(dim=-1)


def active(run: CleanRun, probe: ProbeBatch, basis: Basis, ids: tuple[int, ...]) -> torch.Tensor:
    """[read] fraction of F's features active at the read."""
    return (encode(basis, site_vectors(run, probe, basis), ids) > 0).to(torch.float32).mean(dim=-1)


def site_readout(model: Transformer, run: CleanRun, probe: ProbeBatch, site: str) -> torch.Tensor:
    """[read, d_site] u' with δ · u' the direct change of the linearised margin when the site's
    activation at the answer position moves by δ."""
    if _RESIDUAL.match(site):
        return readout(model, run, probe)
    neurons = _NEURONS.match(site)
    if neurons:
        return readout(model, run, probe) @ mlp_out(model, int(neurons.group(1))).T
    if site == FINAL_NORM:
        d = margin_direction(run.logits, probe.target)
        return (d @ model.embed.weight) * model.ln_final.weight
    raise FeatureError(
        f"a basis at `{site}` has no direct path to the unembedding; fit one at a residual, "
        "block-output, MLP-neuron or final-norm site"
    )


def to_unembed(
    model: Transformer, run: CleanRun, probe: ProbeBatch, basis: Basis, node: p.PathNode
) -> torch.Tensor:
    """[read] C of `F -> unembed` or `l2.error -> unembed`."""
    x = site_vectors(run, probe, basis)
    u = site_readout(model, run, probe, basis.info.site).to(x.dtype)
    f = encode(basis, x).to(x.dtype)
    decoder = basis.sae.W_dec.to(x.dtype)
    if isinstance(node, p.ErrorNode):
        return ((x - f @ decoder) * u).sum(dim=-1)
    assert isinstance(node, p.FeatureNode)
    ids = list(node.ids)
    return (f[:, ids] * (decoder[ids] @ u.T).T).sum(dim=-1)


def _site_time(site: str) -> int:
    """When the site is read, in the write times of runner.measure.paths (embed 0, heads of
    layer l at 2l + 1, its MLP at 2l + 2)."""
    if site == FINAL_NORM:
        return 1 << 30
    m = _RESIDUAL.match(site)
    if m is None or m.group(2) not in ("resid_pre", "resid_mid", "resid_post"):
        raise FeatureError(
            f"lineage `X -> F` reads a basis on the residual stream or the final norm; "
            f"this one is at `{site}`"
        )
    layer = int(m.group(1))
    return {"resid_pre": 2 * layer, "resid_mid": 2 * layer + 1, "resid_post": 2 * layer + 2}[
        m.group(2)
    ]


def _write_time(node: p.PathNode) -> int:
    if isinstance(node, p.EmbedNode | p.PosNode):
        return 0
    if isinstance(node, p.HeadNode):
        return 2 * node.layer + 1
    if isinstance(node, p.MlpNode | p.NeuronsNode):
        return 2 * node.layer + 2
    raise FeatureError(f"`{node.kind}` cannot write into a feature")


def component_write(
    model: Transformer, run: CleanRun, probe: ProbeBatch, node: p.PathNode
) -> torch.Tensor:
    """[read, d_model] a component's direct write into the residual at the answer position."""
    if isinstance(node, p.EmbedNode | p.PosNode):
        return probe.at_answers(run["hook_embed" if node.kind == "embed" else "hook_pos_embed"])
    if isinstance(node, p.HeadNode):
        z = probe.at_answers(run[f"blocks.{node.layer}.attn.hook_z"])
        return head_output(model, node.layer, z, node.head)
    if isinstance(node, p.MlpNode | p.NeuronsNode):
        post = probe.at_answers(run[f"blocks.{node.layer}.mlp.hook_post"])
        w = mlp_out(model, node.layer)
        if isinstance(node, p.NeuronsNode):
            idx = list(node.indices)
            return post[:, idx] @ w[idx]
        return post @ w
    raise FeatureError(f"`{node.kind}` cannot write into a feature")


def lineage(
    model: Transformer,
    run: CleanRun,
    probe: ProbeBatch,
    basis: Basis,
    sender: p.PathNode,
    ids: tuple[int, ...],
) -> torch.Tensor:
    """[read] C of `X -> F`: X's write read through F's encoder directions."""
    site = basis.info.site
    if _write_time(sender) > _site_time(site):
        raise FeatureError(f"the sender writes after `{site}`, where this basis reads")
    return lineage_of_write(run, probe, basis, component_write(model, run, probe, sender), ids)


def lineage_of_write(
    run: CleanRun, probe: ProbeBatch, basis: Basis, write: torch.Tensor, ids: tuple[int, ...]
) -> torch.Tensor:
    """[read] Σ_{i∈F} w · W_enc[:, i] for a residual write w [read, d_model]."""
    if basis.info.site == FINAL_NORM:
        write = write - write.mean(dim=-1, keepdim=True)
        write = write / probe.at_answers(run["ln_final.hook_scale"])
    encoder = basis.sae.W_enc[:, list(ids)].to(write.dtype)
    return (write @ encoder).sum(dim=-1)


def all_writes(model: Transformer, run: CleanRun, probe: ProbeBatch) -> dict[str, torch.Tensor]:
    """Every component's write, as in direct logit attribution (for identity tests)."""
    return component_writes(model, run, probe)


# --- interventions in the basis ------------------------------------------------------------

# f [seq, pos, |F|] of the edited pass, and the probe's sequences it holds -> f'
Source = Callable[[torch.Tensor, iv.Sequences], torch.Tensor]


def basis_edit(basis: Basis, ids: tuple[int, ...], replacement: Source) -> iv.Edit:
    """Replace F's activations at the site: x' = x + Σ_{i∈F} (f'_i − f_i) d_i."""
    idx = list(ids)

    def fn(x: torch.Tensor, name: str, seqs: iv.Sequences = iv.ALL_SEQUENCES) -> torch.Tensor:
        f = encode(basis, x, ids).to(x.dtype)
        change = replacement(f, seqs).to(x.dtype) - f
        return x + change @ basis.sae.W_dec[idx].to(x.dtype)

    return basis.info.site, fn


def zero_source() -> Source:
    return lambda f, seqs: torch.zeros_like(f)


def fixed_source(values: torch.Tensor) -> Source:
    """f' = values [seq or 1, pos, |F|], broadcast over the edited pass."""
    return lambda f, seqs: iv.per_sequence(values, seqs).to(f.dtype).expand_as(f)


def reference_features(
    basis: Basis, clean_site: torch.Tensor, ids: tuple[int, ...]
) -> torch.Tensor:
    """[seq, pos, |F|] F's activations on a clean site activation [seq, pos, d_in]."""
    return encode(basis, clean_site, ids)
