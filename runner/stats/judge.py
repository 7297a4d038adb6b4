"""From per-read measurements to tested predictions: plug-in statistics, windows and births.

Every quantity is a mean over a probe's reads (`share` a ratio of two means); an expression is
evaluated on those means, elementwise over the bootstrap vector (see `runner.stats.bootstrap`).
Reads where a quantity of the prediction is undefined (NaN: an empty role set) are left out on
that probe.

A prediction becomes a `Judged`: the evidence for its result and the `bootstrap.Test` that decides
its verdict once the study's p-values are corrected together, or a reason it cannot be judged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from hypodsl import plan as p
from hypodsl.plan_view import expr_text
from runner.stats import bootstrap
from runner.stats.results import BirthEstimate, Interval, SeriesPoint, Trajectory

Expr = p.QuantityExpr | p.NumberExpr | p.SumExpr | p.BinaryExpr | p.UnaryExpr
OPS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
}  # fmt: skip
MIN_TREND_POINTS = 3


class NotEvaluable(Exception):
    """A prediction that cannot be judged; the message says why."""


def columns(q: p.QuantityExpr) -> list[p.QuantityExpr]:
    """The per-read values a quantity is computed from: `share` is Σ contribution / Σ m_lin."""
    if q.name == "share":
        return [
            q.model_copy(update={"name": "contribution"}),
            p.QuantityExpr(name="linearised_margin", interventions=q.interventions),
        ]
    return [q]


def quantities_of(expr: Expr) -> list[p.QuantityExpr]:
    if isinstance(expr, p.QuantityExpr):
        return [expr]
    if isinstance(expr, p.SumExpr):
        return [q for term in expr.terms for q in quantities_of(term)]
    if isinstance(expr, p.BinaryExpr):
        return quantities_of(expr.left) + quantities_of(expr.right)
    if isinstance(expr, p.UnaryExpr):
        return quantities_of(expr.operand)
    return []


def condition_text(c: p.Condition) -> str:
    """`left op right` as written (the probe left out)."""
    return f"{expr_text(c.left)} {c.op} {expr_text(c.right)}"


def equivalence_bound(left: Expr, op: str, right: Expr) -> tuple[Expr, float] | None:
    """`|x| < c` (or `c > |x|`) with a positive constant c: (x, c) for two one-sided tests."""
    if op in (">", ">="):
        left, right, op = right, left, "<"
    if (
        isinstance(left, p.UnaryExpr)
        and left.op == "abs"
        and isinstance(right, p.NumberExpr)
        and right.value > 0
    ):
        return left.operand, right.value
    return None


@dataclass
class Measured:
    """Everything measured for a study on one run."""

    values: dict[tuple[int, str, str], np.ndarray]  # (step, probe, quantity key) -> [read]
    errors: dict[tuple[int, str, str], str]
    failures: dict[int, str]  # step -> why its checkpoint could not be used
    clusters: dict[str, np.ndarray]  # probe -> each read's sequence index
    resamplers: dict[str, bootstrap.Resampler]
    steps: list[int]  # every checkpoint of the run, ascending


@dataclass(frozen=True)
class Sides:
    """Plug-in vectors of a prediction's two sides at a checkpoint (or averaged over a window);
    `inner` is x of an equivalence `|x| < c`, else None."""

    left: np.ndarray
    right: np.ndarray
    inner: np.ndarray | None


@dataclass
class Judged:
    """A prediction's evidence; `test` is None when it could not be judged (`reason` says why)."""

    fields: dict[str, object] = field(default_factory=dict)
    test: bootstrap.Test | None = None
    reason: str = ""


def finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def interval_of(v: np.ndarray, confidence: float) -> Interval | None:
    ci = bootstrap.percentile_interval(v, confidence)
    if not (math.isfinite(ci.low) and math.isfinite(ci.high)):
        return None
    return Interval(low=ci.low, high=ci.high)


FIGURE_GRID = 6  # checkpoints spread over the run at which every figure draws its prediction
GRADIENT_QUANTITIES = ("alignment", "update_alignment", "gram")  # a backward pass per point


def spread(steps: list[int], n: int) -> list[int]:
    """n of the steps, evenly spread, the first and the last included."""
    if len(steps) <= n:
        return list(steps)
    return sorted({steps[round(i * (len(steps) - 1) / (n - 1))] for i in range(n)})


