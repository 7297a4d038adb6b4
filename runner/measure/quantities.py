"""Evaluate a compiled quantity (`plan.QuantityExpr`) to per-read values on one checkpoint.

The engine builds one `QuantityContext` per (checkpoint, probe): the clean forward pass and its
cache are computed once and serve every quantity; other checkpoints (for `patch(..., from=STEP)`
and `update_alignment`) and other probes (for `patch(..., from=PROBE)`) are fetched through the
callables the engine passes in. Anything that cannot be measured as written raises
`MeasureError` with the reason, and the engine reports the prediction Unsupported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from hypodsl import plan as p
from runner.features.basis import Basis
from runner.measure import attention, batched, behaviour
from runner.measure import features as ft
from runner.measure import gradients as gr
from runner.measure import interventions as iv
from runner.measure import per_example as pe
from runner.measure.attribution import linearised_margin
from runner.measure.circuits import circuit_values, names_for
from runner.measure.finite import non_finite_site
from runner.measure.paths import PathError
from runner.measure.probe import CleanRun, ProbeBatch, clean_run
from runner.model.transformer import Transformer

BEHAVIOUR = ("accuracy", "loss", "margin")
FEATURE_SCORES = ("activation", "active")
INTERVENED = (*BEHAVIOUR, *FEATURE_SCORES)  # quantities measured under interventions
IMPLEMENTED = (
    *BEHAVIOUR, *FEATURE_SCORES, "attention", "qk_gap", "ov_copy", "contribution", "share",
    "alignment", "update_alignment", "gram",
)  # fmt: skip
# Not in the language: the denominator of `share` (d · l, see runner.measure.attribution).
LINEARISED_MARGIN = "linearised_margin"
GRADIENT_OWN_PASSES = ("alignment", "update_alignment", "gram")  # each runs its own passes


class MeasureError(Exception):
    """A quantity that cannot be measured as written; the message says why."""


@dataclass
class QuantityContext:
    model: Transformer
    probe: ProbeBatch
    step: int
    seed: int
    load_model: Callable[[int], Transformer]  # raises MeasureError when it cannot
    resolve_step: Callable[[p.StepRef], int]
    next_step: Callable[[int], int | None]
    other_probe: Callable[[str], ProbeBatch]
    bases: dict[str, Basis] = field(default_factory=dict)
    # (step, name) -> activation `name` of checkpoint `step`'s clean pass on this probe (a
    # patch's source); the engine passes one that keeps them from checkpoint to checkpoint.
    step_activation: Callable[[int, str], torch.Tensor] | None = None
    max_rows: int = batched.DEFAULT_MAX_ROWS  # sequences per stacked chunk of edited passes
    # False: one full hooked forward pass per intervened quantity and one gradient computation
    # per gradient quantity, with nothing shared: the plain path the shared one must equal.
    shared: bool = True
    _run: CleanRun | None = field(default=None, init=False)
    _answers: CleanRun | None = field(default=None, init=False)
    # Whether a quantity measured here reads the full clean pass's cache; `prefetch` clears it
    # when none of the quantities it is given does.
    _needs_cache: bool = field(default=True, init=False)
    # Whether an `alignment` is measured here: the answers-only pass then keeps its graph, and
    # the loss gradient is taken from it (`descent`) instead of from a pass of its own.
    _wants_descent: bool = field(default=False, init=False)
    _graph_logits: torch.Tensor | None = field(default=None, init=False)
    _descent: torch.Tensor | None = field(default=None, init=False)
    _edited: dict[str, CleanRun | Exception] = field(default_factory=dict, init=False)
    _gradients: dict[str, torch.Tensor] = field(default_factory=dict, init=False)
    _fault: str | None = field(default=None, init=False)
    _checked: CleanRun | None = field(default=None, init=False)

    def clean_fault(self) -> str | None:
        """The first non-finite activation of the clean pass, or None: checked once per pass
        (the answers-only pass, then the full one if it runs too)."""
        run = self.answers  # the pass in use: the full one when it runs
        if self._checked is not run:
            self._fault, self._checked = non_finite_site(run), run
        return self._fault

    def expect(self, q: p.QuantityExpr) -> None:
        """Note that `q` is to be measured here: one that reads the cache needs the full pass."""
        self._needs_cache |= reads_cache(q)

    @property
    def answers(self) -> CleanRun:
        """The clean pass's answer logits: from the full pass when it runs, else from the
        cheaper `batched.answer_pass` (the same logits up to float rounding)."""
        if self._run is not None or self._needs_cache:
            return self.run
        if self._answers is None:
            run = batched.answer_pass(
                self.model, self.probe, self.max_rows, keep_graph=self._wants_descent
            )
            if run.logits.requires_grad:
                self._graph_logits = run.logits
                run = CleanRun(run.logits.detach(), run.cache)
            self._answers = run
        return self._answers

    def descent(self) -> torch.Tensor:
        """−∇θ L̄, the loss's descent direction on this probe [n_params]: one backward pass,
        through the answers-only pass's graph when it kept one (the same pass that gave the
        logits and their finiteness check), else through a pass of its own."""
        if self._descent is None:
            logits = self._graph_logits
            if logits is None:
                logits = batched.answer_logits(self.model, self.probe, self.max_rows)
            self._graph_logits = None
            losses = behaviour.per_read(logits, self.probe.target)["loss"]
            self._descent = -gr.flat_grad(losses.mean(), self.model)
        return self._descent

    @property
    def run(self) -> CleanRun:
        if self._run is None:
            names = names_for(self.model, self.bases)
            names += [f"blocks.{i}.attn.hook_attn_scores" for i in range(self.model.cfg.n_layers)]
            names += [n for n in batched.restart_names(self.model) if n not in names]
            with torch.no_grad():
                self._run = clean_run(self.model, self.probe, names)
        return self._run

    def clean_activation(self, name: str) -> torch.Tensor:
        """An activation of the clean pass: from the shared cache when it holds it."""
        if name in self.run.cache:
            return self.run[name]
        with torch.no_grad():
            return clean_run(self.model, self.probe, [name]).cache[name]

    def activation_at(self, step: p.StepRef, name: str) -> torch.Tensor:
        """Activation `name` of another checkpoint's clean pass on this probe."""
        number = self.resolve_step(step)
        if self.step_activation is not None:
            return self.step_activation(number, name)
        with torch.no_grad():
            return clean_run(self.load_model(number), self.probe, [name])[name]

    def basis(self, name: str) -> Basis:
        if name not in self.bases:
            raise MeasureError(f"basis `{name}` is not loaded for this run")
        return self.bases[name]

    def prefetch(self, wanted: Sequence[p.QuantityExpr]) -> int:
        """Run the edited forward passes of all these quantities at once, stacked (see
        runner.measure.batched); `measure` then reads them. Returns how many passes ran."""
        if not self.shared:
            return 0
        self._needs_cache = any(reads_cache(q) for q in wanted)
        self._wants_descent = any(q.name == "alignment" for q in wanted)
        runs: dict[str, batched.EditedRun] = {}
        for q in wanted:
            if not q.interventions or q.name not in (*INTERVENED, LINEARISED_MARGIN):
                continue
            names = _site_names(self, q)
            key = _pass_key(q.interventions, names)
            if key in runs or key in self._edited:
                continue
            try:
                runs[key] = batched.EditedRun(key, tuple(_edits(self, q.interventions)), names)
            except (MeasureError, PathError, ValueError) as e:
                self._edited[key] = e  # raised again when the quantity is measured
        if runs and self.clean_fault() is None:
            self._edited.update(
                batched.run_many(self.model, self.probe, self.run, list(runs.values()),
                                 self.max_rows)
            )  # fmt: skip
        self._prefetch_gradients(wanted)
        return len(runs)

    def _prefetch_gradients(self, wanted: Sequence[p.QuantityExpr]) -> None:
        """All `alignment`s from one loss gradient and one stacked directional derivative; all
        `update_alignment`s of one scope likewise along Δθ. If a group fails as a whole, each
        of its quantities is measured (and reports its own error) alone."""
        groups: dict[str, dict[str, p.QuantityExpr]] = {}
        for q in wanted:
            if q.name == "alignment" or (q.name == "update_alignment" and not q.interventions):
                scope = "" if q.scope is None else q.scope.model_dump_json()
                groups.setdefault(f"{q.name}|{scope}", {})[p.quantity_key(q)] = q
        if self.clean_fault() is not None:
            return
        if self._graph_logits is not None:
            self.descent()  # frees the answers pass's graph before other quantities are measured
        for group in groups.values():
            keys = [k for k in group if k not in self._gradients]
            if len(keys) < 2:
                continue
            try:
                values = _gradient_values(self, [group[k] for k in keys])
            except (MeasureError, PathError, ValueError):
                continue
            self._gradients.update(zip(keys, values, strict=True))


