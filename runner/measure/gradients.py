"""Parameter gradients of path contributions and of the loss: `alignment`, `update_alignment`.

On a probe with reads i = 1..N, let C_i(θ) be path P's contribution at read i (see `paths`),
C̄ = mean_i C_i, L_i the answer loss and L̄ = mean_i L_i.

- `alignment(P)` = <∇θ C̄, −∇θ L̄>: the first-order change of C̄ per unit learning rate under an
  SGD step on L̄ (θ' = θ − η ∇L̄ gives C̄(θ') − C̄(θ) ≈ η · alignment). Per read,
  a_i = <∇θ C_i, −∇θ L̄>, whose mean is the alignment.
- The cosine, alignment / (|∇θ C̄| |∇θ L̄|): one number for the probe (not a quantity of the
  language: it has no per-read values to bootstrap).
- `update_alignment(P)` between checkpoints θ_t and θ_{t+1}: the predicted change per read,
  ∇θ C_i(θ_t) · (θ_{t+1} − θ_t), reported with the observed change C_i(θ_{t+1}) − C_i(θ_t).

Gradients include every dependence on θ, through the frozen LayerNorm scale and the margin
direction too: the quantity differentiated is exactly the one measured. The engine's per-read
directional derivatives J v of K targets come from one forward-mode pass (`torch.func.jvp`) of
their stacked values, with the last block's MLP at the answers only when the targets read
nothing else there (`batched.answer_run`). `alignment` computes them with two backward passes
through the full forward pass instead (the gradient of w · C with respect to θ is linear in w;
differentiating its product with v with respect to w gives J v), and the tests hold the two
equal in float64.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from hypodsl import plan as p
from runner.features.basis import Basis
from runner.measure import batched, behaviour
from runner.measure.circuits import circuit_values, names_for
from runner.measure.paths import answers_suffice, reads_last_attention
from runner.measure.probe import CleanRun, ProbeBatch, clean_run
from runner.model.transformer import Transformer

Paths = Sequence[Sequence[p.PathNode]]
# values(model, run) -> [read]: a differentiable per-read quantity of one forward pass
Values = Callable[[Transformer, CleanRun], torch.Tensor]
NO_BASES: Mapping[str, Basis] = {}


@dataclass(frozen=True)
class SiteScore:
    """A differentiable per-read score that reads one activation, `site`, at the answer
    positions only (a feature score reads its basis's site there): the answers-only pass serves
    it, whatever block the site is in."""

    site: str
    fn: Values

    def __call__(self, model: Transformer, run: CleanRun) -> torch.Tensor:
        return self.fn(model, run)


def parameters(model: Transformer) -> list[torch.Tensor]:
    return [param for _, param in model.named_parameters()]


def answer_losses(model: Transformer, probe: ProbeBatch) -> torch.Tensor:
    """[read] differentiable answer loss, the last block and the unembedding run at the answers
    only (`batched.answer_logits`): the loss gradient's forward and backward pass are a third
    cheaper than through the full forward pass, and equal to it up to float rounding."""
    return behaviour.per_read(batched.answer_logits(model, probe), probe.target)["loss"]


def contributions(
    model: Transformer,
    probe: ProbeBatch,
    paths: Paths,
    method: str = "zero",
    bases: Mapping[str, Basis] = NO_BASES,
) -> torch.Tensor:
    """[read] differentiable contribution of a path (one entry) or circuit (several)."""
    run = clean_run(model, probe, names_for(model, bases), detach=False)
    return circuit_values(model, probe, run, paths, bases, method=method)


def path_values(paths: Paths, probe: ProbeBatch, bases: Mapping[str, Basis] = NO_BASES) -> Values:
    """The contribution of `paths` as a `Values` function."""
    return lambda model, run: circuit_values(model, probe, run, paths, bases)


def scope_mask(model: Transformer, node: p.PathNode) -> torch.Tensor:
    """[n_params] bool over the flat parameters: those of one component.

    An MLP: its c_fc and c_proj weights and biases. Neurons i: row i of c_fc's weight and bias
    and column i of c_proj's weight (c_proj's bias belongs to the whole MLP). A head: its rows
    of c_attn (query, key and value) and its columns of c_proj. `embed` and `pos`: the token
    (also the unembedding, tied) and position embeddings.
    """
    cfg = model.cfg
    masks = []
    for name, w in model.named_parameters():
        m = torch.zeros_like(w, dtype=torch.bool)
        if isinstance(node, p.MlpNode) and name.startswith(f"blocks.{node.layer}.mlp."):
            m[...] = True
        elif isinstance(node, p.NeuronsNode) and name.startswith(f"blocks.{node.layer}.mlp."):
            idx = list(node.indices)
            if name.endswith("c_fc.weight") or name.endswith("c_fc.bias"):
                m[idx] = True
            elif name.endswith("c_proj.weight"):
                m[:, idx] = True
        elif isinstance(node, p.HeadNode) and name.startswith(f"blocks.{node.layer}.attn."):
            cols = slice(node.head * cfg.d_head, (node.head + 1) * cfg.d_head)
            if name.endswith("c_attn.weight") or name.endswith("c_attn.bias"):
                for i in range(3):  # query, key and value blocks of c_attn
                    m[i * cfg.d_model + cols.start : i * cfg.d_model + cols.stop] = True
            elif name.endswith("c_proj.weight"):
                m[:, cols] = True
        elif (isinstance(node, p.EmbedNode) and name == "embed.weight") or (
            isinstance(node, p.PosNode) and name == "pos_embed.weight"
        ):
            m[...] = True
        elif not isinstance(node, p.MlpNode | p.NeuronsNode | p.HeadNode | p.EmbedNode | p.PosNode):
            raise ValueError(f"`scope=` cannot take `{node.kind}`")
        masks.append(m.reshape(-1))
    return torch.cat(masks)


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
    grads = torch.autograd.grad(
        (weights * values).sum(), params, create_graph=True, allow_unused=True
    )  # parameters after a mid-stream site do not reach a feature score read there
    pieces = direction.split([w.numel() for w in params])
    terms = [
        (g * d.view_as(w)).sum()
        for g, d, w in zip(grads, pieces, params, strict=True)
        if g is not None
    ]
    if not terms:
        return torch.zeros_like(values).detach()
    (out,) = torch.autograd.grad(torch.stack(terms).sum(), weights, allow_unused=True)
    return torch.zeros_like(values).detach() if out is None else out


@dataclass(frozen=True)
class Alignment:
    per_read: torch.Tensor  # [read] <∇C_i, −∇L̄>
    alignment: float  # <∇C̄, −∇L̄>
    cosine: float


def alignment(
    model: Transformer,
    probe: ProbeBatch,
    paths: Paths | Values,
    cosine: bool = True,
    bases: Mapping[str, Basis] = NO_BASES,
) -> Alignment:
    """Per-read and probe alignment from one forward pass with its graph.

    `paths` is a path or circuit, or any differentiable `Values` (a feature score). The loss
    and the values are read from the same pass. With `cosine=False` the extra backward pass for
    ∇C̄ is skipped: the alignment is then the mean of the per-read values (equal to
    <∇C̄, −∇L̄> by linearity) and the cosine is NaN.
    """
    values_of = paths if callable(paths) else path_values(paths, probe, bases)
    run = clean_run(model, probe, names_for(model, bases), detach=False)
    losses = behaviour.per_read(run.logits, probe.target)["loss"]
    values = values_of(model, run)
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


def alignments(
    model: Transformer,
    probe: ProbeBatch,
    targets: Sequence[Paths | Values],
    bases: Mapping[str, Basis] = NO_BASES,
    descent: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Per-read <∇C_i, −∇L̄> of K targets: one forward and backward pass for ∇L̄ (unless its
    `descent` −∇L̄ is given), then one forward-mode pass of the K stacked values along −∇L̄,
    whatever K is."""
    if descent is None:
        descent = -flat_grad(answer_losses(model, probe).mean(), model)
    _, tangent = forward_derivatives(model, _stacked(targets, probe, bases), descent)
    return list(tangent)


