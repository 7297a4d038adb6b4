"""A spec's `run` path and `runs` glob are found from the spec file's directory upward (the
first directory from which the path names something wins, as git finds `.git`), so a spec runs
the same from any working directory; and a run in a log (stdout not a terminal) prints its
progress as plain lines on stderr."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypodsl.cli import main
from hypodsl.cli_common import UsageError
from hypodsl.cli_run import compile_for_run
from runner.report import terminal

SPEC = """study "paths"
{run}
probe iid = split test_iid n 16 seed 0

claim low_loss "The final loss is below 5.5" {{
  at final on iid: loss < 5.5
}}
"""


@pytest.fixture
def project(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """project/runs/tiny (the tiny run), project/specs/sub/; the working directory elsewhere."""
    (tmp_path / "project" / "runs").mkdir(parents=True)
    (tmp_path / "project" / "runs" / "tiny").symlink_to(tiny_run)
    (tmp_path / "project" / "specs" / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    return tmp_path / "project"


def write_spec(project: Path, run_line: str) -> Path:
    spec = project / "specs" / "sub" / "paths.hyp"
    spec.write_text(SPEC.format(run=run_line))
    return spec


def test_a_run_path_is_found_from_the_spec_directory_upward(project: Path):
    spec = write_spec(project, 'run tiny = "runs/tiny"')
    assert compile_for_run(spec, None)[1] == [project / "runs" / "tiny"]
    # a nearer directory that holds the path wins, even when it is no run: no second guess
    (project / "specs" / "runs" / "tiny").mkdir(parents=True)
    with pytest.raises(UsageError, match=r"specs/runs/tiny/signature.json: no signature.json"):
        compile_for_run(spec, None)


def test_a_runs_glob_is_found_from_the_spec_directory_upward(project: Path):
    (project / "runs" / "seed-1").symlink_to(project / "runs" / "tiny")
    (project / "runs" / "seed-2").symlink_to(project / "runs" / "tiny")
    spec = write_spec(project, 'runs seeds = "runs/seed-*"')
    found = compile_for_run(spec, None)[1]
    assert found == [project / "runs" / "seed-1", project / "runs" / "seed-2"]


def test_a_run_found_nowhere_is_one_line_exit_2(project: Path, capsys):
    spec = write_spec(project, 'run gone = "runs/gone"')
    assert main(["run", str(spec), "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {spec}: `run gone`: no 'runs/gone' in {spec.parent}/ or any directory above it\n"
    )


def test_a_spec_runs_from_another_directory_and_logs_its_progress(
    project: Path, capsys, monkeypatch: pytest.MonkeyPatch
):
    """stdout captured (not a terminal): no bars, but each phase's lines on stderr (every
    line: the interval, and the silence a quick run keeps, set to 0 s)."""
    monkeypatch.setattr(terminal, "LOG_INTERVAL_S", 0.0)
    spec = write_spec(project, 'run tiny = "runs/tiny"')
    assert main(["run", str(spec), "--cache-dir", str(project / "cache")]) == 0
    captured = capsys.readouterr()
    assert "low_loss" in captured.out and "Supported" in captured.out
    lines = captured.err.splitlines()
    for phase in ("hash checkpoints", "measure checkpoints", "judge claims"):
        started = [x for x in lines if x.startswith(f"{phase}: 0/")]
        ended = [x for x in lines if x.startswith(f"{phase}: ") and " done in " in x]
        assert len(started) == len(ended) == 1, (phase, captured.err)
    assert "\x1b" not in captured.err and phase not in captured.out
