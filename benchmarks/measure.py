"""Measurement-library costs as ratios, measured in one process on the same inputs.

    python benchmarks/measure.py [--sequences 512] [--repeats 3] [--threads 2] [--weights PATH]

On the reference-size model (random weights unless --weights names a checkpoint) and a probe of
test sequences, each line times one method against its baseline (median of the repeats, the two
run in turn):

- ablation sweep: exact ablation of every head, batched with restart-at-layer, against one full
  hooked forward pass per head (target <= 0.4, issue 16); and the same comparison in the
  matrix products' FLOPs, with and without the clean pass the sweep restarts from (where time
  follows arithmetic, the time ratio sits near the FLOP ratio);
- attribution patching of every head and neuron, zero, mean and resample, against one forward +
  backward pass of the loss (target <= 1.3);
- per-example gradients of all parameters, one per read, against one batched forward + backward
  on the same inputs (each read's own sequence; target <= 1.8, stretch 1.25); and against one
  forward + backward of the probe's sequences, for scale; the vmap and loop methods on a subset;
- Gram matrix J J^T of per-example gradients: GFLOP/s against a square matmul of the same
  work (target >= 0.7);
- a forward pass caching what the path quantities need, against a plain forward (target <= 1.10);
- peak resident memory of the process (target <= 4 GB).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from hypodsl import plan as p
from runner.engine.allocator import keep_freed_memory
from runner.kv.dataset import DataConfig, Split, generate
from runner.kv.roles import build_read_table
from runner.measure import behaviour, sweep
from runner.measure import interventions as iv
from runner.measure import per_example as pe
from runner.measure.attribution_patching import attribution_patching
from runner.measure.paths import path_names
from runner.measure.probe import CleanRun, ProbeBatch, clean_run
from runner.model.configs import NAMED_CONFIGS
from runner.model.transformer import Transformer


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def median_times(fns: Sequence[Callable[[], object]], repeats: int) -> list[float]:
    """The median time of each function, the functions run in turn within each repeat: a drift
    of the machine's speed during the measurement (this kind of shared machine has them) then
    reaches both sides of a ratio alike instead of one side more than the other."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, kept in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            kept.append(time.perf_counter() - start)
    return [statistics.median(kept) for kept in times]


def matmul_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations of the matrix products `fn` runs (torch's own counter: the
    products are the arithmetic that scales; element-wise work is not counted)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def make_probe(n_sequences: int) -> ProbeBatch:
    config = DataConfig(
        seed=0, train=10, val_iid=10, test_iid=n_sequences, heldout=10,
        structural_ood=10, counterfactual=10,
    )  # fmt: skip
    arrays = generate(config)["test_iid"]
    tokens = arrays["tokens"].astype(np.int64)
    return ProbeBatch.from_split(
        Split("test_iid", tokens, arrays["lengths"], build_read_table(tokens))
    )


def make_model(weights: str | None) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(NAMED_CONFIGS["reference"].model)
    if weights:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(weights))
    model.eval()
    return model


