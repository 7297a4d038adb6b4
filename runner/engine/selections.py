"""Selections: the neurons or features a `select` chooses on its discovery probe.

- Neurons of `Ll.mlp` by `drive(F)`: over each pair of consecutive checkpoints (t, t') in the
  window, drive_n = ∇θn S(θ_t) · (θ_t' − θ_t)_n, where S is F's activation averaged over the
  probe's reads and θn neuron n's slice of the MLP (row n of c_fc's weight and bias, column n of
  c_proj's weight); the drives of the pairs are summed (the draft's coalition map). One backward
  pass per (pair, F, probe), for every layer the plan's selections choose from with F there;
  the per-neuron sums come from the gradients by a segment sum. The drives
  of all neurons plus that of c_proj's bias are the drive of the whole MLP.
- Features of a basis (or a family's members) by `activation`, `active` or `contribution`:
  each feature's mean over the reads, averaged over the window's checkpoints.
- Heads of a layer, or of every layer, by `attention`, `qk_gap` or `ov_copy` with their roles:
  each head's mean over the reads (reads where the quantity is undefined left out), averaged
  over the window's checkpoints. A heads selection is a role: `top 1` binds one head per run,
  recorded as its index layer · n_heads + head, and the plan's `SelectionNode` becomes that
  `HeadNode`.

`where` keeps the units meeting every criterion; `top K by Q` the K largest (ties by id). The
choice is recorded in the results, and the plan is rewritten with the chosen ids before any
claim is measured. Values are cached like measurements (keyed by the checkpoints' hashes).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hypodsl import plan as p
from runner.engine.cache import MeasurementCache, entry_key
from runner.features.basis import Basis
from runner.kv import dataset
from runner.measure import attention, batched
from runner.measure import features as ft
from runner.measure.probe import ProbeBatch, clean_run
from runner.model import checkpoints
from runner.model.transformer import Transformer
from runner.stats.results import SelectionResult

ScoreFn = Callable[[Transformer], torch.Tensor]  # model -> [read] differentiable score


class SelectionError(Exception):
    """A selection that cannot be computed; the message says why."""


@dataclass(frozen=True)
class SelectionContext:
    run_dir: Any
    config: Any
    steps: list[int]  # the run's checkpoints
    hashes: Mapping[int, str]  # step -> verified SHA-256 (absent: unreadable)
    probes: Mapping[str, dataset.Split]
    probe_hashes: Mapping[str, str]
    bases: Mapping[str, Basis]
    cache: MeasurementCache
    seed: int
    device: str
    threads: int


def unit_text(sel: p.Selection) -> str:
    if sel.unit == "heads":
        return "heads" if sel.layer is None else f"heads of L{sel.layer}"
    return f"neurons of L{sel.layer}.mlp" if sel.unit == "neurons" else f"features of {sel.basis}"


def head_name(index: int, n_heads: int) -> str:
    """`L1.H2` for a heads selection's member index (layer · n_heads + head)."""
    return f"L{index // n_heads}.H{index % n_heads}"


def every_head(n_layers: int, n_heads: int) -> list[tuple[int, int]]:
    """(layer, head) of every head of a model, in index order (layer · n_heads + head)."""
    return [(layer, head) for layer in range(n_layers) for head in range(n_heads)]


def head_values(
    model: Transformer, probe: ProbeBatch, heads: Sequence[tuple[int, int]], c: p.Criterion
) -> np.ndarray:
    """[head] each head's mean of a head quantity over the probe's reads (NaN reads left out)."""
    if c.quantity == "ov_copy":
        per_read = [attention.ov_copy(model, probe, layer, head) for layer, head in heads]
    else:
        hook = "hook_pattern" if c.quantity == "attention" else "hook_attn_scores"
        layers = sorted({layer for layer, _ in heads})
        with torch.no_grad():
            run = clean_run(model, probe, [f"blocks.{layer}.attn.{hook}" for layer in layers])
        frm, to = c.roles["from"], c.roles["to"]
        if c.quantity == "attention":
            per_read = [
                attention.attention_mass(run, probe, layer, head, frm, to) for layer, head in heads
            ]
        else:
            contrast = c.roles.get("contrast")
            per_read = [
                attention.qk_gap(run, probe, layer, head, frm, to, contrast)
                for layer, head in heads
            ]
    values = torch.stack(per_read).double().cpu()
    return torch.nanmean(values, dim=1).numpy()


