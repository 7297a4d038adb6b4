"""A reference-scale study's costs as ratios, measured in one process.

    python benchmarks/study.py [--run runs/bench_reference] [--repeats 3] [--threads 2]
    python benchmarks/study.py --device cuda [--json FILE]    # on a GPU machine

The run: the reference architecture (626,048 parameters) trained 280 steps on the reference
checkpoint schedule divided by 50 (89 checkpoints: every step to 40, every 5 steps after), with
64-feature bases at the two sites the reference study reads; made on first use (`make_run`).
The study: every spec of specs/reference/ reduced to that schedule (benchmarks/reduced.py, so
the claims are the real study's, with their 512-sequence probes) plus benchmarks/study_extra.hyp
(the intervention and feature kinds the reference study does not use). Verdicts on this run mean
nothing; the costs are those of the real study's shape.

Every line is the median of the repeats; "cold" is a run with a fresh, empty cache. The study,
its floor and the study with ablations run in turn, once each per round, and so do the two
alignment studies: a drift of the machine's speed then reaches both sides of a ratio alike.

- the study cold against its floor (target <= 1.5): one forward pass per (checkpoint, probe) it
  reads and one forward + backward per distinct gradient objective there, timed here;
- the study with figures (`--report`: every prediction at every checkpoint) against without
  (target <= 1.3);
- `alignment` of 16 paths against `alignment` of 1 path at one checkpoint (target <= 2);
- the study plus 48 single-head ablations (12 heads x zero, mean, resample, patch from a probe)
  and 8 neuron-set ablations, against the study alone (target <= 3);
- a warm re-run (all from the cache) against the cold run (target <= 0.02);
- peak resident memory of a process running the study cold with figures (target <= 4 GB).

The run with figures is timed in a fresh process (around `run_study` only, so imports are not
counted) that also reports its peak memory: one cold run gives both numbers.

With `--device cuda` it times the study cold on the GPU instead (median of the repeats), a warm
re-run there, and one cold run on `--threads` CPU threads in the same process, and lists every
claim whose verdict differs between the two and every measurement the GPU could not make.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.engine import forward_backward, plain_forward
from benchmarks.measure import median_time, median_times
from benchmarks.reduced import reduce_spec
from hypodsl import plan as p
from hypodsl.compiler import compile_spec
from hypodsl.parser import parse
from runner.engine.step_worker import load_probes
from runner.engine.study import Engine, run_study
from runner.features.fit import FitSettings, fit_basis
from runner.measure.probe import ProbeBatch
from runner.model import checkpoints
from runner.model.configs import NAMED_CONFIGS, TrainConfig
from runner.model.rundir import read_config, read_signature
from runner.train.loop import train

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs" / "reference"
EXTRA = Path(__file__).with_name("study_extra.hyp")
BASES = {
    "features/l2": "blocks.2.hook_resid_post",
    "features/final_norm": "ln_final.hook_normalized",
}
BENCH = NAMED_CONFIGS["reference"].model_copy(
    update={
        "name": "bench_reference",
        "steps": 280,
        "warmup_steps": 10,
        "lr": 3e-3,
        "checkpoint_schedule": ((0, 1), (40, 5)),  # the reference's ((0, 50), (2000, 250)) / 50
        "eval_sequences": 64,
    }
)
GRADIENT_QUANTITIES = ("alignment", "update_alignment", "gram")


def make_run(run: Path, config: TrainConfig = BENCH, fit_steps: int = 3000) -> None:
    """Train the benchmark run and fit its bases, unless they are there (both resume)."""
    if config.steps not in checkpoints.list_steps(run):
        print(
            f"training {run} ({config.steps} steps, {len(config.checkpoint_steps())} checkpoints)"
        )
        train(config, run)
    for key, site in BASES.items():
        if not (run / key / "hypodsl_basis.json").exists():
            print(f"fitting {run / key} at {site}")
            fit_basis(run, run / key, FitSettings(site=site, width=64, train_steps=fit_steps))


def write_study(directory: Path, extra: str = "", max_n: int = 512) -> Path:
    """The reduced reference study plus the extra claims (and `extra`), in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    decls = reduce_spec((SPECS / "reference_decls.hyp").read_text(), max_n=max_n)
    (directory / "reference_decls.hyp").write_text(decls)
    text = (SPECS / "reference.hyp").read_text() + "\n" + EXTRA.read_text() + "\n" + extra
    spec = directory / "bench_study.hyp"
    spec.write_text(reduce_spec(text, max_n=max_n))
    return spec