def measure(ctx: QuantityContext, q: p.QuantityExpr) -> np.ndarray:
    """[read] float64 values of the quantity."""
    if q.interventions and q.name not in INTERVENED:
        raise MeasureError(f"interventions on `{q.name}` are not implemented yet")
    ctx.expect(q)
    bad = ctx.clean_fault()
    if bad is not None:
        raise MeasureError(
            f"the clean forward pass has NaN or Inf values at `{bad}` at step {ctx.step}: "
            "no quantity of this probe is trustworthy there"
        )
    try:
        values = _measure(ctx, q)
    except (PathError, ValueError) as e:  # ft.FeatureError is a ValueError
        raise MeasureError(str(e)) from None
    out = values.detach().cpu().to(torch.float64).numpy()
    if np.isinf(out).any():  # NaN marks an undefined read (an empty role); Inf is an overflow
        raise MeasureError(f"`{q.name}` is infinite at {int(np.isinf(out).sum())} read(s)")
    return out


def reads_cache(q: p.QuantityExpr) -> bool:
    """Whether a quantity reads the clean pass's cached activations, not only its logits
    (gradient quantities run their own passes)."""
    if q.interventions:
        return True
    return q.name not in (*BEHAVIOUR, LINEARISED_MARGIN, *GRADIENT_OWN_PASSES)


