"""Parameter gradients of path contributions and of the loss: `alignment`, `update_alignment`.

On a probe with reads i = 1..N, let C_i(θ) be path P's contribution at read i (see `paths`),
C̄ = mean_i C_i, L_i the answer loss and L̄ = mean_i L_i.

- `alignment(P)` = <∇θ C̄, −∇θ L̄>: the first-order change of C̄ per unit learning rate under an
  SGD step on L̄ (θ' = θ − η ∇L̄ gives C̄(θ') − C̄(θ) ≈ η · alignment). Per read,
  a_i = <∇θ C_i, −∇θ L̄>, whose mean is the alignment.
- `alignment_cosine(P)` = alignment / (|∇θ C̄| |∇θ L̄|), one number for the probe.
- `update_alignment(P)` between checkpoints θ_t and θ_{t+1}: the predicted change per read,
  ∇θ C_i(θ_t) · (θ_{t+1} − θ_t), reported with the observed change C_i(θ_{t+1}) − C_i(θ_t).

Gradients include every dependence on θ, through the frozen LayerNorm scale and the margin
direction too: the quantity differentiated is exactly the one measured. Per-read directional
derivatives J v come from two backward passes (the gradient of w · C with respect to θ is linear
in w; differentiating its product with v with respect to w gives J v).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from hypodsl import plan as p
from runner.measure import behaviour
from runner.measure.paths import PathPatcher, path_names
from runner.measure.probe import ProbeBatch, clean_run
from runner.model.transformer import Transformer

Paths = Sequence[Sequence[p.PathNode]]


def parameters(model: Transformer) -> list[torch.Tensor]:
    return [param for _, param in model.named_parameters()]


def answer_losses(model: Transformer, probe: ProbeBatch) -> torch.Tensor:
    """[read] differentiable answer loss."""
    logits = probe.at_answers(model(probe.tokens))
    return behaviour.per_read(logits, probe.target)["loss"]


def contributions(
    model: Transformer, probe: ProbeBatch, paths: Paths, method: str = "zero"
) -> torch.Tensor:
    """[read] differentiable contribution of a path (one entry) or circuit (several)."""
    run = clean_run(model, probe, path_names(model), detach=False)
    return PathPatcher(model, probe, run).circuit_contribution(paths, method)


def flat_grad(scalar: torch.Tensor, model: Transformer, keep_graph: bool = False) -> torch.Tensor:
    grads = torch.autograd.grad(
        scalar, parameters(model), allow_unused=True, retain_graph=keep_graph
    )
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(w)).reshape(-1)
            for g, w in zip(grads, parameters(model), strict=True)
        ]
    )


def directional_derivatives(
    values: torch.Tensor, model: Transformer, direction: torch.Tensor
) -> torch.Tensor:
    """[read] ∇θ values_i · direction, for values [read] built from the model's parameters."""
    weights = torch.zeros_like(values, requires_grad=True)
    params = parameters(model)
    grads = torch.autograd.grad((weights * values).sum(), params, create_graph=True)
    dot = sum(
        (g * d.view_as(w)).sum()
        for g, d, w in zip(grads, direction.split([w.numel() for w in params]), params, strict=True)
    )
    (out,) = torch.autograd.grad(dot, weights)
    return out


@dataclass(frozen=True)
class Alignment:
    per_read: torch.Tensor  # [read] <∇C_i, −∇L̄>
    alignment: float  # <∇C̄, −∇L̄>
    cosine: float


def alignment(
    model: Transformer, probe: ProbeBatch, paths: Paths, cosine: bool = True
) -> Alignment:
    """Per-read and probe alignment from one forward pass with its graph.

    The loss and the contributions are read from the same pass. With `cosine=False` the extra
    backward pass for ∇C̄ is skipped: the alignment is then the mean of the per-read values
    (equal to <∇C̄, −∇L̄> by linearity) and the cosine is NaN.
    """
    run = clean_run(model, probe, path_names(model), detach=False)
    losses = behaviour.per_read(run.logits, probe.target)["loss"]
    values = PathPatcher(model, probe, run).circuit_contribution(paths, "zero")
    descent = -flat_grad(losses.mean(), model, keep_graph=True)
    if cosine:
        grad_c = flat_grad(values.mean(), model, keep_graph=True)
        dot = float(grad_c @ descent)
        norms = float(grad_c.norm() * descent.norm())
        cos = dot / norms if norms > 0 else float("nan")
    per_read = directional_derivatives(values, model, descent)
    if not cosine:
        dot, cos = float(per_read.mean()), float("nan")
    return Alignment(per_read.detach(), dot, cos)


@dataclass(frozen=True)
class UpdateAlignment:
    predicted: torch.Tensor  # [read] ∇C_i(θ_t) · Δθ
    observed: torch.Tensor  # [read] C_i(θ_{t+1}) − C_i(θ_t)


def flat_parameters(model: Transformer) -> torch.Tensor:
    return torch.cat([w.detach().reshape(-1) for w in parameters(model)])


def update_alignment(
    model: Transformer, next_model: Transformer, probe: ProbeBatch, paths: Paths
) -> UpdateAlignment:
    step = flat_parameters(next_model) - flat_parameters(model)
    values = contributions(model, probe, paths)
    predicted = directional_derivatives(values, model, step)
    with torch.no_grad():
        after = contributions(next_model, probe, paths)
    return UpdateAlignment(predicted.detach(), (after - values).detach())
