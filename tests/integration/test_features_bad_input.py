"""Bad feature input: a clear error at file:line:col, or Unsupported with the reason — never a
traceback. On the planted run (tests/integration/planted_features.py)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from hypodsl.cli import main
from runner.features import planted as fp
from tests.conftest import SMALL_DATA
from tests.integration.planted_features import BASIS, write_planted_run

HEAD = f"""study "bad features"
probe iid = split test_iid n 48 seed 0
probe pick = split val_iid n 48 seed 0
probe pick_too = split val_iid n 48 seed 1
basis v = "{BASIS}"
family ret = v[0, 1, 2]
"""
OK_CLAIM = """claim ok "The first value features are active" {
  at final on iid: activation(ret) > 0
}
"""


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_planted_run(tmp_path_factory.mktemp("planted") / "planted", SMALL_DATA)


def cli(*args: str | Path) -> tuple[int, str]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        code = main([str(a) for a in args])
    return code, buffer.getvalue()


def check(tmp_path: Path, run: Path, text: str) -> tuple[int, str]:
    spec = tmp_path / "bad.hyp"
    spec.write_text(text)
    return cli("check", spec, "--run", run)


@pytest.mark.parametrize(
    "text, line, message",
    [
        (HEAD.replace(BASIS, "features/nope"), 5, "no feature basis at `features/nope`"),
        (HEAD.replace(f'"{BASIS}"', f'"{BASIS}" at "blocks.0.hook_resid_post"'), 5,
         f"fitted at `{fp.SITE}`, not `blocks.0.hook_resid_post`"),
        (HEAD.replace("v[0, 1, 2]", f"v[0, {fp.WIDTH}]"), 6,
         f"feature {fp.WIDTH} is out of range: basis `v` has {fp.WIDTH} features"),
        (HEAD.replace("v[0, 1, 2]", "v[0, 0]"), 6, "a feature is listed twice"),
        (HEAD.replace("v[0, 1, 2]", "w[0]"), 6, "basis `w` is not declared"),
        (HEAD + "select s = ret features top 1 by activation over 0 .. 10 on pick\n"
         "claim c \"x\" {\n  at final on pick_too: activation(s) > 0\n}\n", 9,
         "selection `s` was chosen on probe `pick` (split val_iid); testing it on `pick_too` "
         "reads the same split"),
        (HEAD + "select s = L0.mlp neurons where drive(ret) > 0 over 0 .. 10 on pick\n"
         "claim c \"x\" {\n  at final on iid: accuracy on pick with ablate(s, zero) > 0\n}\n", 9,
         "selection `s` was chosen on probe `pick`"),
        (HEAD + "claim c \"x\" {\n  at final on iid: "
         "contribution(L0.mlp -> ret -> unembed) > 0\n}\n", 8, "features stand in a path as"),
        (HEAD + "claim c \"x\" {\n  at final on iid: alignment(accuracy(ret)) > 0\n}\n", 8,
         "`alignment` takes a path, a circuit or a feature score"),
        (HEAD + "select s = L0.mlp neurons where activation > 0 over 0 .. 10 on pick\n", 7,
         "`activation` cannot choose neurons; use `drive`"),
    ],
    ids=["unknown-basis", "other-site", "id-past-width", "duplicate", "undeclared", "own-split",
         "own-probe-via-on", "feature-mid-path", "bad-score", "bad-criterion"],
)  # fmt: skip
def test_bad_feature_specs_are_errors_at_their_line(planted, tmp_path, text, line, message):
    code, out = check(tmp_path, planted, text)
    assert code == 2, out
    assert f"bad.hyp:{line}:" in out and message in out, out
    assert "Traceback" not in out


def test_a_basis_fitted_on_another_run_is_an_error(planted, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(planted, other)
    signature = json.loads((other / "signature.json").read_text())
    signature["data_hash"] = "0" * 64
    (other / "signature.json").write_text(json.dumps(signature))
    code, out = check(tmp_path, other, HEAD + OK_CLAIM)
    assert code == 2 and "bad.hyp:5:" in out and "was fitted on another run (data_hash" in out


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda b: (b / "sae_weights.safetensors").write_bytes(b"x" * 10), "corrupt basis"),
        (lambda b: (b / "hypodsl_basis.json").write_bytes(b"\xff\xfe"), "not UTF-8"),
        (lambda b: shutil.rmtree(b), "no basis directory"),
    ],
    ids=["weights", "info", "gone"],
)
def test_a_broken_basis_makes_its_claims_unsupported(planted, tmp_path, damage, reason):
    run = tmp_path / "run"
    shutil.copytree(planted, run)
    damage(run / BASIS)
    spec = tmp_path / "c.hyp"
    spec.write_text(
        HEAD + OK_CLAIM + 'claim plain "Accuracy is high" {\n  at final on iid: accuracy > 0.5\n}\n'
    )
    report = tmp_path / "report"
    code, out = cli("run", spec, "--run", run, "--no-cache", "--report", report, "--no-figures")
    assert code == 0, out
    claims = {c["name"]: c for c in json.loads((report / "c.json").read_text())["claims"]}
    assert claims["plain"]["verdict"] == "supported"
    assert claims["ok"]["verdict"] == "unsupported"
    assert "basis `v`" in claims["ok"]["reason"] and reason in claims["ok"]["reason"]
    assert str(tmp_path) not in (report / "c.json").read_text()


def test_fit_and_explore_refuse_bad_arguments_in_one_line(planted, tmp_path):
    code, out = cli("features", "fit", "--run", planted, "--site", "blocks.1.hook_resid_pots",
                    "--out", tmp_path / "b", "--train-steps", "5")  # fmt: skip
    assert code == 2 and "did you mean `blocks.1.hook_resid_post`?" in out, out
    code, out = cli("features", "fit", "--run", planted, "--site", "blocks.0.attn.hook_pattern",
                    "--out", tmp_path / "b", "--train-steps", "5")  # fmt: skip
    assert code == 2 and "a basis needs one vector per token" in out, out
    code, out = cli("features", "fit", "--run", tmp_path, "--site", "x")
    assert code == 2 and "not a run directory" in out
    code, out = cli("features", "fit", "--run", planted, "--site", "x", "--steps", "5")
    assert code == 2 and "is not a range of steps" in out
    code, out = cli("features", "explore", tmp_path / "missing", "--run", planted,
                    "--out", tmp_path / "r")  # fmt: skip
    assert code == 2 and "no basis directory" in out
    assert "Traceback" not in out