# Read off the logits alone: the study's answers-only pass gives them too (see `Judge.reads`).
LOGIT_QUANTITIES = ("accuracy", "loss", "margin", "linearised_margin")


def off_the_logits(q: p.QuantityExpr) -> bool:
    """Whether a quantity is read off a clean pass's logits alone."""
    return not q.interventions and q.name in LOGIT_QUANTITIES


def off_the_clean_pass(q: p.QuantityExpr) -> bool:
    """Whether a quantity is read off a probe's clean pass: no edited pass, no gradient, and no
    path that needs the rest of the model run again (one ending before the unembedding)."""
    if q.interventions or q.name in GRADIENT_QUANTITIES:
        return False
    return all(isinstance(x.nodes[-1], p.UnembedNode | p.FeatureNode) for x in q.paths)


class Judge:
    def __init__(
        self,
        plan: p.Plan,
        measured: Measured,
        resolve: Callable[[p.StepRef], int],
        seed: int = 0,
    ):
        self.plan, self.m, self.resolve, self.seed = plan, measured, resolve, seed
        self.confidence = plan.confidence

    # --- what a prediction reads ---------------------------------------------------------

    def window_steps(self, name: str) -> list[int]:
        """The checkpoints a window may cover (a birth window: all, until its birth is known)."""
        window = next(w for w in self.plan.windows if w.name == name)
        if isinstance(window, p.BirthWindow):
            return list(self.m.steps)
        lo = -math.inf if window.start is None else window.start
        hi = math.inf if window.end is None else window.end
        return [s for s in self.m.steps if lo <= s <= hi]

    def reads(
        self,
        pred: p.TimedPrediction | p.BirthOrder,
        visited: Mapping[tuple[int, str], bool] | None = None,
    ) -> Iterator[tuple[int, str, p.QuantityExpr]]:
        """(step, probe, quantity) of every column the prediction's test needs; with `visited`
        (the (step, probe) pairs the study's tests read, each True where some test there reads
        more than the logits), also what its figure draws.

        A figure adds no forward pass of its own but on a grid: it draws the prediction at the
        checkpoints its test reads, at `FIGURE_GRID` checkpoints spread over the run (not `gram`,
        a backward pass per read: only where tested), and, for quantities read off the clean
        pass, at every checkpoint where the study runs a pass that gives them anyway: the full
        clean pass, which caches every activation, where some test reads more than the logits;
        elsewhere only the answers-only pass, which gives the logits alone.
        """
        grid = set(spread(self.m.steps, FIGURE_GRID)) if visited is not None else set()
        for steps, probe, exprs in self._parts(pred):
            tested = set(steps)
            for expr in exprs:
                for q in quantities_of(expr):
                    on = q.probe or probe
                    free = visited is not None and off_the_clean_pass(q)
                    logits = all(off_the_logits(col) for col in columns(q))
                    on_grid = grid if q.name != "gram" else set()  # a backward pass per read
                    # a test may name a step the run lacks: reading it reports the gap
                    for step in sorted(tested | set(self.m.steps)):
                        full = (visited or {}).get((step, on))
                        drawn = step in on_grid or (free and full is not None and (full or logits))
                        if step in tested or drawn:
                            for col in columns(q):
                                yield step, on, col

    def _parts(self, pred: p.TimedPrediction | p.BirthOrder) -> list[tuple[list[int], str, list]]:
        if isinstance(pred, p.BirthOrder):
            every = list(self.m.steps)
            return [(every, c.probe, [c.left, c.right]) for c in (pred.left, pred.right)]
        if isinstance(pred.when, p.At):
            return [([self.resolve(pred.when.step)], pred.probe, [pred.left, pred.right])]
        parts = [(self.window_steps(pred.when.window), pred.probe, [pred.left, pred.right])]
        window = next(w for w in self.plan.windows if w.name == pred.when.window)
        if isinstance(window, p.BirthWindow):
            c = window.condition
            parts.append((list(self.m.steps), c.probe, [c.left, c.right]))
        return parts

    # --- plug-in statistics --------------------------------------------------------------

    def _keep(self, step: int, probe: str, exprs: list[Expr]) -> dict[str, np.ndarray]:
        """Per probe, the reads where every quantity of `exprs` has a value at `step`."""
        if step in self.m.failures:
            raise NotEvaluable(f"checkpoint at step {step}: {self.m.failures[step]}")
        keep: dict[str, np.ndarray] = {}
        for expr in exprs:
            for q in quantities_of(expr):
                on = q.probe or probe
                for col in columns(q):
                    k = (step, on, p.quantity_key(col))
                    if k in self.m.errors:
                        raise NotEvaluable(f"`{q.name}` at step {step}: {self.m.errors[k]}")
                    ok = np.isfinite(self.m.values[k])
                    keep[on] = keep[on] & ok if on in keep else ok
        for on, mask in keep.items():
            if not mask.any():
                raise NotEvaluable(f"no read of probe `{on}` has a value at step {step}")
            n_sequences = len(np.unique(self.m.clusters[on][mask]))
            if n_sequences < bootstrap.MIN_SEQUENCES:
                raise NotEvaluable(
                    f"probe `{on}` has {n_sequences} sequence(s) with a value at step {step}; "
                    f"a bootstrap interval needs at least {bootstrap.MIN_SEQUENCES}"
                )
        return keep

    def sample(self, expr: Expr, step: int, probe: str, keep: dict[str, np.ndarray]) -> np.ndarray:
        """[1 + n_resamples] plug-in value of an expression at a checkpoint."""
        if isinstance(expr, p.NumberExpr):
            return np.full(bootstrap.N_RESAMPLES + 1, expr.value)
        if isinstance(expr, p.QuantityExpr):
            on = expr.probe or probe
            resampler, clusters = self.m.resamplers[on], self.m.clusters[on]
            means = [
                resampler.mean(self.m.values[(step, on, p.quantity_key(c))], clusters, keep[on])
                for c in columns(expr)
            ]
            if expr.name == "share":
                with np.errstate(divide="ignore", invalid="ignore"):
                    return means[0] / means[1]
            return means[0]
        if isinstance(expr, p.UnaryExpr):
            v = self.sample(expr.operand, step, probe, keep)
            return -v if expr.op == "neg" else np.abs(v)
        if isinstance(expr, p.SumExpr):
            total = self.sample(expr.terms[0], step, probe, keep)
            for op, term in zip(expr.ops, expr.terms[1:], strict=True):
                v = self.sample(term, step, probe, keep)
                total = total + v if op == "+" else total - v
            return total
        a = self.sample(expr.left, step, probe, keep)
        b = self.sample(expr.right, step, probe, keep)
        if expr.op == "/" and b[0] == 0:
            raise NotEvaluable(f"division by zero: `{expr_text(expr.right)}` is 0 at step {step}")
        ops = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}
        # an overflow or a division by a resample's zero is named later, in the verdict's reason
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return ops[expr.op](a, b)

    def sides(self, left: Expr, right: Expr, step: int, probe: str):
        keep = self._keep(step, probe, [left, right])
        return self.sample(left, step, probe, keep), self.sample(right, step, probe, keep), keep

    def series_point(self, step: int, left: np.ndarray, right: np.ndarray) -> SeriesPoint:
        diff = left - right
        return SeriesPoint(
            step=step,
            estimate=finite(left[0]),
            interval=interval_of(left, self.confidence),
            threshold=finite(right[0]),
            difference=finite(diff[0]),
            difference_interval=interval_of(diff, self.confidence),
        )

    def trajectories(self, pred: p.TimedPrediction | p.BirthOrder) -> tuple[Trajectory, ...]:
        """The prediction's sides at every checkpoint that has them: context for its figure,
        never part of its test (a checkpoint that cannot be read is simply left out)."""
        if isinstance(pred, p.BirthOrder):
            conditions = [pred.left, pred.right]
        else:
            conditions = [p.Condition(left=pred.left, op=pred.op, right=pred.right,
                                      probe=pred.probe)]  # fmt: skip
        return tuple(
            Trajectory(label=condition_text(c), points=self._points(c.left, c.right, c.probe))
            for c in conditions
        )

    def _points(self, left: Expr, right: Expr, probe: str) -> tuple[SeriesPoint, ...]:
        points = []
        for step in self.m.steps:
            try:
                a, b, _ = self.sides(left, right, step, probe)
            except (NotEvaluable, KeyError):  # KeyError: not measured at this step
                continue
            points.append(self.series_point(step, a, b))
        return tuple(points)

    # --- births ----------------------------------------------------------------------------

    def birth(self, condition: p.Condition) -> np.ndarray:
        """[1 + n_resamples] birth step of a condition over every checkpoint (+inf: never)."""
        holds = []
        for step in self.m.steps:
            left, right, _ = self.sides(condition.left, condition.right, step, condition.probe)
            holds.append(OPS[condition.op](left, right))  # NaN compares False
        steps = np.asarray(self.m.steps, dtype=np.float64)
        rows = np.stack(holds, axis=1)
        if condition.rule == "first":
            return bootstrap.first_crossings(steps, rows)
        return bootstrap.births(steps, rows)

    def birth_estimate(self, condition: p.Condition, born: np.ndarray) -> BirthEstimate:
        ci = bootstrap.order_interval(born, self.confidence)
        return BirthEstimate(
            condition=condition_text(condition),
            step=int(born[0]) if math.isfinite(born[0]) else None,
            interval_low=finite(ci.low),
            interval_high=finite(ci.high),
        )

    # --- predictions -----------------------------------------------------------------------

    def judge(self, pred: p.TimedPrediction | p.BirthOrder) -> Judged:
        try:
            if isinstance(pred, p.BirthOrder):
                return self._birth_order(pred)
            if isinstance(pred.when, p.At):
                return self._at(pred, self.resolve(pred.when.step))
            return self._over(pred, pred.when)
        except NotEvaluable as e:
            return Judged(reason=f"not evaluable: {e}")

    def _sides_at(self, pred: p.TimedPrediction, step: int) -> Sides:
        left, right, keep = self.sides(pred.left, pred.right, step, pred.probe)
        for side, values, expr in (("left", left, pred.left), ("right", right, pred.right)):
            if not math.isfinite(values[0]):
                raise NotEvaluable(
                    f"the {side} side `{expr_text(expr)}` is {values[0]} at step {step} "
                    "(an overflow, or a ratio whose denominator is 0)"
                )
        equiv = equivalence_bound(pred.left, pred.op, pred.right)
        inner = None if equiv is None else self.sample(equiv[0], step, pred.probe, keep)
        return Sides(left, right, inner)

    def _test(self, pred: p.TimedPrediction, sides: Sides) -> bootstrap.Test:
        n_clusters = self.m.resamplers[pred.probe].n_clusters
        equiv = equivalence_bound(pred.left, pred.op, pred.right)
        if equiv is not None:
            assert sides.inner is not None
            return bootstrap.equivalence(sides.inner, equiv[1], self.confidence, n_clusters)
        return bootstrap.compare(sides.left - sides.right, pred.op, self.confidence, n_clusters)

    def _reads(self, step: int, probe: str, exprs: list[Expr]) -> dict[str, object]:
        keep = self._keep(step, probe, exprs)
        mask = keep.get(probe, next(iter(keep.values()), None))
        if mask is None:
            return {}
        on = probe if probe in keep else next(iter(keep))
        clusters = self.m.clusters[on][mask]
        return {"n": int(mask.sum()), "n_sequences": len(np.unique(clusters))}

    def _sides_fields(self, left: np.ndarray, right: np.ndarray) -> dict[str, object]:
        fields: dict[str, object] = {
            "estimate": finite(left[0]),
            "interval": interval_of(left, self.confidence),
            "threshold": finite(right[0]),
        }
        boot_right = right[np.isfinite(right)]
        if len(boot_right) and (np.all(boot_right > 0) or np.all(boot_right < 0)):
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = left / right
            fields["ratio"] = finite(ratio[0])
            fields["ratio_interval"] = interval_of(ratio, self.confidence)
        return fields

    def _test_fields(self, test: bootstrap.Test) -> dict[str, object]:
        ok = math.isfinite(test.interval.low) and math.isfinite(test.interval.high)
        return {
            "test": test.name,
            "statistic": test.statistic,
            "statistic_value": finite(test.estimate),
            "statistic_interval": Interval(low=test.interval.low, high=test.interval.high)
            if ok
            else None,
            "p_value": test.p_value,
            "effect_size": None if test.effect_size is None else finite(test.effect_size),
        }

    def _at(self, pred: p.TimedPrediction, step: int) -> Judged:
        sides = self._sides_at(pred, step)
        test, left, right = self._test(pred, sides), sides.left, sides.right
        fields = {
            "step": step,
            "steps": (step,),
            **self._sides_fields(left, right),
            **self._test_fields(test),
            **self._reads(step, pred.probe, [pred.left, pred.right]),
            "series": (self.series_point(step, left, right),),
        }
        return Judged(fields=fields, test=test)

    def _over(self, pred: p.TimedPrediction, when: p.Over) -> Judged:
        window = next(w for w in self.plan.windows if w.name == when.window)
        steps = self.window_steps(when.window)
        extra: dict[str, object] = {}
        if isinstance(window, p.BirthWindow):
            born = self.birth(window.condition)
            extra["births"] = (self.birth_estimate(window.condition, born),)
            at = born[0]
            if window.relation == "before":
                steps = [s for s in steps if s < at]
            else:
                steps = [s for s in steps if s >= at]
        if not steps:
            raise NotEvaluable(f"window `{when.window}` holds no checkpoint of this run")
        sides = [self._sides_at(pred, s) for s in steps]
        series = tuple(
            self.series_point(s, x.left, x.right) for s, x in zip(steps, sides, strict=True)
        )
        equiv = equivalence_bound(pred.left, pred.op, pred.right)
        if when.aggregate == "all":
            tests = [self._test(pred, x) for x in sides]
            if equiv is not None:
                test = bootstrap.every(tests, worst=lambda t: -abs(t.estimate))
            else:
                sign = 1.0 if pred.op in (">", ">=") else -1.0
                test = bootstrap.every(tests, worst=lambda t: sign * t.estimate)
            worst = min(sides, key=lambda x: _worst_key(x, pred.op))
            left, right = worst.left, worst.right
        elif when.aggregate == "mean":
            left = np.mean([x.left for x in sides], axis=0)
            right = np.mean([x.right for x in sides], axis=0)
            inners = [x.inner for x in sides if x.inner is not None]
            inner = np.mean(inners, axis=0) if inners else None
            test = self._test(pred, Sides(left, right, inner))
            test = dataclasses.replace(test, name=f"mean {test.name}")
        else:
            if len(steps) < MIN_TREND_POINTS:
                raise NotEvaluable(
                    f"a trend needs at least {MIN_TREND_POINTS} checkpoints; "
                    f"window `{when.window}` holds {len(steps)}"
                )
            diffs = np.stack([x.left - x.right for x in sides], axis=1)
            seed = [self.seed, len(steps)]
            test = bootstrap.trend(np.asarray(steps, float), diffs, pred.op, self.confidence, seed)
            left = np.mean([x.left for x in sides], axis=0)
            right = np.mean([x.right for x in sides], axis=0)
        fields = {
            "steps": tuple(steps),
            **self._sides_fields(left, right),
            **self._test_fields(test),
            **self._reads(steps[0], pred.probe, [pred.left, pred.right]),
            "series": series,
            **extra,
        }
        return Judged(fields=fields, test=test)

    def _never_born(self, left: float, right: float) -> str:
        """The birth order's plug-in births in words, when a side is never born."""

        def when(step: float) -> str:
            return f"at step {int(step)}" if math.isfinite(step) else "never"

        return (
            f"the left condition is born {when(left)}, the right {when(right)} (not by the last "
            f"checkpoint, step {self.m.steps[-1]}; a condition never born counts as born after "
            "every step)"
        )

    def _birth_order(self, pred: p.BirthOrder) -> Judged:
        left, right = self.birth(pred.left), self.birth(pred.right)
        if not (math.isfinite(left[0]) or math.isfinite(right[0])):
            raise NotEvaluable("neither condition is born by the last checkpoint")
        test = bootstrap.birth_order(left, right, pred.relation, self.confidence)
        if not (math.isfinite(left[0]) and math.isfinite(right[0])):
            test = dataclasses.replace(test, described=self._never_born(left[0], right[0]))
        fields = {
            "steps": tuple(self.m.steps),
            **self._test_fields(test),
            "estimate": finite(left[0]),
            "threshold": finite(right[0]),
            **self._reads(self.m.steps[0], pred.left.probe, [pred.left.left, pred.left.right]),
            "births": (
                self.birth_estimate(pred.left, left),
                self.birth_estimate(pred.right, right),
            ),
        }
        return Judged(fields=fields, test=test)


def _worst_key(sides: Sides, op: str) -> float:
    """Smallest at the checkpoint where the prediction is furthest from holding."""
    d = float(sides.left[0] - sides.right[0])
    return d if op in (">", ">=") else -d