def _measure(ctx: QuantityContext, q: p.QuantityExpr) -> torch.Tensor:
    model, probe = ctx.model, ctx.probe
    if q.name in BEHAVIOUR or q.name == LINEARISED_MARGIN:
        run = _intervened(ctx, q.interventions) if q.interventions else ctx.answers
        if q.interventions and not bool(torch.isfinite(run.logits).all()):
            raise MeasureError(
                f"the intervened forward pass gives NaN or Inf logits at step {ctx.step}"
            )
        if q.name == LINEARISED_MARGIN:
            return linearised_margin(run.logits, probe.target)
        return run.behaviour(probe)[q.name]
    if q.name in ("attention", "qk_gap", "ov_copy"):
        head = q.component
        assert isinstance(head, p.HeadNode)
        if q.name == "ov_copy":
            return attention.ov_copy(model, probe, head.layer, head.head)
        roles = q.roles
        if q.name == "attention":
            return attention.attention_mass(
                ctx.run, probe, head.layer, head.head, roles["from"], roles["to"]
            )
        return attention.qk_gap(
            ctx.run, probe, head.layer, head.head, roles["from"], roles["to"], roles.get("contrast")
        )
    if q.name in FEATURE_SCORES:
        return _feature_score(ctx, q)
    paths = [x.nodes for x in q.paths]
    if q.name == "contribution":
        with torch.no_grad():
            return circuit_values(model, probe, ctx.run, paths, ctx.bases, ctx.seed)
    if q.name in ("alignment", "update_alignment") and not ctx.shared:
        return _gradient_value_alone(ctx, q)
    if q.name in ("alignment", "update_alignment"):
        key = p.quantity_key(q)
        if key not in ctx._gradients:
            (ctx._gradients[key],) = _gradient_values(ctx, [q])
        return ctx._gradients[key]
    if q.name == "gram":
        assert q.group is not None
        summary = pe.gram_summary(model, probe, pe.group_labels(probe, q.group))
        return summary["within"] - summary["between"]
    raise MeasureError(f"quantity `{q.name}` is not implemented yet")


def _gradient_values(ctx: QuantityContext, qs: Sequence[p.QuantityExpr]) -> list[torch.Tensor]:
    """Per-read values of `alignment`s, or of `update_alignment`s sharing one scope, stacked."""
    targets: list[gr.Paths | gr.Values] = [
        [x.nodes for x in q.paths] if q.target is None else _score_values(ctx, q.target) for q in qs
    ]
    if qs[0].name == "alignment":
        return gr.alignments(ctx.model, ctx.probe, targets, ctx.bases, ctx.descent())
    following = ctx.next_step(ctx.step)
    if following is None:
        raise MeasureError(f"step {ctx.step} is the last checkpoint: no update follows it")
    later = ctx.load_model(following)
    return gr.predicted_changes(ctx.model, later, ctx.probe, targets, ctx.bases, qs[0].scope)


def _gradient_value_alone(ctx: QuantityContext, q: p.QuantityExpr) -> torch.Tensor:
    target = [x.nodes for x in q.paths] if q.target is None else _score_values(ctx, q.target)
    if q.name == "alignment":
        return gr.alignments(ctx.model, ctx.probe, [target], ctx.bases)[0]
    following = ctx.next_step(ctx.step)
    if following is None:
        raise MeasureError(f"step {ctx.step} is the last checkpoint: no update follows it")
    later = ctx.load_model(following)
    (value,) = gr.predicted_changes(ctx.model, later, ctx.probe, [target], ctx.bases, q.scope)
    return value


def _features_of(q: p.QuantityExpr) -> p.FeatureNode:
    if not isinstance(q.features, p.FeatureNode):
        raise MeasureError(f"`{q.name}` needs features resolved before measuring")
    return q.features


def _feature_score(ctx: QuantityContext, q: p.QuantityExpr) -> torch.Tensor:
    node = _features_of(q)
    basis = ctx.basis(node.basis)
    run = ctx.run
    if q.interventions:
        run = _intervened(ctx, q.interventions, _site_names(ctx, q))
    score = ft.activation if q.name == "activation" else ft.active
    return score(run, ctx.probe, basis, node.ids)