def compile_study(run: Path, extra: str = "", only_extra: bool = False) -> p.Plan:
    """The benchmark study's plan; with `only_extra`, only the claims of `extra` (and none of the
    study's selections)."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = write_study(Path(tmp), extra)
        text = spec.read_text()
        plan = compile_spec(parse(text, str(spec)), text, read_signature(run))
    if only_extra:
        names = set(re.findall(r"^claim (\w+)", extra, flags=re.M))
        claims = tuple(c for c in plan.claims if c.name in names)
        plan = plan.model_copy(update={"claims": claims, "selections": ()})  # none read
    return plan


def alignment_claims(n_paths: int) -> str:
    """One claim reading `alignment` of n different paths at one checkpoint."""
    heads = [f"L{layer}.H{h}" for layer in range(3) for h in range(4)]
    nodes = [*heads, "L0.mlp", "L1.mlp", "L2.mlp", "embed"][:n_paths]
    paths = "\n".join(f"path bench_p{i} = {node} -> unembed" for i, node in enumerate(nodes))
    preds = "\n".join(f"  at final on iid: alignment(bench_p{i}) > -1000" for i in range(n_paths))
    return f'{paths}\nclaim bench_alignment "alignment of {n_paths} paths" {{\n{preds}\n}}'


def ablation_claims() -> str:
    """48 single-head ablations and 8 neuron sets, at the final checkpoint."""
    heads = [f"L{layer}.H{h}" for layer in range(3) for h in range(4)]
    methods = ["ablate({}, zero)", "ablate({}, mean)", "ablate({}, resample)", "patch({}, from=cf)"]
    lines = [f"  at final on iid: accuracy with {m.format(h)} < 2" for h in heads for m in methods]
    neurons = [
        f"L{layer}.mlp[{', '.join(str(i) for i in range(start, start + 16))}]"
        for layer in range(3)
        for start in (0, 100, 200)
    ][:8]
    lines += [f"  at final on iid: accuracy with ablate({n}, mean) < 2" for n in neurons]
    body = "\n".join(lines)
    return f'claim bench_ablations "48 head ablations and 8 neuron sets" {{\n{body}\n}}'


def cold(
    plan: p.Plan,
    run: Path,
    trajectories: bool = False,
    cache: Path | None = None,
    device: str = "cpu",
) -> float:
    """Seconds of one run of the study with an empty cache (`cache`, kept, or a temporary one)."""
    if cache is not None:
        start = time.perf_counter()
        run_study(plan, [run], cache_dir=cache, trajectories=trajectories, device=device)
        return time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        return cold(plan, run, trajectories, Path(tmp), device)


def floor_time(plan: p.Plan, run: Path, repeats: int) -> float:
    """One forward per (checkpoint, probe) read and one forward + backward per distinct gradient
    objective there (the loss for every `alignment`, a target for each `update_alignment` and
    `gram`), timed per checkpoint; loading not counted. Selections' drives are not counted."""
    engine = Engine(plan, run)
    engine.select()
    requests = engine.requests()
    config = read_config(run)
    batches = {n: ProbeBatch.from_split(s) for n, s in load_probes(run, plan.probes).items()}
    available = set(checkpoints.list_steps(run))
    total = 0.0
    for step, per_probe in sorted(requests.items()):
        if step not in available:
            continue
        model = checkpoints.load_model(run, step, config.model)
        for probe, wanted in per_probe.items():
            batch = batches[probe]
            total += median_time(functools.partial(plain_forward, model, batch), repeats)
            objectives = {
                "loss" if q.name == "alignment" else p.quantity_key(q)
                for q in wanted.values()
                if q.name in GRADIENT_QUANTITIES
            }
            if objectives:
                backward = median_time(functools.partial(forward_backward, model, batch), repeats)
                total += backward * len(objectives)
    return total


