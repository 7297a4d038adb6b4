"""The engine: evaluate a compiled `Plan` against a run's checkpoints.

Every prediction needs per-read values of some quantities at one (checkpoint, probe). The engine
collects those requests (deduplicated), loads each checkpoint once, and measures them through
`runner.measure.quantities`, where one clean forward pass per (checkpoint, probe) serves every
quantity that needs it; then it hands per-read values to the paired bootstrap and the verdict
rules. Reads where a quantity is undefined (NaN: an empty role set) are left out of that
prediction. A checkpoint that is missing or corrupt makes the predictions
that need it Unsupported, with the reason, and never stops the others.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hypodsl import __version__
from hypodsl import plan as p
from runner import checkpoints, results, stats, verdicts
from runner.configs import TrainConfig
from runner.kv import dataset
from runner.kv.dataset import Split
from runner.measure import quantities
from runner.measure.probe import ProbeBatch
from runner.model import Transformer
from runner.rundir import RunError, data_dir, read_config

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Measurement:
    """Per-read quantity values on one probe at one checkpoint, and each read's sequence.

    Values and errors are keyed by `quantities.key`: a quantity that could not be measured has
    an error (the reason) instead of values.
    """

    values: dict[str, np.ndarray]
    errors: dict[str, str]
    sequence: np.ndarray


def load_probe(split: Split, probe: p.Probe) -> Split:
    """The probe's sequences of an already loaded split."""
    if probe.n > len(split):
        raise RunError(f"probe `{probe.name}`: split {probe.split} has {len(split)} sequences")
    if probe.seed is None:
        return split.select(np.arange(probe.n))
    rng = np.random.default_rng(probe.seed)
    return split.select(np.sort(rng.choice(len(split), size=probe.n, replace=False)))


def load_probes(run_dir: Path, probes: list[p.Probe]) -> dict[str, Split]:
    """Each probe's sequences, reading every split file once."""
    splits = {
        name: dataset.load_split(data_dir(run_dir), name) for name in {x.split for x in probes}
    }
    return {x.name: load_probe(splits[x.split], x) for x in probes}


def resolve_step(step: p.StepRef, config: TrainConfig) -> int:
    if step.kind == "final":
        return config.steps
    if step.kind == "first":
        return 0
    assert step.number is not None
    return step.number


