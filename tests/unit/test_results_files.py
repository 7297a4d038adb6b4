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


def test_diff_tells_a_spec_edit_from_a_model_change(tmp_path: Path, capsys):
    """The header before the claim changes: the plan hash (the spec changed), a run's
    checkpoint hashes (the model changed) and a setting, each only when it differs."""
    data = json.loads(DEMO.read_text())
    run = data["provenance"]["runs"][0]
    final = max(run["checkpoints"], key=int)
    spec_edit = json.loads(json.dumps(data))
    spec_edit["provenance"]["plan_hash"] = "ab" * 32
    retrained = json.loads(json.dumps(data))
    retrained["provenance"]["runs"][0]["checkpoints"][final] = "cd" * 32
    retrained["provenance"]["threads"] += 1
    old_plan = data["provenance"]["plan_hash"][:12]

    assert main(["diff", str(DEMO), str(_write(tmp_path / "spec.json", spec_edit))]) == 0
    out = capsys.readouterr().out
    assert f"plan: {old_plan} -> abababababab — the spec or its imports changed" in out
    assert "checkpoints" not in out and "no claim changed" in out

    assert main(["diff", str(DEMO), str(_write(tmp_path / "model.json", retrained))]) == 0
    lines = capsys.readouterr().out.splitlines()
    name = run["run"]
    assert lines[0].startswith(f"run {name} checkpoints: ")
    assert lines[0].endswith(
        f"1 of {len(run['checkpoints'])} differ (steps {final}): the model changed"
    )
    old_hash, new_hash = lines[0].split(": ")[1].split(" — ")[0].split(" -> ")
    assert old_hash != new_hash and len(old_hash) == len(new_hash) == 12
    threads = data["provenance"]["threads"]
    assert lines[1] == f"threads: {threads} -> {threads + 1} — a setting changed"
    assert not any(line.startswith("plan:") for line in lines)

    assert main(["diff", str(DEMO), str(DEMO)]) == 0
    assert capsys.readouterr().out.startswith(f"same plan ({old_plan}), data, checkpoints")


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path
