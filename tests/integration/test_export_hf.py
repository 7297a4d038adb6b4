"""`hypo export RUN --to hf OUT`: transformers' GPT2LMHeadModel loads the export unchanged and
gives our logits (the `interop` extra installs transformers; `make test` installs it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hypodsl.cli import main
from runner.kv import dataset
from runner.model import checkpoints
from runner.model.rundir import data_dir, read_config

transformers = pytest.importorskip("transformers")


def probe_tokens(run_dir: Path, n: int = 64) -> torch.Tensor:
    split = dataset.load_split(data_dir(run_dir), "test_iid")
    return torch.as_tensor(split.tokens[:n].astype("int64"))


def ours_and_theirs(run_dir: Path, step: int, out: Path):
    ours = checkpoints.load_model(run_dir, step, read_config(run_dir).model).eval()
    theirs = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    return ours, theirs


def test_an_exported_checkpoint_gives_our_logits_in_transformers(tiny_run: Path, tmp_path):
    out = tmp_path / "hf"
    assert main(["export", str(tiny_run), "--to", "hf", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["model_type"] == "gpt2"
    final = checkpoints.list_steps(tiny_run)[-1]
    ours, theirs = ours_and_theirs(tiny_run, final, out)
    tokens = probe_tokens(tiny_run)
    with torch.no_grad():
        # float64: the renaming and transposes are exact, so only rounding remains
        exact = (ours.double()(tokens) - theirs.double()(tokens).logits).abs().max().item()
        ours, theirs = ours.float(), theirs.float()
        float32 = (ours(tokens) - theirs(tokens).logits).abs().max().item()
    assert exact < 1e-10
    # float32 kernels sum in another order (Conv1D's addmm, fused attention): a few ulps
    assert float32 < 1e-4


def test_every_checkpoint_is_written_as_trainer_names_them(tiny_run: Path, tmp_path):
    out = tmp_path / "all"
    assert main(["export", str(tiny_run), "--step", "all", "--to", "hf", str(out)]) == 0
    steps = checkpoints.list_steps(tiny_run)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"checkpoint-{s}" for s in steps)
    first = steps[0]
    ours, theirs = ours_and_theirs(tiny_run, first, out / f"checkpoint-{first}")
    tokens = probe_tokens(tiny_run, 8)
    with torch.no_grad():
        assert (ours.double()(tokens) - theirs.double()(tokens).logits).abs().max() < 1e-10


def test_bad_export_arguments_are_usage_errors(tiny_run: Path, tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--to", "hf", str(tmp_path / "o")]) == 2
    assert main(["export", str(tiny_run), "--step", "7777", "--to", "hf", str(tmp_path)]) == 2
    assert main(["export", str(tiny_run), "--step", "x", "--to", "hf", str(tmp_path)]) == 2
    assert main(["export", str(tiny_run), "--to", "onnx", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a run directory" in err and "no checkpoint there" in err
    assert "Traceback" not in err


def test_an_export_read_back_is_the_checkpoint_bit_for_bit(tiny_run: Path, tmp_path):
    from runner.model.hf_gpt2 import read_hf
    from runner.model.transformer import Transformer

    out = tmp_path / "hf"
    assert main(["export", str(tiny_run), "--to", "hf", str(out)]) == 0
    config, state = read_hf(out)
    assert config == read_config(tiny_run).model
    final = checkpoints.list_steps(tiny_run)[-1]
    ours = checkpoints.load_model(tiny_run, final, config)
    original = ours.state_dict()
    assert state.keys() == original.keys()
    assert all(torch.equal(state[k], original[k]) for k in state)
    model = Transformer(config)
    model.load_state_dict(state)
    tokens = probe_tokens(tiny_run, 8)
    with torch.no_grad():
        assert torch.equal(model(tokens), ours(tokens))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_type": "llama"}, "only GPT-2"),
        ({"activation_function": "relu"}, "activation_function"),
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
        ({"n_embd": "wide"}, "not a GPT-2 config"),
    ],
)
def test_a_config_this_model_cannot_run_is_refused(tiny_run: Path, tmp_path, change, message):
    from runner.model.hf_gpt2 import read_hf
    from runner.model.rundir import RunError

    out = tmp_path / "hf"
    assert main(["export", str(tiny_run), "--to", "hf", str(out)]) == 0
    config = json.loads((out / "config.json").read_text()) | change
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match=message):
        read_hf(out)


SPEC = """study "round trip"
probe iid = split test_iid n 16 seed 0
claim learns "some accuracy at the end" { at final on iid: accuracy > 0.1 }
claim head "a head's ablation" { at final on iid: accuracy with ablate(L1.H0, zero) <= accuracy }
"""


def test_export_then_import_gives_the_same_checkpoints_and_results(tiny_run: Path, tmp_path):
    from hypodsl.compiler import compile_spec
    from hypodsl.parser import parse
    from runner.engine.study import run_study

    series, run = tmp_path / "hf", tmp_path / "imported"
    assert main(["export", str(tiny_run), "--step", "all", "--to", "hf", str(series)]) == 0
    data = str(tiny_run / "data")
    assert main(["import", str(series), "--data", data, "--out", str(run)]) == 0
    steps = checkpoints.list_steps(tiny_run)
    assert checkpoints.list_steps(run) == steps
    # the same tensors written the same way: the same files, so the same cache keys
    assert [checkpoints.verified_sha256(run, s) for s in steps] == [
        checkpoints.verified_sha256(tiny_run, s) for s in steps
    ]
    plan = compile_spec(parse(SPEC, "trip.hyp"), SPEC, None)
    original, imported = (run_study(plan, [r]).claims for r in (tiny_run, run))
    assert [c.model_dump() for c in original] == [c.model_dump() for c in imported]


def test_bad_imports_are_clear_errors(tiny_run: Path, tmp_path, capsys):
    series = tmp_path / "hf"
    assert main(["export", str(tiny_run), "--step", "all", "--to", "hf", str(series)]) == 0
    data = str(tiny_run / "data")
    assert (
        main(["import", str(tmp_path / "none"), "--data", data, "--out", str(tmp_path / "a")]) == 2
    )
    assert main(["import", str(series), "--data", str(tmp_path), "--out", str(tmp_path / "b")]) == 2
    assert main(["import", str(series), "--data", data, "--out", str(tiny_run)]) == 2
    wider = json.loads((series / "checkpoint-0" / "config.json").read_text()) | {"n_inner": 8}
    (series / "checkpoint-0" / "config.json").write_text(json.dumps(wider))
    assert main(["import", str(series), "--data", data, "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint-STEP/" in err or "not a directory" in err
    assert "already holds a run" in err and "different model configs" in err
    assert "Traceback" not in err
