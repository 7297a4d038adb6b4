"""Hostile command-line arguments: a one-line error naming the argument, exit 2, before any
work — never a MemoryError (`--seeds 0..99999999999`), a traceback, a device file replaced
(`hypo schema --out /dev/null` as root), or a walk of the whole disk for a `runs` glob."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypodsl.cli import main
from hypodsl.compiler import compile_spec
from hypodsl.parser import parse
from runner.engine import run_globs
from runner.model.rundir import RunError


def one_line_error(capsys, args: list[str]) -> str:
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2, (code, err)
    assert "Traceback" not in err and "\x1b" not in err, err
    return lines[-1]


@pytest.mark.parametrize(
    "seeds",
    ["0..99999999999", "0..1000", "5..4", "-3..2", "0,0", "1,-1", "x..y", "", ",",
     "0.." + "9" * 5000, "0,9223372036854775808", ",".join(map(str, range(1001)))],
    ids=["huge", "1001", "reversed", "negative", "duplicate", "negative-list", "words", "empty",
         "comma", "too-many-digits", "past-int64", "1001-listed"],
)  # fmt: skip
def test_seed_ranges_are_bounded(capsys, tmp_path, seeds):
    line = one_line_error(capsys, ["train", "--seeds", seeds, "--out", str(tmp_path / "t")])
    assert "--seeds" in line and not (tmp_path / "t").exists()


@pytest.mark.parametrize(
    "target, says",
    [
        ("/etc", "is a directory"),
        ("/", "is a directory"),
        ("/dev/null", "lies under /dev, /proc or /sys"),
        ("/dev/shm/schema.json", "lies under /dev, /proc or /sys"),
        ("/proc/self/environ", "lies under /dev, /proc or /sys"),
        ("/sys/kernel/x.json", "lies under /dev, /proc or /sys"),
    ],
)
def test_schema_out_refuses_places_that_take_no_file(capsys, target, says):
    line = one_line_error(capsys, ["schema", "--out", target])
    assert f"--out {target}" in line and says in line


def test_schema_out_refuses_a_link_to_a_device_and_a_fifo(capsys, tmp_path):
    import os

    link = tmp_path / "null.json"
    link.symlink_to("/dev/null")
    assert "lies under /dev" in one_line_error(capsys, ["schema", "--out", str(link)])
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert "not a regular file" in one_line_error(capsys, ["schema", "--out", str(fifo)])
    assert Path("/dev/null").is_char_device()


def test_schema_out_writes_an_ordinary_file(capsys, tmp_path):
    assert main(["schema", "--out", str(tmp_path / "s.json")]) == 0
    assert (tmp_path / "s.json").read_text().startswith("{")


@pytest.mark.parametrize(
    "args",
    [
        ["run", "x.hyp", "--report", "/proc/self"],
        ["run", "x.hyp", "--cache-dir", "/sys/x"],
        ["data", "generate", "--out", "/dev/shm/data"],
        ["train", "--config", "tiny", "--out", "/proc/x"],
    ],
)
def test_output_folders_under_system_roots_are_refused(capsys, args):
    assert "lies under /dev, /proc or /sys" in one_line_error(capsys, args)


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--seeds", "\x1b[2J"],
        ["train", "--threads", "\x1b]8;;http://x\x07"],
        ["run", "--jobs", "\x1b[31mred"],
        ["fmt", "a.hyp", "--bogus\x1b[2J"],
    ],
    ids=["seeds", "threads", "jobs", "flag"],
)
def test_usage_errors_quote_arguments_escaped(capsys, args):
    line = one_line_error(capsys, args)
    assert "\\x1b" in line


def plan_with_runs(pattern: str):
    text = (
        f'study "g"\nruns x = "{pattern}"\nprobe iid = split test_iid n 8 seed 0\n'
        'claim c "acc" {\n  at final on iid: accuracy > 0.5\n}\n'
    )
    return compile_spec(parse(text, "g.hyp"), text, None)


def make_runs(root: Path, names: list[str]) -> None:
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "config.json").write_text("{}")


def test_a_runs_glob_matches_run_directories_only(tmp_path):
    make_runs(tmp_path, ["seed-1", "seed-2", ".seed-3"])
    (tmp_path / "seed-x").mkdir()
    found = run_globs.matching_runs(plan_with_runs("seed-*"), tmp_path)
    assert [p.name for p in found] == ["seed-1", "seed-2"]


@pytest.mark.parametrize(
    "pattern, says",
    [
        ("/*/*/*/*/*/*/*/*", "reaches more than"),
        ("/proc/*", "no run directory matches"),
        ("/dev/*", "no run directory matches"),
        ("/sys/*/*", "no run directory matches"),
        ("nowhere-*", "no run directory matches"),
    ],
)
def test_a_hostile_runs_glob_is_one_error(tmp_path, monkeypatch, pattern, says):
    monkeypatch.setattr(run_globs, "MAX_SCANNED", 2000)
    with pytest.raises(RunError, match=says):
        run_globs.matching_runs(plan_with_runs(pattern), tmp_path)


def test_too_many_runs_are_refused(tmp_path, monkeypatch):
    make_runs(tmp_path, [f"seed-{i}" for i in range(5)])
    monkeypatch.setattr(run_globs, "MAX_RUNS", 4)
    with pytest.raises(RunError, match="matches 5 runs; at most 4"):
        run_globs.matching_runs(plan_with_runs("seed-*"), tmp_path)


def test_hypo_run_reports_a_runs_glob_in_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(run_globs, "MAX_SCANNED", 2000)
    spec = tmp_path / "g.hyp"
    spec.write_text(
        'study "g"\nruns x = "/*/*/*/*/*/*"\nprobe iid = split test_iid n 8 seed 0\n'
        'claim c "acc" {\n  at final on iid: accuracy > 0.5\n}\n'
    )
    line = one_line_error(capsys, ["run", str(spec), "--no-cache"])
    assert str(spec) in line and "`runs x`" in line
