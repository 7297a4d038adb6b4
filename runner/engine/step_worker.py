"""Measure every requested quantity at one checkpoint: the unit of work the engine schedules.

A `StepTask` is plain data, so it can run in this process or in a worker process
(`--jobs`). Cached values are read first; the checkpoint is loaded only when something is
missing, and then one `QuantityContext` per probe (one clean forward pass and its activations,
held in memory) serves every missing quantity on that probe. Only the per-read results are
written to the cache.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hypodsl import plan as p
from runner.engine import sources
from runner.engine.allocator import keep_freed_memory
from runner.engine.cache import MeasurementCache
from runner.features.basis import Basis, BasisError, load_basis
from runner.kv import dataset
from runner.measure import quantities
from runner.measure.probe import ProbeBatch, clean_run
from runner.model import checkpoints
from runner.model.rundir import RunError, data_dir, read_config
from runner.model.transformer import Transformer

Slot = tuple[str, str]  # (probe, quantity key)


@dataclass(frozen=True)
class StepTask:
    run_dir: Path
    step: int
    requests: dict[str, dict[str, p.QuantityExpr]]  # probe -> quantity key -> quantity
    cache_keys: dict[Slot, str]
    probes: tuple[p.Probe, ...]  # every probe of the plan (patches may read another)
    steps: tuple[int, ...]  # every checkpoint of the run
    cache_root: Path | None
    seed: int
    device: str
    threads: int | None = None
    reads: dict[str, int] = field(default_factory=dict)  # probe -> reads: a cached array's length
    bases: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (dir, SHA-256)
    shared_passes: bool = True  # False: nothing batched (see QuantityContext.shared)
    # SHA-256 of the checkpoints and probes read, to key activations kept between tasks
    checkpoint_hashes: dict[int, str] = field(default_factory=dict)
    probe_hashes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StepOutcome:
    step: int
    values: dict[Slot, np.ndarray]
    errors: dict[Slot, str]
    failure: str | None  # the checkpoint could not be loaded: every request fails with this
    computed: int  # quantities measured (not read from the cache)
    seconds: dict[Slot, float] = field(default_factory=dict)  # wall time of each measured slot


def load_probe(split: dataset.Split, probe: p.Probe) -> dataset.Split:
    """The probe's sequences of an already loaded split."""
    if probe.n > len(split):
        raise RunError(f"probe `{probe.name}`: split {probe.split} has {len(split)} sequences")
    if probe.seed is None:
        return split.select(np.arange(probe.n))
    rng = np.random.default_rng(probe.seed)
    return split.select(np.sort(rng.choice(len(split), size=probe.n, replace=False)))


@functools.lru_cache(maxsize=4)
def _load_splits(run_dir: Path, probes: tuple[p.Probe, ...]) -> dict[str, dataset.Split]:
    splits = {
        name: dataset.load_split(data_dir(run_dir), name) for name in {x.split for x in probes}
    }
    return {x.name: load_probe(splits[x.split], x) for x in probes}


def load_probes(
    run_dir: Path, probes: list[p.Probe] | tuple[p.Probe, ...]
) -> dict[str, dataset.Split]:
    """Each probe's sequences, reading every split file once (and once per process)."""
    return _load_splits(run_dir, tuple(probes))


@functools.lru_cache(maxsize=8)
def _load_basis(directory: str, sha256: str) -> Basis:
    basis = load_basis(Path(directory))
    if basis.info.weights_sha256 != sha256:
        raise BasisError(f"{directory}: changed while the study ran")
    return basis


def resolve_step(step: p.StepRef, final: int) -> int:
    if step.kind == "final":
        return final
    if step.kind == "first":
        return 0
    assert step.number is not None
    return step.number


