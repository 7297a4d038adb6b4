"""Results files: the published schema, validation with clear errors, and `hypo diff`."""

from __future__ import annotations

import json
from pathlib import Path

from hypodsl.cli import main
from runner.report.diff import diff, load_results
from runner.stats.results import StudyResult

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "reports" / "demo.json"


def test_the_published_schema_is_the_generated_one(capsys):
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == StudyResult.model_json_schema()
    assert json.loads((ROOT / "docs" / "results.schema.json").read_text()) == printed


def test_the_committed_demo_results_validate():
    result = load_results(DEMO)
    assert len(result.claims) == 20 and result.provenance.runs[0].checkpoints


def test_a_malformed_results_file_is_a_usage_error_naming_the_field(tmp_path: Path, capsys):
    data = json.loads(DEMO.read_text())
    data["claims"][0]["verdict"] = "maybe"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    assert main(["diff", str(DEMO), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.json: not a hypodsl results file: claims.0.verdict" in err
    assert main(["diff", str(DEMO), str(tmp_path / "missing.json")]) == 2


def test_diff_names_moved_verdicts_estimates_and_added_claims(tmp_path: Path, capsys):
    data = json.loads(DEMO.read_text())
    old = StudyResult.model_validate(data)
    data["claims"][1]["verdict"] = "negative"
    data["claims"][2]["predictions"][0]["estimate"] += 1.0
    data["claims"][3]["name"] = "renamed"
    new = StudyResult.model_validate(data)
    changes = {(c.claim, c.kind) for c in diff(old, new)}
    assert changes == {
        (old.claims[1].name, "verdict"),
        (old.claims[2].name, "estimate"),
        (old.claims[3].name, "removed"),
        ("renamed", "added"),
    }
    path = tmp_path / "new.json"
    path.write_text(new.model_dump_json())
    assert main(["diff", str(DEMO), str(path)]) == 1
    out = capsys.readouterr().out
    assert old.claims[1].name in out and "negative" in out
    assert main(["diff", str(DEMO), str(DEMO)]) == 0
    assert "no claim changed" in capsys.readouterr().out