def figures_in_fresh_process(run: Path, threads: int) -> tuple[float, float]:
    """(seconds, peak resident GB) of a fresh process running the study cold with figures; the
    seconds are those of `run_study` alone."""
    code = (
        "import resource, sys, tempfile, time, torch\n"
        "from pathlib import Path\n"
        "from benchmarks.study import compile_study\n"
        "from runner.engine.study import run_study\n"
        f"torch.set_num_threads({threads})\n"
        "run = Path(sys.argv[1])\n"
        "plan = compile_study(run)\n"
        "with tempfile.TemporaryDirectory() as cache:\n"
        "    start = time.perf_counter()\n"
        "    run_study(plan, [run], cache_dir=Path(cache), trajectories=True)\n"
        "    seconds = time.perf_counter() - start\n"
        "print(seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(run)], capture_output=True, text=True, check=True,
        cwd=ROOT,
    )  # fmt: skip
    seconds, kilobytes = out.stdout.strip().splitlines()[-1].split()
    return float(seconds), int(kilobytes) / 1024**2


def on_device(plan: p.Plan, run: Path, device: str, repeats: int, threads: int) -> dict:
    """The study cold on `device` (median of `repeats`) and warm, then once cold on the CPU with
    `threads` threads in the same process; the verdicts of both, and every measurement the
    device could not make (the engine reports those as "failed on DEVICE" instead of raising)."""
    times = Times()
    torch.zeros(1, device=device)  # the device's context is made once per process, not timed
    with tempfile.TemporaryDirectory() as tmp:
        caches = [Path(tmp) / f"cold{i}" for i in range(repeats)]
        times[f"study_{device}"] = statistics.median(
            cold(plan, run, cache=c, device=device) for c in caches
        )
        start = time.perf_counter()
        on_gpu = run_study(plan, [run], cache_dir=caches[-1], device=device)
        times[f"warm_{device}"] = time.perf_counter() - start
    start = time.perf_counter()
    on_cpu = run_study(plan, [run], device="cpu", threads=threads)
    times["study_cpu"] = time.perf_counter() - start
    failed = [(c.name, c.reason) for c in on_gpu.claims if f"failed on {device}" in c.reason]
    failed += [
        (s.name, s.reason)
        for s in on_gpu.provenance.runs[0].selections
        if s.reason and f"failed on {device}" in s.reason
    ]
    differ = [
        (a.name, a.verdict, b.verdict)
        for a, b in zip(on_cpu.claims, on_gpu.claims, strict=True)
        if a.verdict != b.verdict
    ]
    print(f"claims failed on {device}: {failed or 'none'}")
    print(f"verdicts that differ from the CPU's: {differ or 'none'}")
    ratio = times[f"study_{device}"] / times["study_cpu"]
    print(f"study on {device} vs on {threads} CPU threads: {ratio:.3f}")
    return {"times": times, "ratio_vs_cpu": ratio, "failed": failed, "differ": differ}


