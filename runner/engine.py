"""The engine: evaluate a compiled `Plan` against a run's checkpoints.

Every prediction needs per-read values of some quantities at one (checkpoint, probe). The engine
collects those requests, loads each checkpoint once, runs one scoring pass per (checkpoint,
probe) that serves every prediction asking for it, then hands per-read values to the paired
bootstrap and the verdict rules. A checkpoint that is missing or corrupt makes the predictions
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
from runner.rundir import RunError, data_dir, read_config
from runner.scoring import score_split

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Measurement:
    """Per-read quantity values on one probe at one checkpoint, and each read's sequence."""

    values: dict[str, np.ndarray]
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
        needed = {name for names in self.requests().values() for name in names}
        self.probes = load_probes(run_dir, [x for x in plan.probes if x.name in needed])

    def requests(self) -> dict[int, set[str]]:
        """step -> probes measured at that step, for every prediction this runner evaluates."""
        out: dict[int, set[str]] = {}
        for claim in self.plan.claims:
            for pred in claim.predictions:
                if not claim.pending and unsupported_feature(pred) is None:
                    assert isinstance(pred, p.TimedPrediction) and isinstance(pred.when, p.At)
                    out.setdefault(resolve_step(pred.when.step, self.config), set()).add(pred.probe)
        return out

    def measure(self) -> tuple[dict[tuple[int, str], Measurement], dict[int, str], dict[int, str]]:
        """Measurements per (step, probe); failures per step; weight hashes per step."""
        measured: dict[tuple[int, str], Measurement] = {}
        failures: dict[int, str] = {}
        hashes: dict[int, str] = {}
        for step, probe_names in sorted(self.requests().items()):
            self.progress(f"step {step}")
            try:
                model = checkpoints.load_model(self.run_dir, step, self.config.model)
                hashes[step] = checkpoints.file_sha256(self.run_dir, step)
            except checkpoints.CheckpointError as e:
                failures[step] = str(e)
                continue
            for name in sorted(probe_names):
                split = self.probes[name]
                scores = score_split(model, split)
                values = {q: np.asarray(scores[q], dtype=np.float64) for q in BEHAVIOUR}
                measured[(step, name)] = Measurement(values, split.reads.sequence)
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
        left, right = evaluate(pred.left, m), evaluate(pred.right, m)
        if len(m.sequence) == 0:
            return result(verdict="unsupported", reason="not evaluable: the probe has no reads")
        if not (np.isfinite(left).all() and np.isfinite(right).all()):
            reason = "not evaluable: a measured value is not finite"
            return result(verdict="unsupported", reason=reason)
        boot = stats.paired_cluster_bootstrap(
            left, right, m.sequence, self.plan.confidence, seed=self.seed
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


BEHAVIOUR = ("accuracy", "loss", "margin")
NOT_YET = "is not implemented by this runner yet"


def unsupported_feature(pred: p.TimedPrediction | p.BirthOrder) -> str | None:
    """What in a prediction this runner cannot evaluate yet, or None when it can."""
    if isinstance(pred, p.BirthOrder):
        return f"birth order {NOT_YET}"
    if isinstance(pred.when, p.Over):
        return f"`over` windows {NOT_YET}"
    for q in _quantities(pred.left) + _quantities(pred.right):
        if q.name not in BEHAVIOUR:
            return f"quantity `{q.name}` {NOT_YET}"
        if q.interventions:
            return f"interventions (`with {q.interventions[0].kind}`) {NOT_YET}"
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
        return m.values[expr.name]
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