def window_steps(sel: p.Selection, steps: list[int]) -> list[int]:
    w = sel.window
    return [s for s in steps if (w.start is None or s >= w.start) and (w.end is None or s <= w.end)]


def neuron_drives(
    model: Transformer, later: Transformer, probe: ProbeBatch, layer: int, score: ScoreFn
) -> np.ndarray:
    """[d_ff] ∇θn S · Δθn for every neuron of `layer`, S the mean score over the reads."""
    return layer_drives(model, later, probe, (layer,), score)[layer]


def layer_drives(
    model: Transformer,
    later: Transformer,
    probe: ProbeBatch,
    layers: Sequence[int],
    score: ScoreFn,
) -> dict[int, np.ndarray]:
    """`neuron_drives` of several layers from one backward pass (each layer's values equal
    those of its own pass: autograd runs the same steps for its parameters)."""
    params = []
    for layer in layers:
        mlp = model.block(layer).mlp
        params += [mlp.c_fc.weight, mlp.c_fc.bias, mlp.c_proj.weight]
    grads = torch.autograd.grad(score(model).mean(), params, allow_unused=True)
    out = {}
    for i, layer in enumerate(layers):
        after = later.block(layer).mlp
        mine = params[3 * i : 3 * i + 3]
        g_w, g_b, g_out = [
            torch.zeros_like(w) if g is None else g
            for g, w in zip(grads[3 * i : 3 * i + 3], mine, strict=True)
        ]
        d_w, d_b, d_out = [
            a.detach() - b.detach()
            for a, b in zip([after.c_fc.weight, after.c_fc.bias, after.c_proj.weight], mine,
                            strict=True)
        ]  # fmt: skip
        drive = (g_w * d_w).sum(dim=1) + g_b * d_b + (g_out * d_out).sum(dim=0)
        out[layer] = drive.detach().to(torch.float64).cpu().numpy()
    return out


def score_fn(probe: ProbeBatch, basis: Basis, ids: tuple[int, ...]) -> ScoreFn:
    site = basis.info.site

    def score(model: Transformer) -> torch.Tensor:
        run = clean_run(model, probe, [site], detach=False)
        return ft.activation(run, probe, basis, ids)

    return score


def feature_means(model: Transformer, probe: ProbeBatch, basis: Basis, quantity: str) -> np.ndarray:
    """[d_sae] each feature's mean activation, active fraction or contribution over the reads."""
    site = basis.info.site
    names = [site]
    if quantity == "contribution":
        names += ["ln_final.hook_scale"]
    # Every score here reads the site, the final norm's scale and the logits at the answers
    # only: the answers-only pass gives them, equal to the full pass's up to float rounding.
    queries = not site.startswith(f"blocks.{model.cfg.n_layers - 1}.attn.")
    with torch.no_grad():
        run = batched.answer_run(model, probe, names, queries=queries)
        f = ft.encode(basis, ft.site_vectors(run, probe, basis))
        if quantity == "activation":
            out = f.mean(dim=0)
        elif quantity == "active":
            out = (f > 0).to(torch.float32).mean(dim=0)
        else:
            u = ft.site_readout(model, run, probe, basis.info.site)
            out = (f * (basis.sae.W_dec @ u.T).T).mean(dim=0)
    return out.to(torch.float64).cpu().numpy()