class Times(dict[str, float]):
    """Times by name, each printed as it is measured (a cut-off run still shows the first)."""

    def __setitem__(self, key: str, seconds: float) -> None:
        print(f"  {key}: {seconds:.2f} s", flush=True)
        super().__setitem__(key, seconds)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/bench_reference")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the ratios and times to this file")
    parser.add_argument(
        "--device", default="cpu",
        help="cuda: time the study there (and once on --threads CPU threads) instead",
    )  # fmt: skip
    args = parser.parse_args(argv)
    run = Path(args.run)
    make_run(run)
    torch.set_num_threads(args.threads)
    plan = compile_study(run)
    if args.device != "cpu":
        found = on_device(plan, run, args.device, args.repeats, args.threads)
        if args.json:
            Path(args.json).write_text(json.dumps(found, indent=2))
        return {"study_vs_cpu": found["ratio_vs_cpu"]}
    n_claims = sum(not c.pending for c in plan.claims)
    n_steps = len(checkpoints.list_steps(run))
    print(f"{n_claims} claims judged ({len(plan.claims)} in all) on {run}, {n_steps} checkpoints")
    print(f"threads {args.threads}, median of {args.repeats}")

    times = Times()
    ablations = compile_study(run, ablation_claims())
    # The study, its floor and the study with ablations in turn, each round once: a drift of
    # the machine's speed then reaches the three alike (see `median_times`).
    rounds: dict[str, list[float]] = {"study": [], "floor": [], "with_ablations": []}
    with tempfile.TemporaryDirectory() as tmp:
        caches = [Path(tmp) / f"cold{i}" for i in range(args.repeats)]
        for i, cache in enumerate(caches):
            rounds["study"].append(cold(plan, run, cache=cache))
            rounds["floor"].append(floor_time(plan, run, 1))
            rounds["with_ablations"].append(cold(ablations, run))
            shown = ", ".join(f"{name} {seconds[-1]:.2f} s" for name, seconds in rounds.items())
            print(f"  round {i + 1}: {shown}", flush=True)
        for name, seconds in rounds.items():
            times[name] = statistics.median(seconds)
        times["warm"] = median_time(
            lambda: run_study(plan, [run], cache_dir=caches[-1]), args.repeats
        )
    with_figures = [figures_in_fresh_process(run, args.threads) for _ in range(args.repeats)]
    times["figures"] = statistics.median(seconds for seconds, _ in with_figures)
    memory = max(gb for _, gb in with_figures)
    one, sixteen = (compile_study(run, alignment_claims(n), only_extra=True) for n in (1, 16))
    cold(one, run)  # warm-up: the first forward-mode pass of a process pays a one-time setup
    times["alignment_1"], times["alignment_16"] = median_times(
        [lambda: cold(one, run), lambda: cold(sixteen, run)], args.repeats
    )
    ratios = {  # every time was printed as it was measured, above
        "study_vs_floor": times["study"] / times["floor"],
        "figures_vs_none": times["figures"] / times["study"],
        "alignment_16_vs_1": times["alignment_16"] / times["alignment_1"],
        "ablations_vs_none": times["with_ablations"] / times["study"],
        "warm_vs_cold": times["warm"] / times["study"],
        "peak_memory_gb": memory,
    }
    rows = [
        ("cold study vs its floor", f"{times['study']:.1f} s vs {times['floor']:.1f} s",
         ratios["study_vs_floor"], "<= 1.5"),
        ("with figures vs without", f"{times['figures']:.1f} s vs {times['study']:.1f} s",
         ratios["figures_vs_none"], "<= 1.3"),
        ("alignment of 16 paths vs 1", f"{times['alignment_16']:.2f} s vs "
         f"{times['alignment_1']:.2f} s", ratios["alignment_16_vs_1"], "<= 2"),
        ("+48 head ablations, 8 neuron sets", f"{times['with_ablations']:.1f} s vs "
         f"{times['study']:.1f} s", ratios["ablations_vs_none"], "<= 3"),
        ("warm re-run vs cold", f"{times['warm']:.2f} s vs {times['study']:.1f} s",
         ratios["warm_vs_cold"], "<= 0.02"),
        ("peak resident memory (GB)", "study cold, with figures (max)", memory, "<= 4"),
    ]  # fmt: skip
    print(f"{'measurement':<34} {'times':<30} {'ratio':>7}  target")
    for name, shown, ratio, target in rows:
        print(f"{name:<34} {shown:<30} {ratio:>7.2f}  {target}")
    if args.json:
        Path(args.json).write_text(json.dumps({"times": times, "ratios": ratios}, indent=2))
    return ratios


if __name__ == "__main__":
    main(sys.argv[1:])
