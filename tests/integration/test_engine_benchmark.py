"""benchmarks/engine.py runs (a small form on the tiny run; the full one is in the notes)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks import engine

SPEC = """study "benchmark, small form"
probe iid = split test_iid n 32 seed 0
window every = 0 ..
path direct = L1.H0 -> unembed
claim a "accuracy over training" { over every (mean) on iid: accuracy >= 0 }
claim b "attention at the end" {
  at final on iid: attention(L1.H0, from=answer, to=match_value) >= 0
}
claim c "alignment at 20" { at 20 on iid: alignment(direct) > -1000 }
"""


@pytest.mark.slow
def test_the_engine_benchmark_reports_every_ratio(tiny_run: Path, tmp_path: Path, capsys):
    spec = tmp_path / "bench.hyp"
    spec.write_text(SPEC)
    out = engine.main(["--run", str(tiny_run), "--spec", str(spec), "--repeats", "1"])
    assert set(out) == {
        "study_vs_costliest_claim", "warm_vs_cold", "jobs2_vs_jobs1", "study_vs_floor",
    }  # fmt: skip
    assert all(math.isfinite(v) and v > 0 for v in out.values())
    # A warm run reads everything from the cache: far cheaper than measuring.
    assert out["warm_vs_cold"] < 0.5
    printed = capsys.readouterr().out
    assert "cold study vs its floor" in printed and "single claims, cold" in printed
