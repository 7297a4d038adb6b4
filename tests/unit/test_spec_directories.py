"""`hypo check DIR` and `hypo fmt DIR` take a directory as `hypo run DIR` and `pytest DIR` do:
every `.hyp` file below it, sorted (cli_common.expand_specs, the one expansion), files of shared
declarations included; a bad directory is one line and exit 2."""

from __future__ import annotations

from pathlib import Path

from hypodsl.cli import main

SPECS = Path(__file__).resolve().parents[2] / "specs"
CLAIM = (
    'study "s"\n\nprobe iid = split test_iid n 8\n\nclaim a "t" {\n  at final on iid: loss < 5\n}\n'
)


def project(tmp_path: Path) -> Path:
    specs = tmp_path / "specs"
    (specs / "sub").mkdir(parents=True)
    (specs / "b.hyp").write_text(CLAIM)
    (specs / "sub" / "a.hyp").write_text(CLAIM)
    (specs / "shared.hyp").write_text("probe iid = split test_iid n 8\n")  # no claims
    (specs / "notes.txt").write_text("not a spec")
    return specs


def test_check_takes_the_bundled_specs_directory(capsys):
    assert main(["check", str(SPECS)]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok (") == len(list(SPECS.rglob("*.hyp")))
    assert "kv_paths.hyp: ok (0 claims)" in out  # shared declarations are fine
    assert main(["fmt", "--check", str(SPECS)]) == 0


def test_check_lists_every_spec_below_a_directory_sorted(tmp_path: Path, capsys):
    specs = project(tmp_path)
    assert main(["check", str(specs)]) == 0
    names = [line.split(": ok")[0] for line in capsys.readouterr().out.splitlines()]
    assert names == [str(specs / "b.hyp"), str(specs / "shared.hyp"), str(specs / "sub/a.hyp")]


def test_check_of_a_directory_reports_its_bad_spec(tmp_path: Path, capsys):
    specs = project(tmp_path)
    (specs / "sub" / "bad.hyp").write_text('study "x"\nclaim c "y" {\n  at final: loss <\n}\n')
    assert main(["check", str(specs)]) == 2
    captured = capsys.readouterr()
    assert "sub/bad.hyp:4:1" in captured.err and "Traceback" not in captured.err
    assert "b.hyp: ok" in captured.out  # the others are still checked


def test_fmt_check_and_fmt_of_a_directory(tmp_path: Path, capsys):
    specs = project(tmp_path)
    messy = specs / "sub" / "a.hyp"
    messy.write_text(CLAIM.replace("probe iid", "probe   iid"))
    assert main(["fmt", "--check", str(specs)]) == 1
    assert capsys.readouterr().out.strip() == f"would reformat {messy}"
    assert main(["fmt", str(specs)]) == 0
    assert messy.read_text() == CLAIM
    assert main(["fmt", "--check", str(specs)]) == 0


def test_a_directory_without_specs_is_one_line_exit_2(tmp_path: Path, capsys):
    (tmp_path / "empty").mkdir()
    for command in (["check"], ["fmt", "--check"], ["fmt"]):
        assert main([*command, str(tmp_path / "empty")]) == 2
        err = capsys.readouterr().err
        assert err.strip() == f"error: {tmp_path / 'empty'}: no .hyp files in this directory"
