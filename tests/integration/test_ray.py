"""`--executor ray`: a study's checkpoints and a seed matrix's trainings as Ray tasks, on a local
instance with 2 CPUs. The results JSON is byte-identical to the local executor's; a worker killed
mid-task is retried and the study completes; an unreachable cluster is a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hypodsl.cli import main
from runner.engine.ray_executor import KILL_ONCE

ray = pytest.importorskip("ray")

SPEC = """study "ray"
probe iid = split test_iid n 24 seed 0
path l0h0 = L0.H0 -> unembed
claim acc "accuracy" { at final on iid: accuracy > 0.1 }
claim look "attention" { at final on iid: attention(L1.H0, from=answer, to=match_value) > 0.2 }
claim ablate "ablation" { at final on iid: accuracy with ablate(L1.H0, mean) < accuracy }
claim align "alignment" { at 40 on iid: alignment(l0h0) > 0 }
window every = 0 ..
claim trend "a trend" { over every (trend) on iid: loss < 0 }
"""


@pytest.fixture
def local_ray():
    """A fresh local Ray instance per test (the kill test needs its environment at start)."""
    yield
    if ray.is_initialized():
        ray.shutdown()


def run_json(spec: Path, run: Path, out: Path, *extra: str) -> bytes:
    argv = ["run", str(spec), "--run", str(run), "--report", str(out), "--no-cache",
            "--no-figures", "--threads", "1", *extra]  # fmt: skip
    assert main(argv) == 0
    (found,) = out.glob("*.json")
    return found.read_bytes()


def test_ray_gives_the_local_results_byte_for_byte(tiny_run: Path, tmp_path, local_ray):
    spec = tmp_path / "ray.hyp"
    spec.write_text(SPEC)
    local = run_json(spec, tiny_run, tmp_path / "local")
    on_ray = run_json(spec, tiny_run, tmp_path / "ray", "--executor", "ray")
    assert on_ray == local
    assert len(json.loads(local)["claims"]) == 5


def test_a_killed_worker_is_retried_and_the_study_completes(
    tiny_run: Path, tmp_path, local_ray, monkeypatch
):
    spec = tmp_path / "ray.hyp"
    spec.write_text(SPEC)
    marker = tmp_path / "killed"
    local = run_json(spec, tiny_run, tmp_path / "local")
    monkeypatch.setenv(KILL_ONCE, str(marker))
    cache = tmp_path / "cache"
    argv = ["run", str(spec), "--run", str(tiny_run), "--report", str(tmp_path / "ray"),
            "--no-figures", "--threads", "1", "--executor", "ray",
            "--cache-dir", str(cache)]  # fmt: skip
    assert main(argv) == 0
    assert marker.exists()  # a worker did die
    assert (tmp_path / "ray" / "ray.json").read_bytes() == local
    # the cache it wrote is valid: a local run reads everything from it and agrees
    monkeypatch.delenv(KILL_ONCE)
    again = ["run", str(spec), "--run", str(tiny_run), "--report", str(tmp_path / "again"),
             "--no-figures", "--threads", "1", "--cache-dir", str(cache)]  # fmt: skip
    assert main(again) == 0
    assert (tmp_path / "again" / "ray.json").read_bytes() == local


def test_a_seed_matrix_trains_on_ray(tiny_run: Path, tmp_path, local_ray, capsys):
    out = tmp_path / "seeds"
    argv = ["train", "--config", "tiny", "--seeds", "0..2", "--data", str(tiny_run / "data"),
            "--out", str(out), "--threads", "1", "--executor", "ray"]  # fmt: skip
    assert main(argv) == 0
    for seed in range(3):
        assert (out / f"seed-{seed}" / "checkpoints" / "step_000060.safetensors").is_file()
    assert "3 seeds trained" in capsys.readouterr().out
    # a Ray task trains exactly what the local executor trains with the same threads
    local = tmp_path / "local"
    argv = ["train", "--config", "tiny", "--seeds", "1..1", "--data", str(tiny_run / "data"),
            "--out", str(local), "--threads", "1", "--executor", "local"]  # fmt: skip
    assert main(argv) == 0
    final = Path("checkpoints") / "step_000060.safetensors"
    assert (out / "seed-1" / final).read_bytes() == (local / "seed-1" / final).read_bytes()


def test_an_unreachable_cluster_is_a_one_line_error(tiny_run: Path, tmp_path, capsys):
    spec = tmp_path / "ray.hyp"
    spec.write_text(SPEC)
    argv = ["run", str(spec), "--run", str(tiny_run), "--no-cache", "--executor", "ray",
            "--ray-address", "127.0.0.1:9"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--ray-address 127.0.0.1:9: no Ray cluster reachable there" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not ray.is_initialized()