def _score_values(ctx: QuantityContext, target: p.QuantityExpr) -> gr.SiteScore:
    """A differentiable feature score, for alignment(activation(F)): it reads its basis's site
    at the answers only."""
    node = _features_of(target)
    basis, probe = ctx.basis(node.basis), ctx.probe
    return gr.SiteScore(
        basis.info.site, lambda model, run: ft.activation(run, probe, basis, node.ids)
    )


def _basis_source(
    ctx: QuantityContext, node: p.FeatureNode, intervention: p.Intervention
) -> ft.Source:
    """f' for an ablation or patch of features in their basis."""
    basis, probe = ctx.basis(node.basis), ctx.probe
    site = basis.info.site
    if isinstance(intervention, p.Ablation):
        if intervention.method == "zero":
            return ft.zero_source()
        clean = ft.reference_features(basis, ctx.clean_activation(site), node.ids)
        if intervention.method == "mean":
            return ft.fixed_source(iv.mean_source(clean, probe.token_mask(), probe.n_pos))
        return ft.fixed_source(iv.resample_source(clean, ctx.seed))
    if intervention.from_probe is not None:
        other = ctx.other_probe(intervention.from_probe)
        source = clean_run(ctx.model, other, [site])[site]
        what = f"probe `{intervention.from_probe}`"
        source = iv.patch_source(source, probe.n_seq, probe.n_pos, what)
        return ft.fixed_source(ft.reference_features(basis, source, node.ids))
    assert intervention.from_step is not None
    source = ctx.activation_at(intervention.from_step, site)
    return ft.fixed_source(ft.reference_features(basis, source, node.ids))


def _source(ctx: QuantityContext, site: iv.Site, intervention: p.Intervention) -> torch.Tensor:
    probe = ctx.probe
    if isinstance(intervention, p.Ablation):
        if intervention.method == "zero":
            return torch.zeros(1)
        clean = ctx.clean_activation(site.hook)
        if intervention.method == "mean":
            return iv.mean_source(clean, probe.token_mask(), probe.n_pos)
        return iv.resample_source(clean, ctx.seed)
    if intervention.from_probe is not None:
        other = ctx.other_probe(intervention.from_probe)
        source = clean_run(ctx.model, other, [site.hook])[site.hook]
        what = f"probe `{intervention.from_probe}`"
        return iv.patch_source(source, probe.n_seq, probe.n_pos, what)
    assert intervention.from_step is not None
    return ctx.activation_at(intervention.from_step, site.hook)


def _site_names(ctx: QuantityContext, q: p.QuantityExpr) -> tuple[str, ...]:
    """Activations an intervened quantity reads besides the logits: a feature score's site."""
    if q.name in FEATURE_SCORES:
        return (ctx.basis(_features_of(q).basis).info.site,)
    return ()


def _pass_key(interventions: tuple[p.Intervention, ...], names: tuple[str, ...]) -> str:
    return "|".join([*(i.model_dump_json() for i in interventions), *names])


def _edits(ctx: QuantityContext, interventions: tuple[p.Intervention, ...]) -> list[iv.Edit]:
    edits = []
    with torch.no_grad():
        for intervention in interventions:
            target = intervention.target
            if isinstance(target, p.FeatureNode):
                basis = ctx.basis(target.basis)
                source = _basis_source(ctx, target, intervention)
                edits.append(ft.basis_edit(basis, target.ids, source))
                continue
            if isinstance(target, p.SelectionNode | p.ErrorNode):
                raise MeasureError(f"cannot intervene on `{target.kind}` here")
            if isinstance(target, p.HeadQKNode):
                if not (isinstance(intervention, p.Ablation) and intervention.method == "zero"):
                    raise MeasureError("a QK-restricted head can only be zero-ablated")
                edits.append(iv.qk_zero_edit(ctx.probe, target))
                continue
            site = iv.site_of(target)
            edits.append(iv.replace_edit(site, _source(ctx, site, intervention), ctx.probe))
    return edits


def _intervened(
    ctx: QuantityContext, interventions: tuple[p.Intervention, ...], names: tuple[str, ...] = ()
) -> CleanRun:
    """The edited pass: prefetched with the others at this checkpoint, or run alone now."""
    if not ctx.shared:
        return iv.run_edited(ctx.model, ctx.probe, _edits(ctx, interventions), names)
    key = _pass_key(interventions, names)
    if key not in ctx._edited:
        ctx._edited[key] = batched.run_many(
            ctx.model, ctx.probe, ctx.run,
            [batched.EditedRun(key, tuple(_edits(ctx, interventions)), names)], ctx.max_rows,
        )[key]  # fmt: skip
    found = ctx._edited[key]
    if isinstance(found, Exception):
        raise found
    return found
