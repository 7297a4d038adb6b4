"""`hypo data generate` and `hypo model info` through the CLI entry point."""

from __future__ import annotations

import json

from hypodsl.cli import main
from runner.kv.dataset import SPLITS, load_manifest, load_split


def test_data_generate_writes_splits_manifest_and_sanity_report(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["data", "generate", "--out", str(out), "--seed", "1", "--train", "300"]) == 0
    manifest = load_manifest(out)
    assert manifest["splits"]["train"] == 300 and manifest["splits"]["test_iid"] == 2048
    assert set(manifest["sha256"]) >= set(SPLITS)
    sanity = json.loads((out / "sanity.json").read_text())
    assert sanity["exact_sequence_overlap"] == 0 and sanity["latent_program_overlap"] == 0
    assert sanity["heldout_leakage"] == 0
    assert sanity["heuristics"]["first_value_for_key"] == 0.0
    assert 0.1 < sanity["heuristics"]["most_frequent_value_before_query"] < 0.2
    assert "most_frequent_value_before_query" in capsys.readouterr().out
    split = load_split(out, "counterfactual", limit=10)
    assert len(split) == 10 and split.clean_tokens is not None
    assert (split.reads.sequence < 10).all()


def test_model_info_prints_the_reference_parameter_count(capsys):
    assert main(["model", "info", "--config", "reference"]) == 0
    assert "parameters: 626,048" in capsys.readouterr().out


def test_unknown_config_is_a_clear_error(capsys):
    assert main(["model", "info", "--config", "huge"]) == 2
    err = capsys.readouterr().err
    assert "config `huge` is neither a named config" in err and "Traceback" not in err
