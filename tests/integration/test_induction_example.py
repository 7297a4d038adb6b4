"""The induction example in small form: examples/induction/train_gpt2.py trains a GPT-2 with
transformers for 50 steps, `hypo import --task` reads its series, and specs/induction.hyp runs
on it end to end (the full run is `make induction`; its ledger is reports/induction.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hypodsl.cli import main

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("induction")
    script = ROOT / "examples" / "induction" / "train_gpt2.py"
    argv = [sys.executable, str(script), "--out", str(out), "--steps", "50", "--every", "25",
            "--threads", "1"]  # fmt: skip
    subprocess.run(argv, check=True, capture_output=True, timeout=600)
    return out


def test_the_example_roles_point_where_their_names_say(example: Path):
    for line in (example / "task" / "test.jsonl").read_text().splitlines()[:64]:
        record = json.loads(line)
        tokens = record["tokens"]
        assert record["examples"]
        for ex in record["examples"]:
            i, roles = ex["position"], ex["roles"]
            assert tokens[roles["earlier"]] == tokens[i] and roles["earlier"] < i
            assert tokens[roles["after_earlier"]] == ex["target"] == tokens[i + 1]
            assert roles["after_earlier"] == roles["earlier"] + 1 == roles["three_after"] - 2
            assert roles["three_after"] <= i and roles["previous"] == i - 1
            assert tokens.count(tokens[i]) == 2  # the earlier occurrence is the only one


def test_the_induction_spec_runs_on_the_imported_series(example: Path, tmp_path: Path):
    run = tmp_path / "run"
    assert main(["import", str(example / "checkpoints"), "--task", str(example / "task"),
                 "--out", str(run)]) == 0  # fmt: skip
    spec = ROOT / "specs" / "induction.hyp"
    assert main(["check", str(spec), "--run", str(run)]) == 0
    report = tmp_path / "report"
    code = main(["run", str(spec), "--run", str(run), "--report", str(report), "--no-cache",
                 "--no-figures", "--threads", "1"])  # fmt: skip
    assert code in (0, 1)  # 1: 50 steps do not give the full run's verdicts
    claims = json.loads((report / "induction.json").read_text())["claims"]
    assert len(claims) == 10
    assert all(c["verdict"] in ("supported", "negative", "unsupported") for c in claims)
    by_name = {c["name"]: c["verdict"] for c in claims}
    assert by_name["chance_at_start"] == "supported"