class Engine:
    def __init__(
        self, plan: p.Plan, run_dir: Path, seed: int = 0, progress: Progress | None = None
    ):
        self.plan, self.run_dir, self.seed = plan, run_dir, seed
        self.config = read_config(run_dir)
        self.progress = progress or (lambda _: None)
        self._models: dict[int, Transformer] = {}
        needed = self._probe_names()
        self.probes = load_probes(run_dir, [x for x in plan.probes if x.name in needed])

    def requests(self) -> dict[int, dict[str, dict[str, p.QuantityExpr]]]:
        """step -> probe -> the quantities measured there, for every prediction evaluated."""
        out: dict[int, dict[str, dict[str, p.QuantityExpr]]] = {}
        for claim in self.plan.claims:
            for pred in claim.predictions:
                if claim.pending or unsupported_feature(pred) is not None:
                    continue
                assert isinstance(pred, p.TimedPrediction) and isinstance(pred.when, p.At)
                step = resolve_step(pred.when.step, self.config)
                wanted = out.setdefault(step, {}).setdefault(pred.probe, {})
                for q in _quantities(pred.left) + _quantities(pred.right):
                    wanted[quantities.key(q)] = q
        return out

    def _probe_names(self) -> set[str]:
        names = set()
        for per_probe in self.requests().values():
            for probe, wanted in per_probe.items():
                names.add(probe)
                for q in wanted.values():
                    names.update(
                        i.from_probe for i in q.interventions
                        if isinstance(i, p.Patch) and i.from_probe
                    )  # fmt: skip
        return names

    def _load_model(self, step: int) -> Transformer:
        if step not in self._models:
            try:
                self._models[step] = checkpoints.load_model(self.run_dir, step, self.config.model)
            except checkpoints.CheckpointError as e:
                raise quantities.MeasureError(f"checkpoint {step}: {e}") from None
        return self._models[step]

    def _next_step(self, step: int) -> int | None:
        later = [s for s in checkpoints.list_steps(self.run_dir) if s > step]
        return min(later) if later else None

    def measure(self) -> tuple[dict[tuple[int, str], Measurement], dict[int, str], dict[int, str]]:
        """Measurements per (step, probe); failures per step; weight hashes per step."""
        measured: dict[tuple[int, str], Measurement] = {}
        failures: dict[int, str] = {}
        hashes: dict[int, str] = {}
        batches = {name: ProbeBatch.from_split(split) for name, split in self.probes.items()}
        for step, per_probe in sorted(self.requests().items()):
            self.progress(f"step {step}")
            self._models = {}
            try:
                model = checkpoints.load_model(self.run_dir, step, self.config.model)
                hashes[step] = checkpoints.file_sha256(self.run_dir, step)
            except checkpoints.CheckpointError as e:
                failures[step] = str(e)
                continue
            self._models[step] = model
            for name in sorted(per_probe):
                ctx = quantities.QuantityContext(
                    model=model,
                    probe=batches[name],
                    step=step,
                    seed=self.seed,
                    load_model=self._load_model,
                    resolve_step=lambda ref: resolve_step(ref, self.config),
                    next_step=self._next_step,
                    other_probe=batches.__getitem__,
                )
                values, errors = {}, {}
                for k, q in sorted(per_probe[name].items()):
                    try:
                        values[k] = quantities.measure(ctx, q)
                    except quantities.MeasureError as e:
                        errors[k] = str(e)
                measured[(step, name)] = Measurement(values, errors, batches[name].reads.sequence)
        return measured, failures, hashes

    def run(self) -> results.StudyResult:
        torch.manual_seed(self.seed)
        measured, failures, hashes = self.measure()
        claims = tuple(self.judge_claim(c, measured, failures) for c in self.plan.claims)
        manifest = dataset.load_manifest(data_dir(self.run_dir))
        return results.StudyResult(
            study=self.plan.study,
            confidence=self.plan.confidence,
            claims=claims,
            provenance=results.Provenance(
                spec=Path(self.plan.source).name,
                plan_hash=self.plan.content_hash(),
                run=self.config.name,
                data_hash=manifest["data_hash"],
                checkpoints=hashes,
                seed=self.seed,
                n_resamples=stats.N_RESAMPLES,
                hypodsl_version=__version__,
                torch_version=torch.__version__,
            ),
        )

    def judge_claim(
        self,
        claim: p.ClaimPlan,
        measured: dict[tuple[int, str], Measurement],
        failures: dict[int, str],
    ) -> results.ClaimResult:
        claim_result = functools.partial(
            results.ClaimResult,
            name=claim.name,
            statement=claim.statement,
            line=claim.source.line,
            expect=claim.expect,
        )
        if claim.pending:
            return claim_result(
                verdict="unsupported",
                reason="pending: a next test, not run",
                pending=True,
                predictions=(),
            )
        preds = tuple(self.judge_prediction(pr, measured, failures) for pr in claim.predictions)
        verdict, reason = verdicts.combine(preds)
        return claim_result(verdict=verdict, reason=reason, predictions=preds)

    def judge_prediction(
        self,
        pred: p.TimedPrediction | p.BirthOrder,
        measured: dict[tuple[int, str], Measurement],
        failures: dict[int, str],
    ) -> results.PredictionResult:
        missing = unsupported_feature(pred)
        if missing is not None:
            probe = pred.probe if isinstance(pred, p.TimedPrediction) else pred.left.probe
            return results.PredictionResult(
                text=pred.text,
                line=pred.source.line,
                step=None,
                probe=probe,
                verdict="unsupported",
                reason=f"not evaluable: {missing}",
            )
        assert isinstance(pred, p.TimedPrediction) and isinstance(pred.when, p.At)
        step = resolve_step(pred.when.step, self.config)
        result = functools.partial(
            results.PredictionResult,
            text=pred.text,
            line=pred.source.line,
            step=step,
            probe=pred.probe,
        )
        if step in failures:
            reason = f"checkpoint {pred.when.step.label()} (step {step}): {failures[step]}"
            return result(verdict="unsupported", reason=f"not evaluable: {reason}")
        m = measured[(step, pred.probe)]
        for q in _quantities(pred.left) + _quantities(pred.right):
            if quantities.key(q) in m.errors:
                reason = f"not evaluable: `{q.name}`: {m.errors[quantities.key(q)]}"
                return result(verdict="unsupported", reason=reason)
        left, right = evaluate(pred.left, m), evaluate(pred.right, m)
        # Reads where a quantity is undefined (an empty role set, say) are left out.
        keep = np.isfinite(left) & np.isfinite(right)
        if not keep.any():
            return result(verdict="unsupported", reason="not evaluable: no read has a value")
        left, right, sequence = left[keep], right[keep], m.sequence[keep]
        boot = stats.paired_cluster_bootstrap(
            left, right, sequence, self.plan.confidence, seed=self.seed
        )
        d = boot.difference
        verdict, reason = verdicts.decide(pred.op, d.low, d.high, self.plan.confidence)
        return result(
            verdict=verdict,
            reason=reason,
            estimate=boot.left.value,
            interval=results.Interval(low=boot.left.low, high=boot.left.high),
            threshold=boot.right.value,
            difference=d.value,
            difference_interval=results.Interval(low=d.low, high=d.high),
            n=boot.n_reads,
            n_sequences=boot.n_sequences,
        )


