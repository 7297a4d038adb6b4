"""Whole-study costs as ratios, measured in one process on the same run and spec.

    python benchmarks/engine.py [--run runs/small] [--spec specs/demo.hyp] [--repeats 3]
                                [--threads 2]

Every time is the median of the repeats, each cold run with a fresh, empty cache:

- the study, cold, against its costliest single claim, cold (target <= 1.3, issue 16), the two
  run in turn: K claims should cost about one sweep over the checkpoints, not K;
- a warm re-run (everything in the cache) against the cold run (target <= 0.02, issue 16);
- `--jobs 2` against `--jobs 1`, both cold (worker processes split the threads);
- the study's cold wall time against its floor (target <= 2): the forward and backward passes
  it cannot avoid, timed here on the same checkpoints and probes: one forward pass per
  (checkpoint, probe), one more per distinct intervention there, and one forward + backward of
  the loss per distinct gradient quantity there.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.measure import median_time, median_times
from hypodsl import plan as p
from hypodsl.cli_common import load_plan
from runner.engine.step_worker import load_probes
from runner.engine.study import Engine, run_study
from runner.measure import behaviour
from runner.measure.probe import ProbeBatch
from runner.model import checkpoints
from runner.model.rundir import read_config, read_signature
from runner.model.transformer import Transformer

GRADIENT_QUANTITIES = ("alignment", "alignment_cosine", "update_alignment", "gram")


def cold(plan: p.Plan, run: Path, jobs: int = 1, threads: int | None = None) -> float:
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        run_study(plan, [run], cache_dir=Path(cache), jobs=jobs, threads=threads)
        return time.perf_counter() - start


def plain_forward(model: torch.nn.Module, batch: ProbeBatch) -> None:
    with torch.no_grad():
        model(batch.tokens)


def forward_backward(model: Transformer, batch: ProbeBatch) -> None:
    """The loss's plain forward pass (the model's own, at every position) and backward pass."""
    model.zero_grad(set_to_none=True)
    logits = batch.at_answers(model(batch.tokens))
    behaviour.per_read(logits, batch.target)["loss"].mean().backward()


def floor_time(plan: p.Plan, run: Path, repeats: int) -> float:
    """The passes the study cannot avoid, timed per checkpoint (model loading not counted)."""
    requests = Engine(plan, run).requests()
    config = read_config(run)
    splits = load_probes(run, plan.probes)
    batches = {name: ProbeBatch.from_split(split) for name, split in splits.items()}
    total = 0.0
    available = set(checkpoints.list_steps(run))
    for step, per_probe in sorted(requests.items()):
        if step not in available:
            continue
        model = checkpoints.load_model(run, step, config.model)
        for probe, wanted in per_probe.items():
            batch = batches[probe]
            interventions = {q.interventions for q in wanted.values() if q.interventions}
            gradients = {k for k, q in wanted.items() if q.name in GRADIENT_QUANTITIES}

            forward = functools.partial(plain_forward, model, batch)
            total += median_time(forward, repeats) * (1 + len(interventions))
            if gradients:
                backward = functools.partial(forward_backward, model, batch)
                total += median_time(backward, repeats) * len(gradients)
    return total


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/small")
    parser.add_argument("--spec", default="specs/demo.hyp")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    plan = load_plan(Path(args.spec), read_signature(run))
    n_claims = sum(not c.pending for c in plan.claims)
    print(
        f"{args.spec}: {n_claims} claims on {run} ({len(checkpoints.list_steps(run))} checkpoints)"
    )
    print(f"threads {args.threads}, median of {args.repeats}")

    singles = {
        c.name: cold(plan.model_copy(update={"claims": (c,)}), run)
        for c in plan.claims
        if not c.pending
    }
    costliest = max(singles, key=singles.__getitem__)
    alone = plan.model_copy(update={"claims": (plan_claim(plan, costliest),)})
    study, single = median_times([lambda: cold(plan, run), lambda: cold(alone, run)], args.repeats)
    with tempfile.TemporaryDirectory() as cache:
        run_study(plan, [run], cache_dir=Path(cache))
        warm = median_time(lambda: run_study(plan, [run], cache_dir=Path(cache)), args.repeats)
    jobs2 = median_time(lambda: cold(plan, run, jobs=2, threads=args.threads), args.repeats)
    floor = floor_time(plan, run, args.repeats)
    ratios = {
        "study_vs_costliest_claim": study / single,
        "warm_vs_cold": warm / study,
        "jobs2_vs_jobs1": jobs2 / study,
        "study_vs_floor": study / floor,
    }
    rows = [
        ("cold study vs costliest claim", f"{study:.2f} s vs {single:.2f} s ({costliest})",
         ratios["study_vs_costliest_claim"], "<= 1.3"),
        ("warm re-run vs cold", f"{warm:.3f} s vs {study:.2f} s",
         ratios["warm_vs_cold"], "<= 0.02"),
        ("--jobs 2 vs --jobs 1, cold", f"{jobs2:.2f} s vs {study:.2f} s",
         ratios["jobs2_vs_jobs1"], "—"),
        ("cold study vs its floor", f"{study:.2f} s vs {floor:.2f} s",
         ratios["study_vs_floor"], "<= 2"),
    ]  # fmt: skip
    print(f"{'measurement':<32} {'times':<44} {'ratio':>6}  target")
    for name, times, ratio, target in rows:
        print(f"{name:<32} {times:<44} {ratio:>6.2f}  {target}")
    print("single claims, cold:")
    for name, seconds in sorted(singles.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<28} {seconds:6.2f} s")
    return ratios


def plan_claim(plan: p.Plan, name: str) -> p.ClaimPlan:
    return next(c for c in plan.claims if c.name == name)


if __name__ == "__main__":
    main(sys.argv[1:])
