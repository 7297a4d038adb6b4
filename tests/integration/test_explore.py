"""`hypo explore`: a quantity at every checkpoint, the values a study measures, as a table, a
sparkline, a CSV and a figure; bad quantities are one line naming the argument."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from hypodsl.cli import main
from hypodsl.compiler import compile_spec
from hypodsl.parser import parse
from runner.engine.explore import explore
from runner.engine.study import run_study
from runner.model.checkpoints import list_steps
from runner.report.explore import sparkline


def test_a_sparkline_spans_the_values_and_leaves_gaps():
    assert sparkline([0.0, 0.5, 1.0]) == "▁▅█"
    assert sparkline([2.0, None, 2.0]) == "▁ ▁"
    assert sparkline([None]) == " "


def test_explored_values_are_those_a_claim_measures(tiny_run: Path, tmp_path: Path):
    quantity = "attention(L1.H0, from=answer, to=match_value)"
    (result,) = explore(tiny_run, [quantity], split="val_iid", n=32, cache_dir=tmp_path)
    explored = result.trajectory
    assert [pt.step for pt in explored.points] == list_steps(tiny_run)
    text = (
        'study "s"\nprobe pick = split val_iid n 32 seed 0\n'
        f'claim c "x" {{ at 20 on pick: {quantity} > 0 }}\n'
    )
    claim = run_study(compile_spec(parse(text, "s.hyp"), text, None), [tiny_run]).claims[0]
    at_20 = next(pt for pt in explored.points if pt.step == 20)
    assert at_20.estimate == claim.predictions[0].estimate
    # the same bootstrap, drawn jointly over the checkpoints here: another draw of one interval
    ours, theirs = at_20.interval, claim.predictions[0].interval
    assert ours is not None and theirs is not None
    width = theirs.high - theirs.low
    assert abs(ours.low - theirs.low) < width / 4 and abs(ours.high - theirs.high) < width / 4


def test_hypo_explore_prints_and_writes(tiny_run: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    args = ["explore", "accuracy", "loss", "--run", str(tiny_run), "--n", "32", "--out", str(out)]
    assert main([*args, "--cache-dir", str(tmp_path / "cache")]) == 0
    printed = capsys.readouterr().out
    assert "discovery probe" in printed and any(c in printed for c in "▁█")
    rows = list(csv.reader((out / "explore.csv").read_text().splitlines()))
    assert rows[0][:4] == ["step", "accuracy", "accuracy low", "accuracy high"]
    assert [int(r[0]) for r in rows[1:]] == list_steps(tiny_run)
    assert (out / "explore.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("argument", "said"),
    [
        ("attention(L9.H0, from=answer, to=match_value)", "quantity 1 `attention(L9.H0"),
        ('accuracy } claim x "y" {', "one expression"),
        ("accuracy with ablate(L0.H0)", "write `ablate(TARGET"),
    ],
)
def test_a_bad_quantity_is_one_line_naming_it(tiny_run: Path, capsys, argument, said):
    assert main(["explore", argument, "--run", str(tiny_run), "--n", "32"]) == 2
    err = capsys.readouterr().err.strip()
    assert said in err and "\n" not in err and "Traceback" not in err


def test_a_probe_larger_than_its_split_names_the_options(tiny_run: Path, capsys):
    assert main(["explore", "accuracy", "--run", str(tiny_run), "--n", "100000"]) == 2
    assert "--split / --n: split `val_iid` has 128 sequences" in capsys.readouterr().err
