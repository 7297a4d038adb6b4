"""One claim end to end: spec -> plan -> measurements -> bootstrap -> verdict -> report."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hypodsl.cli import main
from hypodsl.compiler import compile_spec
from hypodsl.parser import parse
from runner.engine.study import load_probes, run_plan
from runner.kv.roles import reads_of_sequence
from runner.model.checkpoints import load_model, weights_path
from runner.model.rundir import read_config, read_signature
from runner.report.ledger import render_markdown

SPEC = """study "tiny end to end"
probe iid = split test_iid n 64 seed 0
claim chance "An untrained model never names the answer" {
  at first on iid: accuracy < 0.05
}
claim solved "The tiny run solves the task" {
  at final on iid: accuracy > 0.9
}
claim missing "A step with no checkpoint" {
  at 50 on iid: accuracy > 0.9
}
claim loss_fell "Training lowered the answer loss" {
  at final on iid: loss < 6
  at 20 on iid: loss > 1
}
"""


def plan_for(run: Path, text: str = SPEC):
    return compile_spec(parse(text, "tiny.hyp"), text, None)


def test_true_false_and_missing_claims_get_their_verdicts(tiny_run: Path):
    result = run_plan(plan_for(tiny_run), tiny_run)
    verdicts = {c.name: c.verdict for c in result.claims}
    assert verdicts == {
        "chance": "supported",
        "solved": "negative",
        "missing": "unsupported",
        "loss_fell": "supported",
    }
    missing = next(c for c in result.claims if c.name == "missing")
    assert "not evaluable" in missing.reason and "step 50" in missing.reason
    assert missing.status == "not evaluable" and not missing.evaluable
    assert all(c.evaluable for c in result.claims if c.name != "missing")


def test_accuracy_matches_an_independent_computation(tiny_run: Path):
    plan = plan_for(tiny_run)
    result = run_plan(plan, tiny_run)
    probe = load_probes(tiny_run, [plan.probe("iid")])["iid"]
    model = load_model(tiny_run, read_config(tiny_run).steps, read_config(tiny_run).model)
    correct = []
    with torch.no_grad():
        for seq in probe.tokens:
            logits = model(torch.as_tensor(seq)[None])[0]
            for read in reads_of_sequence(seq):
                correct.append(int(logits[read["answer"]].argmax()) == read["target"])
    solved = next(c for c in result.claims if c.name == "solved").predictions[0]
    assert solved.estimate == pytest.approx(np.mean(correct), abs=1e-12)
    assert solved.n == len(correct) and solved.n_sequences == 64


def test_a_corrupt_checkpoint_makes_only_its_claims_unsupported(tiny_run: Path, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    path = weights_path(run, 60)
    path.write_bytes(path.read_bytes()[:-100])
    result = run_plan(plan_for(run), run)
    by_name = {c.name: c for c in result.claims}
    assert by_name["solved"].verdict == "unsupported"
    assert "corrupt checkpoint" in by_name["solved"].reason
    assert by_name["solved"].status == "not evaluable"
    assert by_name["chance"].verdict == "supported"


def test_results_are_deterministic_and_the_report_renders(tiny_run: Path):
    a = run_plan(plan_for(tiny_run), tiny_run)
    b = run_plan(plan_for(tiny_run), tiny_run)
    assert a.model_dump_json() == b.model_dump_json()
    md = render_markdown(a)
    assert md.startswith("# tiny end to end")
    assert "| [solved](#solved) | Negative result | **Negative** |" in md
    assert "not evaluable" in md and "Provenance" in md


def test_cli_run_writes_reports_and_checks_against_the_signature(
    tiny_run: Path, tmp_path: Path, capsys
):
    spec = tmp_path / "tiny.hyp"
    spec.write_text(SPEC.replace("at 50", "at 40"))
    assert main(["run", str(spec), "--run", str(tiny_run), "--report", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "tiny.md").exists() and (tmp_path / "rep" / "tiny.json").exists()
    assert "Negative" in capsys.readouterr().out
    spec.write_text(SPEC)  # step 50 has no checkpoint: caught by the signature before running
    assert main(["run", str(spec), "--run", str(tiny_run)]) == 2
    assert "no checkpoint at step 50; the nearest is 40" in capsys.readouterr().err
    assert 50 not in read_signature(tiny_run)["checkpoints"]


def test_cli_exits_1_when_a_verdict_differs_from_its_expectation(tiny_run: Path, tmp_path: Path):
    spec = tmp_path / "expect.hyp"
    text = SPEC.replace("at 50", "at 40")
    spec.write_text(text.replace('"The tiny run solves the task"', '"x" expect supported'))
    assert main(["run", str(spec), "--run", str(tiny_run)]) == 1


def test_a_patch_from_a_smaller_probe_says_so_in_one_short_reason(tiny_run: Path):
    text = """study "patch sizes"
probe iid = split test_iid n 48 seed 0
probe small = split heldout n 16 seed 0
claim p "x" {
  at final on iid: margin with patch(L1.H0, from=small) < 100
}
"""
    (claim,) = run_plan(compile_spec(parse(text, "p.hyp"), text, None), tiny_run).claims
    assert claim.status == "not evaluable"
    assert "probe `small` has 16 sequences; the probe patched has 48" in claim.reason
    assert len(claim.reason) < 300 and "tensor(" not in claim.reason