class Selector:
    """Computes every selection of a plan on one run. Given the plan's selections, the neuron
    drives of one criterion on one probe are computed for all the layers they choose from in
    one backward pass per pair of checkpoints."""

    def __init__(self, ctx: SelectionContext, plan_selections: Sequence[p.Selection] = ()) -> None:
        self.ctx = ctx
        self._models: dict[int, Transformer] = {}
        self._bases: dict[str, Basis] = {}  # the plan's bases, on the study's device
        self._drive_layers: dict[tuple[str, str], set[int]] = {}
        for sel in plan_selections:
            if sel.unit == "neurons" and sel.layer is not None:
                for c in [*sel.criteria, *([sel.by] if sel.by is not None else [])]:
                    self._drive_layers.setdefault((self._key(c), sel.probe), set()).add(sel.layer)

    def model(self, step: int) -> Transformer:
        if step not in self.ctx.hashes:
            raise SelectionError(f"checkpoint {step} is unreadable")
        if step not in self._models:
            if len(self._models) > 2:
                self._models.clear()
            loaded = checkpoints.load_model(self.ctx.run_dir, step, self.ctx.config.model)
            self._models[step] = loaded.to(self.ctx.device)
        return self._models[step]

    def basis(self, name: str) -> Basis:
        if name not in self._bases:
            if name not in self.ctx.bases:
                raise SelectionError(f"basis `{name}` is not loaded")
            self._bases[name] = self.ctx.bases[name].to(self.ctx.device)
        return self._bases[name]

    def batch(self, probe: str) -> ProbeBatch:
        return ProbeBatch.from_split(self.ctx.probes[probe]).to(self.ctx.device)

    def select(self, sel: p.Selection) -> SelectionResult:
        steps = window_steps(sel, self.ctx.steps)
        result = SelectionResult(
            name=sel.name, unit=unit_text(sel), probe=sel.probe, steps=tuple(steps), members=()
        )
        try:
            chosen, values = self._choose(sel, steps)
        except (SelectionError, checkpoints.CheckpointError, ValueError) as e:
            return result.model_copy(update={"reason": str(e)})
        except RuntimeError as e:
            if self.ctx.device == "cpu":
                raise
            # As for measurements (step_worker): a device problem is reported, not a crash.
            return result.model_copy(update={"reason": f"failed on {self.ctx.device}: {e}"})
        reason = None if chosen else "no unit meets the criteria"
        kept = tuple(round(v, 12) for v in values)
        n_heads = self.ctx.config.model.n_heads
        labels = tuple(head_name(i, n_heads) for i in chosen) if sel.unit == "heads" else ()
        update = {"members": chosen, "values": kept, "reason": reason, "labels": labels}
        return result.model_copy(update=update)

    def _choose(self, sel: p.Selection, steps: list[int]) -> tuple[tuple[int, ...], list[float]]:
        needed = 2 if sel.unit == "neurons" else 1
        if len(steps) < needed:
            raise SelectionError(f"its window holds {len(steps)} checkpoint(s); it needs {needed}")
        criteria = [*sel.criteria, *([sel.by] if sel.by is not None else [])]
        table = {self._key(c): self._values(sel, c, steps) for c in criteria}
        n = len(next(iter(table.values())))
        keep = np.ones(n, dtype=bool)
        if sel.among is not None:
            keep[:] = False
            keep[[i for i in sel.among if i < n]] = True
        if sel.unit == "heads" and sel.layer is not None:  # values of every head: one layer's
            n_heads = self.ctx.config.model.n_heads
            keep[:] = False
            keep[sel.layer * n_heads : (sel.layer + 1) * n_heads] = True
        for c in sel.criteria:
            v = table[self._key(c)]
            keep &= {"<": v < c.value, "<=": v <= c.value, ">": v > c.value, ">=": v >= c.value}[
                c.op
            ]
        ranked = table[self._key(criteria[0])]
        ids = np.flatnonzero(keep)
        if sel.by is not None and sel.top is not None:
            order = sorted(ids, key=lambda i: (-ranked[i], i))
            ids = np.array(sorted(order[: sel.top]), dtype=np.int64)
        return tuple(int(i) for i in ids), [float(ranked[i]) for i in ids]

    @staticmethod
    def _key(c: p.Criterion) -> str:
        return c.model_dump_json(exclude={"op", "value"})

    def _values(self, sel: p.Selection, c: p.Criterion, steps: list[int]) -> np.ndarray:
        if sel.unit == "heads":
            return np.mean([self._cached_heads(c, s, sel) for s in steps], axis=0)
        if sel.unit == "neurons":
            assert sel.layer is not None and isinstance(c.features, p.FeatureNode)
            drives = [self._cached(c, pair, sel) for pair in itertools.pairwise(steps)]
            return np.sum(drives, axis=0)
        return np.mean([self._cached(c, (s,), sel) for s in steps], axis=0)

    def _cached(self, c: p.Criterion, steps: tuple[int, ...], sel: p.Selection) -> np.ndarray:
        ctx = self.ctx
        basis_name = c.features.basis if isinstance(c.features, p.FeatureNode) else sel.basis
        basis = self.basis(basis_name or "")
        for s in steps:
            if s not in ctx.hashes:
                raise SelectionError(f"checkpoint {s} is unreadable")
        key = self._entry(c, steps, sel, sel.layer, basis)
        width = ctx.config.model.d_ff if sel.unit == "neurons" else basis.info.d_sae
        hit = ctx.cache.get(key, width)
        if isinstance(hit, np.ndarray):
            return hit
        probe = self.batch(sel.probe)
        if sel.unit == "neurons":
            assert isinstance(c.features, p.FeatureNode) and sel.layer is not None
            layers = sorted(self._drive_layers.get((self._key(c), sel.probe), set()) | {sel.layer})
            score = score_fn(probe, basis, c.features.ids)
            drives = layer_drives(self.model(steps[0]), self.model(steps[1]), probe, layers, score)
            for layer, values in drives.items():
                self._check_finite(values, c, steps)
                ctx.cache.put(self._entry(c, steps, sel, layer, basis), values)
            return drives[sel.layer]
        values = feature_means(self.model(steps[0]), probe, basis, c.quantity)
        self._check_finite(values, c, steps)
        ctx.cache.put(key, values)
        return values

    def _cached_heads(self, c: p.Criterion, step: int, sel: p.Selection) -> np.ndarray:
        ctx = self.ctx
        if step not in ctx.hashes:
            raise SelectionError(f"checkpoint {step} is unreadable")
        model_config = ctx.config.model
        heads = every_head(model_config.n_layers, model_config.n_heads)
        key = entry_key(
            checkpoint=ctx.hashes[step], dependencies=[], probe=ctx.probe_hashes[sel.probe],
            patch_probes={},
            quantity=json.dumps({"select": "heads", "criterion": self._key(c)}),
            seed=ctx.seed, device=ctx.device, threads=ctx.threads,
        )  # fmt: skip
        hit = ctx.cache.get(key, len(heads))
        if isinstance(hit, np.ndarray):
            return hit
        values = head_values(self.model(step), self.batch(sel.probe), heads, c)
        self._check_finite(values, c, (step,))
        ctx.cache.put(key, values)
        return values

    def _entry(
        self, c: p.Criterion, steps: tuple[int, ...], sel: p.Selection, layer: int | None,
        basis: Basis,
    ) -> str:  # fmt: skip
        """The cache key of a criterion's values over `steps` (of neurons of `layer`)."""
        ctx = self.ctx
        # A feature criterion's values are every feature's of the basis, whichever family it
        # names (`among` picks from them later): two families of one basis share them.
        criterion = self._key(c) if sel.unit == "neurons" else c.quantity
        return entry_key(
            checkpoint=ctx.hashes[steps[0]],
            dependencies=[ctx.hashes[s] for s in steps[1:]] + [basis.info.weights_sha256],
            probe=ctx.probe_hashes[sel.probe],
            patch_probes={},
            quantity=json.dumps({"select": sel.unit, "layer": layer, "criterion": criterion}),
            seed=ctx.seed,
            device=ctx.device,
            threads=ctx.threads,
        )

    @staticmethod
    def _check_finite(values: np.ndarray, c: p.Criterion, steps: tuple[int, ...]) -> None:
        if not np.isfinite(values).all():
            raise SelectionError(f"`{c.quantity}` is not finite at step {steps[0]}")