def _values_of(target: Paths | Values, probe: ProbeBatch, bases: Mapping[str, Basis]) -> Values:
    return target if callable(target) else path_values(target, probe, bases)


def _stacked(
    targets: Sequence[Paths | Values], probe: ProbeBatch, bases: Mapping[str, Basis]
) -> Callable[[Transformer], torch.Tensor]:
    """model -> [K, read]: the targets' values from one clean pass of the model."""
    fns = [_values_of(t, probe, bases) for t in targets]

    def values(model: Transformer) -> torch.Tensor:
        run, answers_only = _clean_run_for(model, probe, targets, bases)
        out = torch.stack([fn(model, run) for fn in fns])
        if answers_only and bool(out.isnan().any()):  # NaN fills what answer_run did not compute
            raise ValueError("a target read the answers-only pass away from the answers")
        return out

    return values


def _clean_run_for(
    model: Transformer,
    probe: ProbeBatch,
    targets: Sequence[Paths | Values],
    bases: Mapping[str, Basis],
) -> tuple[CleanRun, bool]:
    """The differentiable clean pass the targets read, and whether it is answers-only: the last
    block's MLP and the unembedding at the answers only when every target is a path that reads
    nothing else there (`paths.answers_suffice`) or a `SiteScore`, the full pass otherwise."""
    names = names_for(model, bases)
    paths = [t for t in targets if not callable(t)]
    sites = [t.site for t in targets if isinstance(t, SiteScore)]
    if len(paths) + len(sites) == len(targets) and all(answers_suffice(t) for t in paths):
        last_attention = f"blocks.{model.cfg.n_layers - 1}.attn."
        reads_attention = any(reads_last_attention(t, model.cfg.n_layers) for t in paths) or any(
            site.startswith(last_attention) for site in sites
        )
        names += [site for site in sites if site not in names]
        return batched.answer_run(model, probe, names, queries=not reads_attention), True
    return clean_run(model, probe, names, detach=False), False