def loss_forward_backward(model: Transformer, tokens, answer_rows, target) -> None:
    model.zero_grad(set_to_none=True)
    logits = model(tokens)
    behaviour.per_read(logits[answer_rows], target)["loss"].sum().backward()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", default=None, help="a safetensors checkpoint")
    parser.add_argument("--subset", type=int, default=64, help="reads timed for vmap and loop")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the engine does: both sides of every ratio run with it
    model, probe = make_model(args.weights), make_probe(args.sequences)
    rows = (probe.read_seq, probe.answer)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    out: dict[str, float] = {}
    print(
        f"reference model ({model.n_parameters():,} parameters), {probe.n_seq} sequences, "
        f"{len(probe)} reads, {args.threads} threads, median of {args.repeats}"
    )

    # 1. ablation sweep of every head
    sites = [
        iv.site_of(p.HeadNode(layer=layer, head=h))
        for layer in range(n_layers)
        for h in range(n_heads)
    ]
    zero = {s.label: torch.zeros(1) for s in sites}

    def clean() -> CleanRun:
        return sweep.clean_pass(model, probe)

    def ablations(run: CleanRun) -> None:
        sweep.ablation_sweep(model, probe, run, sites, zero)

    def batched() -> None:
        ablations(clean())

    def one_per_head() -> None:
        for site in sites:
            iv.run_edited(model, probe, [iv.replace_edit(site, torch.zeros(1), probe)])

    t_sweep, t_each = median_times([batched, one_per_head], args.repeats)
    out["ablation_sweep"] = t_sweep / t_each
    print(
        f"ablation sweep, {len(sites)} heads: {t_sweep:.3f} s vs {t_each:.3f} s "
        f"-> ratio {out['ablation_sweep']:.2f} (target <= 0.4)"
    )
    # The same comparison in arithmetic: how far below the baseline restarting can go at all.
    flops_clean = matmul_flops(clean)
    run = clean()
    flops_sweep = matmul_flops(lambda: ablations(run))
    flops_each = matmul_flops(one_per_head)
    out["ablation_sweep_flops"] = (flops_clean + flops_sweep) / flops_each
    out["ablation_sweep_flops_without_clean"] = flops_sweep / flops_each
    print(
        f"  matrix-product FLOPs: batched {(flops_clean + flops_sweep) / 1e9:.1f} G (its clean "
        f"pass {flops_clean / 1e9:.1f} G) vs {flops_each / 1e9:.1f} G -> ratio "
        f"{out['ablation_sweep_flops']:.3f}; without the clean pass (which a study shares with "
        f"its other quantities) {out['ablation_sweep_flops_without_clean']:.3f}"
    )

    # 2. attribution patching
    def fwd_bwd() -> None:
        loss_forward_backward(model, probe.tokens, rows, probe.target)

    t_atp, t_fb = median_times([lambda: attribution_patching(model, probe), fwd_bwd], args.repeats)
    out["attribution_patching"] = t_atp / t_fb
    print(
        f"attribution patching, {n_layers * n_heads} heads + {n_layers * model.cfg.d_ff} "
        f"neurons x 3 kinds: {t_atp:.3f} s vs forward+backward {t_fb:.3f} s "
        f"-> ratio {out['attribution_patching']:.2f} (target <= 1.3)"
    )

    # 3. per-example gradients (reads) against forward + backward on the same inputs
    chunk = 256

    def per_example() -> None:
        for _ in pe.per_example_gradients(model, probe, "einsum", chunk):
            pass

    def same_inputs_fwd_bwd() -> None:
        for reads in pe.chunks_by_length(probe, chunk):
            tokens, answer = pe.read_rows(probe, reads)
            loss_forward_backward(
                model, tokens, (torch.arange(len(reads)), answer), probe.target[reads]
            )

    t_pe, t_same = median_times([per_example, same_inputs_fwd_bwd], args.repeats)
    out["per_example"] = t_pe / t_same
    out["per_example_vs_probe"] = t_pe / t_fb
    print(
        f"per-example gradients (einsum), {len(probe)} reads: {t_pe:.3f} s vs forward+backward "
        f"on the same inputs {t_same:.3f} s -> ratio {out['per_example']:.2f} (target <= 1.8); "
        f"vs forward+backward of the {probe.n_seq} sequences: {out['per_example_vs_probe']:.2f}"
    )
    subset = probe_subset(probe, args.subset)
    for method in pe.METHODS:
        t = median_time(
            lambda m=method: [None for _ in pe.per_example_gradients(model, subset, m, chunk)],
            args.repeats,
        )
        out[f"per_example_{method}_ms_per_read"] = 1000 * t / len(subset)
        print(f"  {method}: {1000 * t / len(subset):.2f} ms per read ({len(subset)} reads)")

    # 4. Gram matrix throughput
    grads = next(iter(pe.per_example_gradients(model, probe_subset(probe, 512), "einsum", 512)))[1]
    n, n_params = grads.shape
    t_gram = median_time(lambda: pe.gram_matrix(grads), args.repeats)
    side = round((n * n * n_params) ** (1 / 3))
    a, b = torch.randn(side, side), torch.randn(side, side)
    t_mm = median_time(lambda: a @ b, args.repeats)
    gram_rate, mm_rate = 2 * n * n * n_params / t_gram, 2 * side**3 / t_mm
    out["gram_throughput"] = gram_rate / mm_rate
    print(
        f"Gram matrix {n} x {n_params:,}: {gram_rate / 1e9:.1f} GFLOP/s vs square matmul "
        f"{side}^3: {mm_rate / 1e9:.1f} GFLOP/s -> {out['gram_throughput']:.2f} (target >= 0.7)"
    )

    # 5. forward with the cache the path quantities need
    names = path_names(model)

    def plain() -> None:
        with torch.no_grad():
            model(probe.tokens)

    def cached() -> None:
        with torch.no_grad():
            clean_run(model, probe, names)

    t_cached, t_plain = median_times([cached, plain], args.repeats)
    out["cached_forward"] = t_cached / t_plain
    print(
        f"forward caching {len(names)} activations: {t_cached:.3f} s vs plain {t_plain:.3f} s "
        f"-> ratio {out['cached_forward']:.2f} (target <= 1.10)"
    )

    # 6. peak memory
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["peak_memory_gb"] = peak_kb / 1024**2
    print(f"peak resident memory: {out['peak_memory_gb']:.2f} GB (target <= 4)")
    return out


def probe_subset(probe: ProbeBatch, n_reads: int) -> ProbeBatch:
    """The first n_reads reads of a probe (same sequences)."""
    keep = torch.arange(min(n_reads, len(probe)))
    return ProbeBatch(
        probe.tokens, probe.lengths, probe.read_seq[keep], probe.answer[keep],
        probe.target[keep], probe.reads.subset(keep.numpy()),
    )  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