NOT_YET = "is not implemented by this runner yet"


def unsupported_feature(pred: p.TimedPrediction | p.BirthOrder) -> str | None:
    """What in a prediction this runner cannot evaluate yet, or None when it can."""
    if isinstance(pred, p.BirthOrder):
        return f"birth order {NOT_YET}"
    if isinstance(pred.when, p.Over):
        return f"`over` windows {NOT_YET}"
    for q in _quantities(pred.left) + _quantities(pred.right):
        if q.name not in quantities.IMPLEMENTED:
            return f"quantity `{q.name}` {NOT_YET}"
        if q.interventions and q.name not in quantities.BEHAVIOUR:
            return f"interventions on `{q.name}` {NOT_YET}"
        if q.probe not in (None, pred.probe):
            return f"comparing across probes (`on {q.probe}`) {NOT_YET}"
    return None


def _quantities(expr: p.QuantityExpr | p.NumberExpr | p.BinaryExpr | p.UnaryExpr) -> list:
    if isinstance(expr, p.QuantityExpr):
        return [expr]
    if isinstance(expr, p.BinaryExpr):
        return _quantities(expr.left) + _quantities(expr.right)
    if isinstance(expr, p.UnaryExpr):
        return _quantities(expr.operand)
    return []


def evaluate(
    expr: p.QuantityExpr | p.NumberExpr | p.BinaryExpr | p.UnaryExpr, m: Measurement
) -> np.ndarray:
    """Per-read values of an expression; constants are broadcast over the reads."""
    if isinstance(expr, p.NumberExpr):
        return np.full(len(m.sequence), expr.value)
    if isinstance(expr, p.QuantityExpr):
        return m.values[quantities.key(expr)]
    if isinstance(expr, p.UnaryExpr):
        operand = evaluate(expr.operand, m)
        return -operand if expr.op == "neg" else np.abs(operand)
    left, right = evaluate(expr.left, m), evaluate(expr.right, m)
    ops = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}
    with np.errstate(divide="ignore", invalid="ignore"):
        return ops[expr.op](left, right)


def run_plan(
    plan: p.Plan, run_dir: Path, seed: int = 0, progress: Progress | None = None
) -> results.StudyResult:
    return Engine(plan, run_dir, seed, progress).run()