class _Bound(torch.nn.Module):
    """A function of the model as a module, so `torch.func` can call it with other parameters."""

    def __init__(self, model: Transformer, fn: Callable[[Transformer], torch.Tensor]) -> None:
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self) -> torch.Tensor:
        return self.fn(self.model)


def forward_derivatives(
    model: Transformer, fn: Callable[[Transformer], torch.Tensor], direction: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(fn(model), J v): its values and their derivative along `direction` [n_params] (flat, in
    `parameters` order), from one forward-mode pass."""
    named = list(model.named_parameters())
    pieces = direction.split([w.numel() for _, w in named])
    primals = {f"model.{name}": w.detach() for name, w in named}
    tangents = {
        f"model.{name}": d.view_as(w).to(w.dtype)
        for (name, w), d in zip(named, pieces, strict=True)
    }
    bound = _Bound(model, fn)
    with torch.no_grad():
        out = torch.func.jvp(
            lambda params: torch.func.functional_call(bound, params, ()), (primals,), (tangents,)
        )
    return out[0], out[1]


@dataclass(frozen=True)
class UpdateAlignment:
    predicted: torch.Tensor  # [read] ∇C_i(θ_t) · Δθ
    observed: torch.Tensor  # [read] C_i(θ_{t+1}) − C_i(θ_t)


def flat_parameters(model: Transformer) -> torch.Tensor:
    return torch.cat([w.detach().reshape(-1) for w in parameters(model)])


def update_alignment(
    model: Transformer,
    next_model: Transformer,
    probe: ProbeBatch,
    paths: Paths | Values,
    bases: Mapping[str, Basis] = NO_BASES,
    scope: p.PathNode | None = None,
) -> UpdateAlignment:
    """Predicted and observed change between checkpoints; with `scope`, Δθ is kept only on
    that component's parameters (the part of the drive that flows through them)."""
    return update_alignments(model, next_model, probe, [paths], bases, scope)[0]


def update_alignments(
    model: Transformer,
    next_model: Transformer,
    probe: ProbeBatch,
    targets: Sequence[Paths | Values],
    bases: Mapping[str, Basis] = NO_BASES,
    scope: p.PathNode | None = None,
) -> list[UpdateAlignment]:
    """`update_alignment` of K targets with one scope: one forward pass per checkpoint and one
    directional derivative along Δθ of the K stacked values."""
    values_of = _stacked(targets, probe, bases)
    values, predicted = _predicted(model, next_model, values_of, scope)
    with torch.no_grad():
        observed = values_of(next_model) - values
    return [UpdateAlignment(a, b) for a, b in zip(predicted, observed, strict=True)]


def predicted_changes(
    model: Transformer,
    next_model: Transformer,
    probe: ProbeBatch,
    targets: Sequence[Paths | Values],
    bases: Mapping[str, Basis] = NO_BASES,
    scope: p.PathNode | None = None,
) -> list[torch.Tensor]:
    """The `predicted` part of `update_alignments` alone (what the language measures): one
    forward-mode pass, without the later checkpoint's forward pass for the observed change."""
    _, predicted = _predicted(model, next_model, _stacked(targets, probe, bases), scope)
    return list(predicted)


def _predicted(
    model: Transformer,
    next_model: Transformer,
    values_of: Callable[[Transformer], torch.Tensor],
    scope: p.PathNode | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    step = flat_parameters(next_model) - flat_parameters(model)
    if scope is not None:
        step = step * scope_mask(model, scope)
    return forward_derivatives(model, values_of, step)
