"""The engine: evaluate a compiled `Plan` against a run (or a seed matrix of runs).

1. Requests: every (checkpoint, probe, quantity) some prediction needs, deduplicated.
2. Checkpoints: each weights file is hashed once; a missing or corrupt one is recorded as a
   failure, which makes only the predictions that read it Unsupported.
3. Measurement: one `StepTask` per checkpoint (runner.engine.step_worker), in this process or in
   `jobs` worker processes; the disk cache (runner.engine.cache) answers what was measured before.
4. Judging: plug-in statistics and tests per prediction (runner.stats.judge), then one multiplicity
   correction across the study, then verdicts (runner.stats.rules).

Results hold no wall-clock times or absolute paths: the same spec, checkpoints, seed and
settings give byte-identical results JSON on one machine (docs/reproducibility.md).
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch

from hypodsl import __version__
from hypodsl import plan as p
from runner.engine import selections, sources
from runner.engine.allocator import keep_freed_memory
from runner.engine.cache import MeasurementCache, entry_key
from runner.engine.probe_budget import check_probe_fits
from runner.engine.progress import Progress, Silent
from runner.engine.step_worker import StepOutcome, StepTask, load_probes, measure_step, resolve_step
from runner.features.basis import Basis, BasisError, FittedRun, load_basis
from runner.kv import dataset
from runner.measure import quantities
from runner.model import checkpoints
from runner.model.device import resolve_device
from runner.model.rundir import RunError, data_dir, read_config
from runner.stats import bootstrap, results, rules
from runner.stats.judge import Judge, Judged, Measured, quantities_of

__all__ = ["Engine", "load_probes", "resolve_device", "run_plan", "run_study"]

NOT_YET = "is not implemented by this runner yet"


def unsupported_feature(
    pred: p.TimedPrediction | p.BirthOrder, blocked: dict[str, str] | None = None
) -> str | None:
    """What in a prediction this runner cannot evaluate, or None when it can. `blocked` maps
    `basis:NAME` / `selection:NAME` to why that basis or selection cannot be used."""
    for ref in sorted(selections.references(pred) & set(blocked or {})):
        kind, name = ref.split(":", 1)
        return f"{kind} `{name}`: {(blocked or {})[ref]}"
    if isinstance(pred, p.BirthOrder):
        sides = [pred.left.left, pred.left.right, pred.right.left, pred.right.right]
    else:
        sides = [pred.left, pred.right]
    for expr in sides:
        for q in quantities_of(expr):
            if q.name not in quantities.IMPLEMENTED:
                return f"quantity `{q.name}` {NOT_YET}"
            if q.interventions and q.name not in quantities.INTERVENED:
                return f"interventions on `{q.name}` {NOT_YET}"
    return None


def pending_reason(claim: p.ClaimPlan) -> str:
    """What the ledger says of a pending claim: the spec's reason when it gives one."""
    return f"pending: {claim.pending_reason or 'a next test, not run'}"


def probe_hash(split: dataset.Split, probe: p.Probe) -> str:
    """The identity of a probe's content: its tokens (the reads follow from them)."""
    h = hashlib.sha256(probe.model_dump_json(exclude={"name"}).encode())
    h.update(np.ascontiguousarray(split.tokens).tobytes())
    h.update(np.ascontiguousarray(split.lengths).tobytes())
    return h.hexdigest()


def dependencies(q: p.QuantityExpr, step: int, steps: list[int], final: int) -> list[int]:
    """Other checkpoints a quantity reads: `patch(..., from=STEP)`, `update_alignment`."""
    out = [
        resolve_step(i.from_step, final)
        for i in q.interventions
        if isinstance(i, p.Patch) and i.from_step is not None
    ]
    if q.name == "update_alignment":
        later = [s for s in steps if s > step]
        out += later[:1]
    return out


