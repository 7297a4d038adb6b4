"""benchmarks/measure.py runs (a small form here; the full one is in the closing notes)."""

from __future__ import annotations

import math

import pytest

from benchmarks import measure


@pytest.mark.slow
def test_the_measurement_benchmark_runs_and_reports_every_ratio(capsys):
    out = measure.main(["--sequences", "16", "--repeats", "1", "--subset", "4", "--threads", "2"])
    expected = {
        "ablation_sweep", "attribution_patching", "per_example", "per_example_vs_probe",
        "gram_throughput", "cached_forward", "peak_memory_gb",
        "per_example_einsum_ms_per_read", "per_example_vmap_ms_per_read",
        "per_example_loop_ms_per_read",
    }  # fmt: skip
    assert set(out) == expected
    assert all(math.isfinite(v) and v > 0 for v in out.values())
    assert "target <= 0.4" in capsys.readouterr().out