def resolve(plan: p.Plan, chosen: Mapping[str, SelectionResult], n_heads: int) -> p.Plan:
    """The plan with every selection that chose units replaced by its ids (a role by its
    head)."""
    by_name = {s.name: s for s in plan.selections}

    def visit(x: Any) -> Any:
        if isinstance(x, dict):
            if x.get("kind") == "selection" and x.get("name") in chosen:
                result = chosen[x["name"]]
                sel = by_name[x["name"]]
                if sel.unit == "heads" and len(result.members) == 1:
                    (index,) = result.members
                    return {"kind": "head", "layer": index // n_heads, "head": index % n_heads}
                if result.members and sel.unit != "heads":
                    if sel.unit == "neurons":
                        return {
                            "kind": "neurons",
                            "layer": sel.layer,
                            "indices": list(result.members),
                        }
                    return {"kind": "features", "basis": sel.basis, "ids": list(result.members),
                            "label": sel.name}  # fmt: skip
            return {k: visit(v) for k, v in x.items()}
        if isinstance(x, list):
            return [visit(v) for v in x]
        return x

    data = plan.model_dump(mode="json")
    data["claims"] = visit(data["claims"])
    data["windows"] = visit(data["windows"])
    return p.Plan.model_validate(data)


def references(model: Any) -> set[str]:
    """`basis:NAME` and `selection:NAME` for every basis and selection a plan part reads."""
    found: set[str] = set()
    stack = [model.model_dump(mode="json") if hasattr(model, "model_dump") else model]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            if x.get("kind") in ("features", "sae_error"):
                found.add(f"basis:{x['basis']}")
            elif x.get("kind") == "selection":
                found.add(f"selection:{x['name']}")
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return found
