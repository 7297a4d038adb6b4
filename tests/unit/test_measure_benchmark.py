"""benchmarks/measure.py runs (a small form here; the full one is in the closing notes)."""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks import measure
from runner.model.transformer import ModelConfig, Transformer


@pytest.mark.slow
def test_the_measurement_benchmark_runs_and_reports_every_ratio(capsys):
    out = measure.main(["--sequences", "16", "--repeats", "1", "--subset", "4", "--threads", "2"])
    expected = {
        "ablation_sweep", "ablation_sweep_flops", "ablation_sweep_flops_without_clean",
        "attribution_patching", "per_example", "per_example_vs_probe",
        "gram_throughput", "cached_forward", "peak_memory_gb",
        "per_example_einsum_ms_per_read", "per_example_vmap_ms_per_read",
        "per_example_loop_ms_per_read",
    }  # fmt: skip
    assert set(out) == expected
    assert all(math.isfinite(v) and v > 0 for v in out.values())
    assert "target <= 0.4" in capsys.readouterr().out
    # Restarting skips arithmetic: below the baseline's, more so without the clean pass.
    assert out["ablation_sweep_flops_without_clean"] < out["ablation_sweep_flops"] < 1


def test_the_flop_count_of_a_forward_pass_is_the_one_counted_by_hand():
    """The FLOP ratio the ablation line prints rests on torch's counter seeing every matrix
    product of the model: here it must equal the products counted from the shapes."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=11, n_ctx=16, d_model=16, n_layers=2, n_heads=2, d_ff=24)
    model = Transformer(cfg).eval()
    batch, n_pos = 3, 7
    tokens = torch.randint(0, cfg.vocab_size, (batch, n_pos))
    rows, d, f = batch * n_pos, cfg.d_model, cfg.d_ff
    per_block = 2 * rows * d * (3 * d + d + f + f)  # q, k, v; output; MLP in and out
    per_block += 2 * 2 * batch * n_pos * n_pos * d  # scores and their mix, all heads together
    expected = cfg.n_layers * per_block + 2 * rows * d * cfg.vocab_size  # + the unembedding
    with torch.no_grad():
        assert measure.matmul_flops(lambda: model(tokens)) == expected
