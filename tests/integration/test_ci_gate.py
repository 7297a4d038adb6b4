"""The CI scenario, end to end on the tiny run: a baseline is recorded, a claim's expectation
changes, and the gate fails naming the claim, through `hypo run --baseline` and through
`pytest specs/` (the plugin, driven by pytester)."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hypodsl.cli import main
from runner.model.checkpoints import weights_path
from runner.model.rundir import read_config

SPEC = """study "tiny gate"
run tiny = "{run}"
mark tinyspec
probe iid = split test_iid n 48 seed 0
window every = 0 ..

claim low_loss "The final loss is below 5.5" {{
  at final on iid: loss < 5.5
}}
claim accurate "The tiny model solves the task" {{
  at final on iid: accuracy > 0.9
}}
claim trend "Loss falls across training" {{
  over every (trend) on iid: loss < 0
}}
claim next_one "A claim for later" pending
"""


@pytest.fixture
def project(tiny_run: Path, tmp_path: Path) -> Path:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "tiny.hyp").write_text(SPEC.format(run=tiny_run))
    # a file of shared declarations: no claims, so neither `hypo run specs/` nor pytest runs it
    (tmp_path / "specs" / "shared.hyp").write_text("probe iid = split test_iid n 8\n")
    return tmp_path


def gate(project: Path, *extra: str) -> int:
    """`hypo run specs/ --baseline baseline.json ...`: every spec under the directory."""
    specs = str(project / "specs")
    return main(["run", specs, "--baseline", str(project / "baseline.json"), *extra])


def change_expectation(project: Path) -> None:
    spec = project / "specs" / "tiny.hyp"
    text = spec.read_text()
    spec.write_text(
        text.replace(
            '"The final loss is below 5.5" {', '"The final loss is below 5.5" expect negative {'
        )
    )


def test_the_cli_gate(project: Path, capsys):
    assert gate(project) == 2  # no baseline yet: a usage error that says how to record one
    assert "--update-baseline" in capsys.readouterr().err
    assert gate(project, "--update-baseline") == 0
    recorded = json.loads((project / "baseline.json").read_text())["specs"]["tiny"]
    assert recorded == {"low_loss": "supported", "accurate": "negative", "trend": "unsupported"}
    capsys.readouterr()
    assert gate(project) == 0  # every verdict as recorded

    change_expectation(project)
    assert gate(project) == 1
    captured = capsys.readouterr()
    assert "Regressions" in captured.out and "low_loss" in captured.out
    assert "1 claim(s) regressed: low_loss" in captured.err
    # updating the baseline cannot satisfy an `expect`
    assert gate(project, "--update-baseline") == 1


def test_unsupported_to_supported_passes_with_a_notice_and_back_fails(project: Path, capsys):
    baseline = project / "baseline.json"
    assert gate(project, "--update-baseline") == 0
    data = json.loads(baseline.read_text())
    data["specs"]["tiny"]["low_loss"] = "unsupported"
    baseline.write_text(json.dumps(data))
    capsys.readouterr()
    assert gate(project) == 0
    assert "notice: low_loss: Unsupported in the baseline, Supported now" in " ".join(
        capsys.readouterr().out.split()
    )
    data["specs"]["tiny"]["trend"] = "supported"  # now Unsupported: never silently
    baseline.write_text(json.dumps(data))
    assert gate(project) == 1
    assert "trend" in capsys.readouterr().err


def test_a_claim_that_cannot_be_evaluated_fails_the_gate_and_is_never_recorded(
    project: Path, tiny_run: Path, capsys
):
    """A corrupt final checkpoint: the claims that read it are not evaluable, which is no
    verdict: the gate fails on them, with or without --update-baseline, and keeps what the
    baseline recorded for them."""
    assert gate(project, "--update-baseline") == 0
    run = project / "run"
    shutil.copytree(tiny_run, run)
    final = weights_path(run, read_config(run).steps)
    final.write_bytes(final.read_bytes()[:-100])
    spec = project / "specs" / "tiny.hyp"
    spec.write_text(spec.read_text().replace(str(tiny_run), str(run)))
    before = (project / "baseline.json").read_text()
    capsys.readouterr()
    assert gate(project) == 1
    captured = capsys.readouterr()
    assert "Not evaluable" in captured.out
    assert "3 claim(s) not evaluable: low_loss, accurate, trend" in captured.err
    assert gate(project, "--update-baseline") == 1
    assert (project / "baseline.json").read_text() == before


def test_spec_errors_exit_2_before_anything_runs(project: Path, capsys):
    bad = project / "specs" / "bad.hyp"
    bad.write_text('study "bad"\nclaim x "y" {\n  at final: accuracy >\n}\n')
    assert main(["run", str(project / "specs" / "tiny.hyp"), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.hyp:4:1" in err and "Traceback" not in err
    (project / "baseline.json").write_text("{not json")
    assert gate(project) == 2
    assert "baseline.json:1:2: not JSON" in capsys.readouterr().err


def test_verbose_run_shows_the_claims_as_written(project: Path, capsys):
    assert main(["run", str(project / "specs" / "tiny.hyp"), "-v"]) == 0
    out = capsys.readouterr().out
    assert '7 claim low_loss "The final loss is below 5.5" {' in out
    assert "line 8: at final on iid: loss < 5.5" in out
    assert "Next test" in out and "time" in out


def run_pytest(pytester: pytest.Pytester, project: Path, *args: str) -> pytest.RunResult:
    pytester.chdir()
    pytester.makeini("[pytest]\nmarkers =\n    tinyspec: the tiny spec\n")
    (pytester.path / "specs").mkdir(exist_ok=True)
    for spec in (project / "specs").glob("*.hyp"):
        (pytester.path / "specs" / spec.name).write_text(spec.read_text())
    return pytester.runpytest("specs/", "-p", "no:cacheprovider", *args)


def test_the_same_scenario_through_pytest(pytester: pytest.Pytester, project: Path):
    baseline = str(project / "baseline.json")
    assert gate(project, "--update-baseline") == 0
    result = run_pytest(pytester, project, "--hypo-baseline", baseline, "-v")
    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines(["specs/tiny.hyp::low_loss PASSED*", "*next_one SKIPPED*"])
    # without a baseline a claim is expected Supported: the Negative and Unsupported ones fail
    run_pytest(pytester, project).assert_outcomes(passed=1, failed=2, skipped=1)

    change_expectation(project)
    result = run_pytest(pytester, project, "--hypo-baseline", baseline)
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            '*specs/tiny.hyp:7: claim low_loss "The final loss is below 5.5"',
            "verdict: Supported, expected Negative (by its `expect`)",
            "*specs/tiny.hyp:8: at final on iid: loss < 5.5",
            "*Supported: estimate * right side 5.5, n *",
            "FAILED specs/tiny.hyp::low_loss*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_pytest_selection_marks_and_junitxml(pytester: pytest.Pytester, project: Path):
    cache = pytester.path / "cache"
    result = run_pytest(
        pytester, project, "-k", "low_loss", "--junitxml=out.xml", "--hypo-cache-dir", str(cache)
    )
    result.assert_outcomes(passed=1)
    assert list(cache.rglob("*.entry"))  # measurements go to the cache `hypo run` shares
    cases = ET.parse(pytester.path / "out.xml").getroot().iter("testcase")
    assert [c.get("name") for c in cases] == ["low_loss"]
    run_pytest(pytester, project, "-m", "not tinyspec").assert_outcomes(deselected=4)
    run_pytest(pytester, project, "-m", "tinyspec", "-k", "next_one").assert_outcomes(skipped=1)


def test_pytest_reports_spec_errors_at_collection(pytester: pytest.Pytester, project: Path):
    result = run_pytest(pytester, project, "--hypo-run", "nowhere")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # as `hypo run --run nowhere`: exit 2
    result.stderr.fnmatch_lines(["ERROR: --hypo-run nowhere: no such run directory"])
    spec = project / "specs" / "tiny.hyp"
    spec.write_text('study "x"\nclaim c "y" {\n  at final: loss <\n}\n')
    result = run_pytest(pytester, project)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*specs/tiny.hyp:4:1*"])
    assert "Traceback" not in result.stdout.str()


def test_a_spec_whose_run_is_missing_fails_only_its_own_claims(
    pytester: pytest.Pytester, project: Path
):
    """Its run is a one-line failure of each of its claims (its pending one still skips);
    the session goes on, and the other spec's claims run and pass."""
    (project / "specs" / "gone.hyp").write_text(
        'study "gone"\nrun gone = "runs/gone"\nprobe iid = split test_iid n 8\n'
        'claim a "t" {\n  at final on iid: loss < 5.5\n}\n'
        'claim b "u" {\n  at final on iid: loss < 6\n}\nclaim later "v" pending\n'
    )
    result = run_pytest(pytester, project, "-k", "not accurate and not trend", "-v")
    result.assert_outcomes(passed=1, failed=2, skipped=2)
    reason = "specs/gone.hyp: `run gone`: no 'runs/gone' in specs/ or any directory above it"
    result.stdout.fnmatch_lines(["*specs/tiny.hyp::low_loss PASSED*"], consecutive=False)
    assert result.stdout.str().count(reason) >= 2  # once per failed claim
    result.stdout.fnmatch_lines(["FAILED specs/gone.hyp::a*", "FAILED specs/gone.hyp::b*"])
    assert "Traceback" not in result.stdout.str() and "Interrupted" not in result.stdout.str()