def measure_step(task: StepTask) -> StepOutcome:
    cache = MeasurementCache(task.cache_root)
    values: dict[Slot, np.ndarray] = {}
    errors: dict[Slot, str] = {}
    missing: list[Slot] = []
    for slot, key in sorted(task.cache_keys.items()):
        hit = cache.get(key, task.reads.get(slot[0]))
        if hit is None:
            missing.append(slot)
        elif isinstance(hit, str):
            errors[slot] = hit
        else:
            values[slot] = hit
    if not missing:
        return StepOutcome(task.step, values, errors, None, 0)
    started = time.perf_counter()
    keep_freed_memory()
    if task.threads:
        torch.set_num_threads(task.threads)
    config = read_config(task.run_dir)
    device = torch.device(task.device)
    try:
        model = checkpoints.load_model(task.run_dir, task.step, config.model).to(device)
        bases = {name: _load_basis(*where).to(device) for name, where in task.bases.items()}
    except (checkpoints.CheckpointError, BasisError) as e:
        return StepOutcome(task.step, {}, {}, str(e), 0)
    torch.manual_seed(task.seed)
    splits = load_probes(task.run_dir, task.probes)
    batches: dict[str, ProbeBatch] = {}

    def batch(name: str) -> ProbeBatch:
        if name not in batches:
            batches[name] = ProbeBatch.from_split(splits[name]).to(device)
        return batches[name]

    other_models: dict[int, Transformer] = {}

    def load_other(step: int) -> Transformer:
        if step not in other_models:
            try:
                loaded = checkpoints.load_model(task.run_dir, step, config.model)
            except checkpoints.CheckpointError as e:
                raise quantities.MeasureError(f"checkpoint {step}: {e}") from None
            other_models[step] = loaded.to(device)
        return other_models[step]

    def model_at(step: int) -> Transformer:
        return model if step == task.step else load_other(step)

    def next_step(step: int) -> int | None:
        later = [s for s in task.steps if s > step]
        return min(later) if later else None

    def step_activation(probe: str) -> Callable[[int, str], torch.Tensor]:
        def activation(step: int, name: str) -> torch.Tensor:
            def compute() -> torch.Tensor:
                with torch.no_grad():
                    return clean_run(model_at(step), batch(probe), [name])[name]

            if step not in task.checkpoint_hashes or probe not in task.probe_hashes:
                return compute()
            key = sources.SourceKey(
                task.checkpoint_hashes[step], task.probe_hashes[probe], name, task.device,
                task.threads,
            )  # fmt: skip
            return sources.STORE.get(key, compute)

        return activation

    seconds: dict[Slot, float] = {}
    # Loading is shared: each measured slot carries an equal part of it.
    load_share = (time.perf_counter() - started) / len(missing)
    for probe in sorted({probe for probe, _ in missing}):
        ctx = quantities.QuantityContext(
            model=model,
            probe=batch(probe),
            step=task.step,
            seed=task.seed,
            load_model=model_at,
            resolve_step=lambda ref: resolve_step(ref, config.steps),
            next_step=next_step,
            other_probe=batch,
            bases=bases,
            step_activation=step_activation(probe) if task.shared_passes else None,
            shared=task.shared_passes,
        )
        slots = [s for s in missing if s[0] == probe]
        began = time.perf_counter()
        wanted = [task.requests[probe][k] for _, k in slots]
        _prefetch(ctx, wanted, task.device)
        # The stacked edited passes are shared: each intervened slot carries an equal part.
        intervened = sum(1 for q in wanted if q.interventions)
        pass_share = (time.perf_counter() - began) / max(intervened, 1)
        for slot in slots:
            began = time.perf_counter()
            q = task.requests[probe][slot[1]]
            value = _measure_one(ctx, q, task.device)
            seconds[slot] = load_share + time.perf_counter() - began
            seconds[slot] += pass_share if q.interventions else 0.0
            if isinstance(value, str):
                errors[slot] = value
            else:
                values[slot] = value
            cache.put(task.cache_keys[slot], value)
    return StepOutcome(task.step, values, errors, None, len(missing), seconds)


def _prefetch(ctx: quantities.QuantityContext, wanted: list[p.QuantityExpr], device: str) -> None:
    """Batch the edited passes; a failure here is left to each quantity to report."""
    try:
        ctx.prefetch(wanted)
    except quantities.MeasureError:
        pass
    except RuntimeError:
        if device == "cpu":
            raise


def _measure_one(
    ctx: quantities.QuantityContext, q: p.QuantityExpr, device: str
) -> np.ndarray | str:
    try:
        return quantities.measure(ctx, q)
    except quantities.MeasureError as e:
        return str(e)
    except RuntimeError as e:
        if device == "cpu":
            raise
        # The measurement library is tested on CPU; report a device problem, do not crash.
        return f"failed on {device}: {e}"