class Engine:
    """One run: measure what the plan needs, judge every prediction."""

    def __init__(
        self,
        plan: p.Plan,
        run_dir: Path,
        seed: int = 0,
        progress: Progress | None = None,
        cache_dir: Path | None = None,
        jobs: int = 1,
        device: str = "cpu",
        threads: int | None = None,
        trajectories: bool = False,
        shared_passes: bool = True,
        ray_address: str | None = None,
        executor: str = "local",
    ):
        self.plan, self.run_dir, self.seed = plan, run_dir, seed
        self.executor, self.ray_address = executor, ray_address
        self.shared_passes = shared_passes  # False: one pass per quantity (for tests)
        self.trajectories = trajectories  # measure what figures draw too (Judge.reads)
        self._visited: dict[tuple[int, str], bool] | None = None  # see `columns_read`
        self.config = read_config(run_dir)
        self.progress = progress or Silent()
        self.cache = MeasurementCache(cache_dir)
        self.jobs, self.device, self.threads = max(1, jobs), device, threads
        self.steps = checkpoints.list_steps(run_dir)
        self.measured_steps: dict[int, str] = {}  # step -> SHA-256 of the weights it read
        self.computed = 0  # quantities measured rather than read from the cache
        self.reads: dict[str, int] = {}  # probe -> reads, so a cached array's length is checked
        self.requested = 0  # quantities needed at readable checkpoints
        self.seconds: dict[tuple[int, str, str], float] = {}  # wall time of each measured read
        self.claim_seconds: dict[str, float] = {}  # measuring (shared reads split) and judging
        self.blocked: dict[str, str] = {}  # `basis:NAME` / `selection:NAME` -> why unusable
        self.bases: dict[str, Basis] = self._load_bases()
        self.selected: tuple[results.SelectionResult, ...] = ()
        self.judge = Judge(plan, self._empty_measured(), self.resolve, seed)

    def _load_bases(self) -> dict[str, Basis]:
        """Every basis of the plan, checked against this run; a broken one blocks its claims."""
        manifest = dataset.load_manifest(data_dir(self.run_dir)) if self.plan.bases else {}
        run = FittedRun(
            name=self.config.name,
            config_hash=self.config.content_hash(),
            data_hash=manifest.get("data_hash", ""),
        )
        loaded = {}
        for ref in self.plan.bases:
            try:
                basis = load_basis(self.run_dir / ref.path, run)
            except BasisError as e:
                self.blocked[f"basis:{ref.name}"] = self._portable(str(e))
                continue
            if ref.site is not None and basis.info.site != ref.site:
                why = f"fitted at `{basis.info.site}`, not `{ref.site}`"
                self.blocked[f"basis:{ref.name}"] = why
                continue
            if ref.sha256 is not None and not basis.info.weights_sha256.startswith(ref.sha256):
                why = (
                    f"pinned to sha256 {ref.sha256}, but its weights are "
                    f"{basis.info.weights_sha256[:12]} (fitted again: other directions)"
                )
                self.blocked[f"basis:{ref.name}"] = why
                continue
            loaded[ref.name] = basis
        return loaded

    def resolve(self, ref: p.StepRef) -> int:
        return resolve_step(ref, self.config.steps)

    def _empty_measured(self) -> Measured:
        return Measured({}, {}, {}, {}, {}, list(self.steps))

    def evaluable(self) -> list[tuple[p.ClaimPlan, p.TimedPrediction | p.BirthOrder]]:
        return [
            (claim, pred)
            for claim in self.plan.claims
            if not claim.pending
            for pred in claim.predictions
            if unsupported_feature(pred, self.blocked) is None
        ]

    def columns_read(
        self, pred: p.TimedPrediction | p.BirthOrder
    ) -> list[tuple[int, str, p.QuantityExpr]]:
        """What a prediction's test reads, and with `trajectories` what its figure draws."""
        if not self.trajectories:
            return list(self.judge.reads(pred))
        if self._visited is None:  # (step, probe) -> whether the full clean pass runs there
            self._visited = {}
            for _, other in self.evaluable():
                for step, probe, q in self.judge.reads(other):
                    full = self._visited.get((step, probe), False) or quantities.reads_cache(q)
                    self._visited[(step, probe)] = full
        return list(self.judge.reads(pred, self._visited))

    def requests(self) -> dict[int, dict[str, dict[str, p.QuantityExpr]]]:
        """step -> probe -> quantity key -> quantity, for every prediction evaluated."""
        out: dict[int, dict[str, dict[str, p.QuantityExpr]]] = {}
        for _, pred in self.evaluable():
            for step, probe, q in self.columns_read(pred):
                out.setdefault(step, {}).setdefault(probe, {})[p.quantity_key(q)] = q
        return out

    def _identities(self, wanted: set[int]) -> tuple[dict[int, str], dict[int, str]]:
        """SHA-256 of each wanted checkpoint's weights as read, and why the others fail."""
        hashes, failures = {}, {}
        self.progress.phase("hash checkpoints", len(wanted))
        for step in sorted(wanted):
            try:
                hashes[step] = checkpoints.verified_sha256(self.run_dir, step)
            except checkpoints.CheckpointError as e:
                failures[step] = str(e)
            self.progress.advance()
        return hashes, failures

    def worker_threads(self) -> int:
        """Threads each measuring process uses: float32 sums can differ in the last bits with
        the thread count, so it is part of every cache key."""
        total = self.threads or torch.get_num_threads()
        return total if self.jobs == 1 else max(1, total // self.jobs)

    def _tasks(
        self,
        requests: dict[int, dict[str, dict[str, p.QuantityExpr]]],
        hashes: dict[int, str],
        probe_hashes: dict[str, str],
    ) -> list[StepTask]:
        tasks = []
        for step, per_probe in sorted(requests.items()):
            if step not in hashes:
                continue
            keys = {}
            for probe, wanted in per_probe.items():
                for k, q in wanted.items():
                    deps = dependencies(q, step, self.steps, self.config.steps)
                    used = sorted(r[6:] for r in selections.references(q) if r.startswith("basis:"))
                    keys[(probe, k)] = entry_key(
                        checkpoint=hashes[step],
                        dependencies=[hashes.get(d, f"unreadable step {d}") for d in deps]
                        + [f"basis {b} {self.bases[b].info.weights_sha256}" for b in used],
                        probe=probe_hashes[probe],
                        patch_probes={
                            i.from_probe: probe_hashes[i.from_probe]
                            for i in q.interventions
                            if isinstance(i, p.Patch) and i.from_probe
                        },
                        quantity=k,
                        seed=self.seed,
                        device=self.device,
                        threads=self.worker_threads(),
                    )
            tasks.append(
                StepTask(
                    run_dir=self.run_dir,
                    step=step,
                    requests=per_probe,
                    cache_keys=keys,
                    probes=self.plan.probes,
                    steps=tuple(self.steps),
                    cache_root=self.cache.root,
                    seed=self.seed,
                    device=self.device,
                    threads=self.worker_threads(),
                    reads=self.reads,
                    bases={
                        name: (str(b.directory), b.info.weights_sha256)
                        for name, b in self.bases.items()
                    },
                    shared_passes=self.shared_passes,
                    checkpoint_hashes=hashes,
                    probe_hashes=probe_hashes,
                )
            )
        return tasks

    def _run_tasks(self, tasks: list[StepTask]) -> list[StepOutcome]:
        self.progress.phase("measure checkpoints", len(tasks))
        if self.executor == "ray":
            from runner.engine.ray_executor import measure_on_ray

            return measure_on_ray(tasks, self.progress, self.ray_address)
        if self.jobs == 1 or len(tasks) < 2:
            outcomes = []
            for task in tasks:
                outcomes.append(measure_step(task))
                self.progress.advance()
            return outcomes
        # Spawned (not forked) workers: forking a process that has run torch can deadlock.
        context = multiprocessing.get_context("spawn")
        done: list[StepOutcome] = []
        with ProcessPoolExecutor(max_workers=self.jobs, mp_context=context) as pool:
            for future in as_completed([pool.submit(measure_step, t) for t in tasks]):
                done.append(future.result())
                self.progress.advance()
        return sorted(done, key=lambda o: o.step)

    def measure(self) -> Measured:
        requests = self.requests()
        probe_names = {probe for per_probe in requests.values() for probe in per_probe}
        for per_probe in requests.values():
            for wanted in per_probe.values():
                for q in wanted.values():
                    probe_names.update(
                        i.from_probe for i in q.interventions
                        if isinstance(i, p.Patch) and i.from_probe
                    )  # fmt: skip
        splits = load_probes(self.run_dir, self.plan.probes) if probe_names else {}
        for name in sorted(probe_names):
            tokens = splits[name].tokens
            check_probe_fits(name, tokens.shape[0], tokens.shape[1], self.config.model)
        probe_hashes = {
            name: probe_hash(splits[name], self.plan.probe(name)) for name in probe_names
        }
        self.reads = {name: len(splits[name].reads.sequence) for name in probe_names}
        wanted_steps = set(requests)
        for step, per_probe in requests.items():
            for wanted in per_probe.values():
                for q in wanted.values():
                    wanted_steps.update(dependencies(q, step, self.steps, self.config.steps))
        hashes, failures = self._identities(wanted_steps & set(self.steps))
        for step in wanted_steps - set(self.steps):
            failures[step] = f"no checkpoint at step {step} in {self.run_dir.name}"
        values: dict[tuple[int, str, str], np.ndarray] = {}
        errors: dict[tuple[int, str, str], str] = {}
        tasks = self._tasks(requests, hashes, probe_hashes)
        self.requested = sum(len(t.cache_keys) for t in tasks)
        try:
            outcomes = self._run_tasks(tasks)
        finally:
            sources.STORE.clear()  # activations kept between this study's checkpoints
        for outcome in outcomes:
            self.computed += outcome.computed
            if outcome.failure is not None:
                failures[outcome.step] = outcome.failure
                continue
            self.measured_steps[outcome.step] = hashes[outcome.step]
            for (probe, k), seconds in outcome.seconds.items():
                self.seconds[(outcome.step, probe, k)] = seconds
            for (probe, k), v in outcome.values.items():
                values[(outcome.step, probe, k)] = v
            for (probe, k), reason in outcome.errors.items():
                errors[(outcome.step, probe, k)] = reason
        failures = {step: self._portable(why) for step, why in failures.items()}
        errors = {slot: self._portable(why) for slot, why in errors.items()}
        clusters = {name: splits[name].reads.sequence for name in probe_names}
        resamplers = {
            name: bootstrap.Resampler(len(splits[name]), [self.seed, zlib.crc32(name.encode())])
            for name in probe_names
        }
        return Measured(values, errors, failures, clusters, resamplers, list(self.steps))

    def _portable(self, reason: str) -> str:
        """A reason as results hold it: the run's directory named, never its absolute path."""
        for prefix in {str(self.run_dir.resolve()), str(self.run_dir)}:
            reason = reason.replace(prefix, self.run_dir.name)
        return reason

    def judge_all(self, measured: Measured) -> tuple[results.ClaimResult, ...]:
        self.judge.m = measured
        judged: dict[int, Judged] = {}
        preds = [
            pred for claim in self.plan.claims if not claim.pending for pred in claim.predictions
        ]
        self.progress.phase("judge claims", len(preds))
        judge_seconds: dict[int, float] = {}
        for pred in preds:
            began = time.perf_counter()
            missing = unsupported_feature(pred, self.blocked)
            if missing:
                judged[id(pred)] = Judged(reason=f"not evaluable: {missing}")
            else:
                judged[id(pred)] = self.judge.judge(pred)
                if self.trajectories:
                    judged[id(pred)].fields["trajectories"] = self.judge.trajectories(pred)
            judge_seconds[id(pred)] = time.perf_counter() - began
            self.progress.advance()
        self._attribute_time(judge_seconds)
        tests = [j for j in judged.values() if j.test is not None]
        p_adj = bootstrap.adjust([j.test.p_value for j in tests], self.plan.correction)  # type: ignore[union-attr]
        q_adj = bootstrap.adjust([j.test.p_contrary for j in tests], self.plan.correction)  # type: ignore[union-attr]
        adjusted = {id(j): (a, b) for j, a, b in zip(tests, p_adj, q_adj, strict=True)}
        return tuple(self._claim_result(claim, judged, adjusted) for claim in self.plan.claims)

    def _attribute_time(self, judge_seconds: dict[int, float]) -> None:
        """Each claim's judging time plus its part of the measuring: a read several predictions
        share is split evenly between them; a read from the cache costs nothing."""
        readers: dict[tuple[int, str, str], list[str]] = {}
        for claim, pred in self.evaluable():
            slots = {(s, on, p.quantity_key(q)) for s, on, q in self.columns_read(pred)}
            for slot in slots:
                readers.setdefault(slot, []).append(claim.name)
        totals = {claim.name: 0.0 for claim in self.plan.claims}
        for claim in self.plan.claims:
            for pred in claim.predictions:
                totals[claim.name] += judge_seconds.get(id(pred), 0.0)
        for slot, names in readers.items():
            for name in names:
                totals[name] += self.seconds.get(slot, 0.0) / len(names)
        self.claim_seconds = totals

    def _claim_result(
        self,
        claim: p.ClaimPlan,
        judged: dict[int, Judged],
        adjusted: dict[int, tuple[float, float]],
    ) -> results.ClaimResult:
        claim_result = functools.partial(
            results.ClaimResult,
            name=claim.name,
            statement=claim.statement,
            line=claim.source.line,
            expect=claim.expect,
            exploratory=claim.exploratory,
            prior=claim.prior,
        )
        if claim.pending:
            return claim_result(
                verdict="unsupported", reason=pending_reason(claim), pending=True,
                predictions=(),
            )  # fmt: skip
        preds = []
        for pred in claim.predictions:
            j = judged[id(pred)]
            probe = pred.probe if isinstance(pred, p.TimedPrediction) else pred.left.probe
            base = {"text": pred.text, "line": pred.source.line, "probe": probe, **j.fields}
            if j.test is None:
                base.update(verdict="unsupported", reason=j.reason, evaluable=False)
            else:
                a, b = adjusted[id(j)]
                verdict, reason = rules.decide(
                    j.test, a, b, self.plan.confidence, self.plan.correction
                )
                base.update(verdict=verdict, reason=reason, p_adjusted=a)
            preds.append(results.PredictionResult.model_validate(base))
        verdict, reason = rules.combine(tuple(preds))
        evaluable = all(pred.evaluable for pred in preds)
        return claim_result(
            verdict=verdict, reason=reason, predictions=tuple(preds), evaluable=evaluable
        )

    def select(self) -> None:
        """Compute the plan's selections and rewrite the plan with the units they chose."""
        if not self.plan.selections:
            return
        names = {s.probe for s in self.plan.selections}
        splits = load_probes(self.run_dir, self.plan.probes)
        window = {
            step for s in self.plan.selections for step in selections.window_steps(s, self.steps)
        }
        hashes, _ = self._identities(window)
        ctx = selections.SelectionContext(
            run_dir=self.run_dir, config=self.config, steps=list(self.steps), hashes=hashes,
            probes=splits,
            probe_hashes={n: probe_hash(splits[n], self.plan.probe(n)) for n in names},
            bases=self.bases, cache=self.cache, seed=self.seed, device=self.device,
            threads=self.worker_threads(),
        )  # fmt: skip
        self.progress.phase("select units", len(self.plan.selections))
        selector, chosen = selections.Selector(ctx, self.plan.selections), {}
        for sel in self.plan.selections:
            blocked = sorted(
                selections.references(sel) & set(self.blocked)
                | ({f"basis:{sel.basis}"} & set(self.blocked))
            )
            if blocked:
                reason = f"{blocked[0].replace(':', ' `', 1)}`: {self.blocked[blocked[0]]}"
                result = results.SelectionResult(
                    name=sel.name, unit=selections.unit_text(sel), probe=sel.probe, steps=(),
                    members=(), reason=reason,
                )  # fmt: skip
            else:
                result = selector.select(sel)
            if result.reason is not None:
                reason = self._portable(result.reason)
                result = result.model_copy(update={"reason": reason})
                self.blocked[f"selection:{sel.name}"] = reason
            chosen[sel.name] = result
            self.progress.advance()
        self.selected = tuple(chosen.values())
        self.plan = selections.resolve(self.plan, chosen, self.config.model.n_heads)
        self.judge = Judge(self.plan, self._empty_measured(), self.resolve, self.seed)
        self._visited = None

    def run_claims(self) -> tuple[tuple[results.ClaimResult, ...], results.RunProvenance]:
        torch.manual_seed(self.seed)
        self.select()
        measured = self.measure()
        claims = self.judge_all(measured)
        manifest = dataset.load_manifest(data_dir(self.run_dir))
        provenance = results.RunProvenance(
            run=self.run_dir.name,
            data_hash=manifest["data_hash"],
            checkpoints=dict(sorted(self.measured_steps.items())),
            bases=tuple(
                results.BasisProvenance(
                    name=name, path=ref.path, site=b.info.site, width=b.info.d_sae,
                    weights_sha256=b.info.weights_sha256,
                )
                for ref in self.plan.bases
                if (b := self.bases.get(ref.name)) is not None
                for name in [ref.name]
            ),
            selections=self.selected,
        )  # fmt: skip
        return claims, provenance


def run_study(
    plan: p.Plan,
    run_dirs: list[Path],
    seed: int = 0,
    progress: Progress | None = None,
    cache_dir: Path | None = None,
    jobs: int = 1,
    device: str = "cpu",
    threads: int | None = None,
    counts: dict[str, int] | None = None,
    trajectories: bool = False,
    seconds: dict[str, float] | None = None,
    shared_passes: bool = True,
    executor: str = "local",
    ray_address: str | None = None,
) -> results.StudyResult:
    """Judge a plan on one run, or on each run of a seed matrix and aggregate (k of n).

    `trajectories` also measures what figures draw (see `Judge.reads`).
    `shared_passes=False` measures each quantity on its own (one edited forward pass, one
    gradient computation each): slower, and by test equal to the shared passes up to float
    rounding, with the same verdicts (tests/integration/test_shared_passes.py).
    `counts`, when given, receives how many quantities were `requested` and `computed` (the
    rest came from the cache), and `seconds` each claim's wall time: both are kept out of the
    result, which must not depend on the cache or the clock. `executor="ray"` sends each
    checkpoint's measurements to Ray (`runner.engine.ray_executor`; the same result).
    """
    keep_freed_memory()
    if not run_dirs:
        raise RunError("no run directory to evaluate")
    per_run = []
    measure_threads = 1
    for run_dir in run_dirs:
        engine = Engine(
            plan, run_dir, seed, progress, cache_dir, jobs, device, threads, trajectories,
            shared_passes, ray_address, executor,
        )  # fmt: skip
        measure_threads = engine.worker_threads()
        per_run.append((run_dir, *engine.run_claims()))
        if counts is not None:
            counts["requested"] = counts.get("requested", 0) + engine.requested
            counts["computed"] = counts.get("computed", 0) + engine.computed
        if seconds is not None:
            for name, t in engine.claim_seconds.items():
                seconds[name] = seconds.get(name, 0.0) + t
    if len(run_dirs) == 1 and plan.runs is None:
        claims = per_run[0][1]
    else:
        claims = tuple(_aggregate(plan, i, per_run) for i in range(len(plan.claims)))
    return results.StudyResult(
        study=plan.study,
        confidence=plan.confidence,
        correction=plan.correction,
        claims=claims,
        provenance=results.Provenance(
            spec=Path(plan.source).name,
            plan_hash=plan.content_hash(),
            runs=tuple(prov for _, _, prov in per_run),
            seed=seed,
            n_resamples=bootstrap.N_RESAMPLES,
            correction=plan.correction,
            hypodsl_version=__version__,
            torch_version=torch.__version__,
            device=device,
            jobs=jobs,
            threads=measure_threads,
        ),
    )


def _aggregate(plan: p.Plan, index: int, per_run: list) -> results.ClaimResult:
    first = per_run[0][1][index]
    if first.pending:
        return first
    runs = tuple(
        results.RunVerdict(
            run=run_dir.name,
            verdict=claims[index].verdict,
            reason=claims[index].reason,
            predictions=claims[index].predictions,
            evaluable=claims[index].evaluable,
        )
        for run_dir, claims, _ in per_run
    )
    verdict, reason = rules.aggregate_runs(runs, plan.confidence)
    data = first.model_dump() | {"verdict": verdict, "reason": reason, "predictions": ()}
    evaluable = all(run.evaluable for run in runs)
    return results.ClaimResult.model_validate(data | {"runs": runs, "evaluable": evaluable})


def run_plan(
    plan: p.Plan, run_dir: Path, seed: int = 0, progress: Progress | None = None, **options
) -> results.StudyResult:
    """Judge a plan on one run (see `run_study` for the options)."""
    return run_study(plan, [run_dir], seed, progress, **options)
