"""Direct logit attribution: every component's share of the linearised answer margin.

At a read with answer logits l and target y, let p be the softmax of l over z ≠ y. The margin
m = l_y − logsumexp_{z≠y} l_z has gradient d = e_y − p with respect to l, and the *linearised
margin* is m_lin = d · l = l_y − Σ_{z≠y} p_z l_z (= m + H(p), H the entropy of p).

The final residual x = Σ_c x_c is a sum of component writes: token and position embeddings,
each head (z_h W_O^h), each attention output bias, each MLP (post W_out) and each MLP bias. With
the final LayerNorm's scale σ frozen at its clean value, the logits are affine in x:

    l = ((x − mean(x)) / σ ⊙ w + b) E^T

so m_lin = Σ_c x_c · u + b · (E^T d), with u = centre(w ⊙ (E^T d)) / σ. The contribution of
component c is C_c = x_c · u; the final LayerNorm bias contributes b · (E^T d). These sum to the
linearised margin exactly (a test asserts it to 1e-5 relative).
"""

from __future__ import annotations

import torch

from runner.measure.probe import CleanRun, ProbeBatch
from runner.measure.weights import head_output, mlp_out
from runner.model.transformer import Transformer

LN_FINAL_BIAS = "ln_final.bias"


def margin_direction(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[read, vocab] d = e_y − softmax over z ≠ y: the margin's gradient with respect to logits."""
    others = logits.scatter(1, target[:, None], float("-inf"))
    d = -torch.softmax(others, dim=1)
    return d.scatter(1, target[:, None], 1.0)


def linearised_margin(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[read] d · l."""
    return (margin_direction(logits, target) * logits).sum(dim=1)


def readout(model: Transformer, run: CleanRun, probe: ProbeBatch) -> torch.Tensor:
    """[read, d_model] u such that a residual write x at the answer position contributes x · u."""
    d = margin_direction(run.logits, probe.target)
    u = (d @ model.embed.weight) * model.ln_final.weight
    u = u - u.mean(dim=-1, keepdim=True)
    return u / probe.at_answers(run["ln_final.hook_scale"])


def ln_final_bias_contribution(
    model: Transformer, run: CleanRun, probe: ProbeBatch
) -> torch.Tensor:
    d = margin_direction(run.logits, probe.target)
    return (d @ model.embed.weight) @ model.ln_final.bias


def component_writes(
    model: Transformer, run: CleanRun, probe: ProbeBatch
) -> dict[str, torch.Tensor]:
    """Every component's write [read, d_model] into the final residual at the answer positions,
    named `embed`, `pos`, `L{l}.H{h}`, `L{l}.attn_bias`, `L{l}.mlp`, `L{l}.mlp_bias`."""
    n_reads = len(probe)
    writes = {
        "embed": probe.at_answers(run["hook_embed"]),
        "pos": probe.at_answers(run["hook_pos_embed"]),
    }
    for layer in range(model.cfg.n_layers):
        block = model.block(layer)
        z = probe.at_answers(run[f"blocks.{layer}.attn.hook_z"])
        for head in range(model.cfg.n_heads):
            writes[f"L{layer}.H{head}"] = head_output(model, layer, z, head)
        writes[f"L{layer}.attn_bias"] = block.attn.c_proj.bias.expand(n_reads, -1)
        post = probe.at_answers(run[f"blocks.{layer}.mlp.hook_post"])
        writes[f"L{layer}.mlp"] = post @ mlp_out(model, layer)
        writes[f"L{layer}.mlp_bias"] = block.mlp.c_proj.bias.expand(n_reads, -1)
    return writes


def direct_logit_attribution(
    model: Transformer, run: CleanRun, probe: ProbeBatch
) -> dict[str, torch.Tensor]:
    """[read] contribution of every component to the linearised margin (they sum to it).

    `run` must cache `attribution_names(model)`.
    """
    u = readout(model, run, probe)
    out = {name: (x * u).sum(dim=-1) for name, x in component_writes(model, run, probe).items()}
    out[LN_FINAL_BIAS] = ln_final_bias_contribution(model, run, probe)
    return out
