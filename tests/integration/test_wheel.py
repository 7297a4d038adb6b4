"""The wheel carries the grammar: built from the repo, installed in a fresh virtual environment
(without torch: `hypo check` needs none), it checks the bundled specs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from benchmarks.parse_check import generate
from hypodsl.compiler import compile_spec
from hypodsl.parser import parse

ROOT = Path(__file__).resolve().parents[2]


def run(*cmd: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, check=False, timeout=600
    )


@pytest.mark.slow
def test_an_installed_wheel_checks_the_specs(tmp_path: Path):
    built = run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        ROOT,
        "--no-deps",
        "-w",
        tmp_path / "dist",
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("hypodsl-*.whl")
    assert "hypodsl/grammar/hyp.lark" in zipfile.ZipFile(wheel).namelist()

    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv, cwd=tmp_path).returncode == 0
    pip = venv / "bin" / "pip"
    installed = run(pip, "install", "--quiet", "--no-deps", wheel, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-2000:]
    deps = run(pip, "install", "--quiet", "lark", "pydantic", "rich", cwd=tmp_path)
    assert deps.returncode == 0, deps.stderr[-2000:]

    specs = sorted((ROOT / "specs").glob("*.hyp"))
    checked = run(venv / "bin" / "hypo", "check", *specs, cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "retrieval.hyp: ok (10 claims)" in checked.stdout
    where = run(
        venv / "bin" / "python",
        "-c",
        "import hypodsl.parser as p; print(p.grammar_path())",
        cwd=tmp_path,
    )
    assert str(venv) in where.stdout  # the grammar came from the wheel, not the source tree


def test_the_benchmark_spec_compiles():
    text = generate(30)
    plan = compile_spec(parse(text, "generated.hyp"), text)
    assert len(plan.claims) == 30
