"""Output locations and numeric options are checked before anything is measured or trained."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from hypodsl.cli import main

SPEC = """study "outputs"
probe iid = split test_iid n 48 seed 0
claim learns "x" { at final on iid: loss < 100 }
"""


def cli(*args: str | Path) -> tuple[int, str]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's usage errors
            code = int(e.code or 0)
    return code, buffer.getvalue()


@pytest.fixture
def blocker(tmp_path: Path) -> Path:
    """A regular file: no directory can be made under it, even by root."""
    path = tmp_path / "a-file"
    path.write_text("not a directory")
    return path


def test_unwritable_report_and_cache_dirs_fail_before_measuring(tiny_run, tmp_path, blocker):
    spec = tmp_path / "outputs.hyp"
    spec.write_text(SPEC)
    run = ["run", spec, "--run", tiny_run]
    for extra, flag in (
        (["--report", blocker / "reports"], "--report"),
        (["--cache-dir", blocker / "cache"], "--cache-dir"),
    ):
        code, output = cli(*run, *extra)
        assert code == 2, output
        assert f"{flag} {blocker}" in output and "cannot write there" in output
        assert "measurements (" not in output and "Traceback" not in output


def test_an_unwritable_cache_from_the_environment_fails_early(
    tiny_run, tmp_path, blocker, monkeypatch
):
    spec = tmp_path / "outputs.hyp"
    spec.write_text(SPEC)
    monkeypatch.setenv("HYPODSL_CACHE", str(blocker / "cache"))
    code, output = cli("run", spec, "--run", tiny_run)
    assert code == 2 and "cannot write there" in output and "--no-cache" in output


def test_train_data_and_schema_outputs_fail_early(blocker):
    for args in (
        ["train", "--config", "tiny", "--out", blocker / "run"],
        ["data", "generate", "--out", blocker / "data"],
        ["schema", "--out", blocker / "sub" / "schema.json"],
    ):
        code, output = cli(*args)
        assert code == 2 and "--out" in output and "cannot write there" in output, output


@pytest.mark.parametrize(
    "args",
    [
        ["--threads", "0"], ["--threads", "-2"], ["--threads", "two"], ["--seed", "-1"],
        ["--seed", "9" * 30], ["--jobs", "0"],
    ],
)  # fmt: skip
def test_bad_numeric_options_are_usage_errors(tiny_run, tmp_path, args):
    spec = tmp_path / "outputs.hyp"
    spec.write_text(SPEC)
    code, output = cli("run", spec, "--run", tiny_run, *args)
    assert code == 2 and "Traceback" not in output, output


def test_a_missing_run_directory_is_a_usage_error(tmp_path):
    spec = tmp_path / "outputs.hyp"
    spec.write_text(SPEC)
    code, output = cli("run", spec, "--run", tmp_path / "no-such-run")
    assert code == 2 and "no such run directory" in output
